package threshold

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the testdata/keygen transcripts")

// TestKeygenTranscripts pins, scenario by scenario, every frame the
// sessions exchange (sender → recipient, type, and for relayed DKG
// messages their kind and author) and how each side ends, in
// testdata/keygen/*.txt: the contract node and sim both drive. Run with
// -rewrite after an intended change, and review the diff.
func TestKeygenTranscripts(t *testing.T) {
	other, _, err := Deal(nil, SeededReader([]byte("transcript lie")), 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	scenarios := []struct {
		name  string
		setup func(net *keygenNet)
	}{
		{"happy-2of3", func(*keygenNet) {}},
		{"liar-2of3", func(net *keygenNet) {
			net.mangle = func(from, _ int, data []byte) []byte {
				f, _ := ParseKeygenFrame(data)
				if from == 2 && f.Type == FrameResult {
					f.Data = other.Bytes()
					return f.Marshal()
				}
				return nil
			}
		}},
		{"lost-result-2of3", func(net *keygenNet) {
			net.drop = func(from, _ int, f *KeygenFrame) bool { return from == 1 && f.Type == FrameResult }
		}},
		{"crash-2of3", func(net *keygenNet) {
			crashed := false
			net.onFrame = func(net *keygenNet, _, to int, f *KeygenFrame) {
				if !crashed && to == 2 && f.Type == FrameStart {
					crashed = true
					net.crash(2)
				}
			}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			net := newKeygenNet(t, "transcript-"+sc.name, 2, 3, 0)
			var b strings.Builder
			start := net.now
			sc.setup(net)
			observe := net.onFrame
			net.onFrame = func(net *keygenNet, from, to int, f *KeygenFrame) {
				line := fmt.Sprintf("%5d  %d -> %d  %s", net.now-start, from, to, f.Type)
				if f.Type == FrameMsg {
					kind, author, _ := DKGMessageInfo(f.Data)
					dest := "all"
					if f.To != Broadcast {
						dest = fmt.Sprint(f.To)
					}
					line += fmt.Sprintf(" %s by %d for %s", kind, author, dest)
				}
				if f.Type == FrameAbort {
					line += ": " + f.Error
				}
				b.WriteString(line + "\n")
				if observe != nil {
					observe(net, from, to, f)
				}
			}
			net.run()
			b.WriteString(fmt.Sprintf("hub %d: %s\n", net.hubAt, outcome(net.hubOut)))
			for i, p := range net.parts {
				if p == nil {
					continue
				}
				state := outcome(net.partOut[i])
				if net.crashed[i] {
					state = "crashed"
				}
				b.WriteString(fmt.Sprintf("participant %d: %s\n", i, state))
			}
			path := filepath.Join("testdata", "keygen", sc.name+".txt")
			if *rewrite {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -rewrite to create it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Fatalf("transcript %s changed (run with -rewrite if intended):\n--- got\n%s--- want\n%s", path, got, want)
			}
		})
	}
}

func outcome(out *KeygenOutput) string {
	switch {
	case out == nil:
		return "no outcome"
	case out.Err != nil:
		var ke *KeygenError
		if errors.As(out.Err, &ke) {
			return fmt.Sprintf("failed, blaming %d: %v", ke.Participant, ke.Err)
		}
		return "failed: " + out.Err.Error()
	case out.Done != nil:
		return fmt.Sprintf("done, %d-of-%d key %x…, share %d", out.Done.Key.Threshold(), out.Done.Key.Signers(),
			out.Done.Key.PublicKey()[:4], out.Done.Share.Index())
	}
	return "running"
}
