package runbooks

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPagesShowTheirScripts: every script has a page, and the page's
// generated block is the script's rendering, so what an operator reads is
// what CI runs.
func TestPagesShowTheirScripts(t *testing.T) {
	scripts, err := filepath.Glob("scripts/*.txt")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no runbook scripts: %v", err)
	}
	for _, s := range scripts {
		name := strings.TrimSuffix(filepath.Base(s), ".txt")
		src, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		block, err := render(string(src))
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		page := name + ".md"
		md, err := os.ReadFile(page)
		if err != nil {
			t.Errorf("script %s has no page %s: %v", s, page, err)
			continue
		}
		got, err := replaceBlock(string(md), "scripts/"+name+".txt", block)
		if err != nil {
			t.Errorf("%s: %v", page, err)
			continue
		}
		if got == string(md) {
			continue
		}
		if *update {
			if err := os.WriteFile(page, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s: its command block differs from %s; run `go test ./docs/runbooks -run Pages -update`", page, s)
	}
}

// TestRenderKeepsEveryStep: the renderer shows commands, expectations,
// waits and captured values the way a shell user types them.
func TestRenderKeepsEveryStep(t *testing.T) {
	got, err := render("# form it\nexec aura-node init --home a\nexec aura-node run --home a &\nwaitfor -match 'x y' aura-cli --home a status\nexec aura-cli --home a --json account invite\nsetjson CODE code\nstdout aura1\n! exec aura-cli --home b fact get k\nstderr 'no value'\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# form it\n$ aura-node init --home a\n$ aura-node run --home a &\n$ aura-cli --home a status    # repeat until it prints: x y\n" +
		"$ CODE=$(aura-cli --home a --json account invite | jq -r .code)\n    # prints: aura1\n$ aura-cli --home b fact get k    # fails\n    # error: no value\n"
	if got != want {
		t.Fatalf("render:\n%s\nwant:\n%s", got, want)
	}
	if _, err := render("frobnicate a b\n"); err == nil {
		t.Fatal("an unknown step rendered without complaint")
	}
}

var beginRe = regexp.MustCompile(`(?m)^<!-- begin: (\S+) .*-->\n`)

const endMark = "<!-- end -->"

// replaceBlock puts block between the page's begin marker naming script
// and the next end marker.
func replaceBlock(md, script, block string) (string, error) {
	locs := beginRe.FindAllStringSubmatchIndex(md, -1)
	for _, l := range locs {
		if md[l[2]:l[3]] != script {
			continue
		}
		rest := md[l[1]:]
		end := strings.Index(rest, endMark)
		if end < 0 {
			return "", fmt.Errorf("begin marker for %s has no %s", script, endMark)
		}
		return md[:l[1]] + "```sh\n" + block + "```\n" + rest[end:], nil
	}
	return "", fmt.Errorf("no `<!-- begin: %s ... -->` marker", script)
}

var jobName = regexp.MustCompile(`\s*&(\w+)&$`)

var argWord = regexp.MustCompile(`^\S+\s*`)

// render turns a testscript script into the shell session it stands for.
func render(script string) (string, error) {
	var b strings.Builder
	// Files the script carries (txtar sections) exist before it runs: the
	// page writes them first.
	if i := strings.Index("\n"+script, "\n-- "); i >= 0 {
		files := script[max(i-1, 0):]
		script = script[:max(i-1, 0)]
		for _, sec := range strings.Split("\n"+files, "\n-- ")[1:] {
			head, body, _ := strings.Cut(sec, "\n")
			name := strings.TrimSuffix(strings.TrimSpace(head), " --")
			b.WriteString("$ cat > " + name + " <<'EOF'\n" + body)
			if !strings.HasSuffix(body, "\n") {
				b.WriteString("\n")
			}
			b.WriteString("EOF\n\n")
		}
	}
	var lastCmd = -1 // index in lines of the last command, for setjson
	var lines []string
	for n, raw := range strings.Split(script, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" {
			if len(lines) > 0 && lines[len(lines)-1] != "" {
				lines = append(lines, "")
			}
			continue
		}
		if strings.HasPrefix(line, "#") {
			lines = append(lines, line)
			continue
		}
		neg := false
		if strings.HasPrefix(line, "! ") {
			neg, line = true, strings.TrimSpace(line[2:])
		}
		word := strings.TrimSpace(argWord.FindString(line))
		rest := strings.TrimSpace(line[len(argWord.FindString(line)):])
		fails := ""
		if neg {
			fails = "    # fails"
		}
		switch word {
		case "exec":
			if m := jobName.FindStringSubmatch(rest); m != nil {
				rest = strings.TrimSuffix(rest, m[0]) + " &    # job " + m[1]
			}
			lines = append(lines, "$ "+rest+fails)
			lastCmd = len(lines) - 1
		case "waitfor":
			until := "    # repeat until it succeeds"
			for strings.HasPrefix(rest, "-") {
				f := strings.TrimSpace(argWord.FindString(rest))
				rest = strings.TrimSpace(rest[len(argWord.FindString(rest)):])
				v, r := firstArg(rest)
				rest = r
				if f == "-match" {
					until = "    # repeat until it prints: " + unquote(v)
				}
			}
			lines = append(lines, "$ "+rest+until)
			lastCmd = len(lines) - 1
		case "setjson":
			f := strings.Fields(rest)
			if len(f) != 2 || lastCmd < 0 {
				return "", fmt.Errorf("line %d: setjson VAR FIELD after a command", n+1)
			}
			cmd := strings.TrimPrefix(lines[lastCmd], "$ ")
			lines[lastCmd] = "$ " + f[0] + "=$(" + cmd + " | jq -r ." + f[1] + ")"
		case "stdout", "stderr":
			what := map[string]string{"stdout": "prints", "stderr": "error"}[word]
			if neg {
				what = map[string]string{"stdout": "does not print", "stderr": "no error"}[word]
			}
			lines = append(lines, "    # "+what+": "+unquote(rest))
		case "env":
			lines = append(lines, "$ export "+rest)
		case "truncate":
			f := strings.Fields(rest)
			if len(f) != 2 {
				return "", fmt.Errorf("line %d: truncate FILE SIZE", n+1)
			}
			lines = append(lines, "$ truncate -s "+f[1]+" "+f[0])
		case "cp", "rm", "mkdir", "mv", "wait", "cmp":
			lines = append(lines, "$ "+line+fails)
		case "exists":
			lines = append(lines, "$ ls "+rest+fails)
		case "kill":
			f := strings.Fields(rest)
			if len(f) > 0 && !strings.HasPrefix(f[len(f)-1], "-") {
				f[len(f)-1] = "%" + f[len(f)-1]
			}
			lines = append(lines, "$ kill "+strings.Join(f, " "))
		default:
			return "", fmt.Errorf("line %d: %q is not a step the renderer knows", n+1, word)
		}
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String(), nil
}

// firstArg splits a possibly single-quoted first argument off s.
func firstArg(s string) (arg, rest string) {
	if strings.HasPrefix(s, "'") {
		if i := strings.Index(s[1:], "'"); i >= 0 {
			return s[:i+2], strings.TrimSpace(s[i+2:])
		}
	}
	w := argWord.FindString(s)
	return strings.TrimSpace(w), strings.TrimSpace(s[len(w):])
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1]
	}
	return s
}
