package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"aura/node"
)

func factCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "fact", Short: "Application facts (key/value writes in the journal)"}
	var file string
	put := &cobra.Command{
		Use:   "put KEY (VALUE | - | --file F)",
		Short: "Write a key",
		Long: fmt.Sprintf("Writes KEY with a value given as an argument, read from stdin (-) or from a\n"+
			"file (--file F), byte for byte. KEY must be valid UTF-8.\n\n"+
			"Limit: one fact holds at most %d bytes of key and value (64 KiB with its\n"+
			"envelope); store larger data with `aura-cli blob put FILE`.\n\n"+
			"While this device's snapshot round is open (the writer fence is up), the write\n"+
			"is buffered durably and commits when the round ends; `fact get` reads it back\n"+
			"at once.", node.MaxFactBody),
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if !utf8.ValidString(key) {
				return fmt.Errorf("key %q is not valid UTF-8", key)
			}
			var value []byte
			var err error
			switch {
			case file != "" && len(args) == 2:
				return errors.New("give the value as an argument, as - (stdin) or with --file, not two of them")
			case file != "":
				value, err = readLimited(file, nil)
			case len(args) == 2 && args[1] == "-":
				value, err = readLimited("stdin", cmd.InOrStdin())
			case len(args) == 2:
				value = []byte(args[1])
			default:
				return errors.New("no value: give it as an argument, as - to read stdin, or with --file F")
			}
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			r, err := a.client().Put(ctx, key, value)
			if err != nil {
				return err
			}
			return a.out(cmd, r, func(w io.Writer) {
				if r.Buffered {
					fmt.Fprintf(w, "%s buffered behind the writer fence (commits when the snapshot round ends)\n", esc(r.Key))
				} else {
					fmt.Fprintf(w, "%s written as %s (%d bytes)\n", esc(r.Key), r.ID, r.Size)
				}
			})
		},
	}
	put.Flags().StringVar(&file, "file", "", "read the value from `FILE`")
	get := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value alone (exact bytes)",
		Long: "Prints the value alone, byte for byte (`fact get KEY > F` gives the stored bytes\n" +
			"back); on a terminal a newline is added after a value that lacks one. With --json\n" +
			"the value is base64 (value) and text when it is UTF-8 (text); pending says it is\n" +
			"a write of this device still buffered behind the writer fence.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			r, err := a.client().Get(ctx, args[0])
			if err != nil {
				return err
			}
			if a.json {
				v := map[string]any{"key": r.Key, "value": r.Value, "pending": r.Pending}
				if utf8.Valid(r.Value) {
					v["text"] = string(r.Value)
				}
				return a.out(cmd, v, nil)
			}
			w := cmd.OutOrStdout()
			if _, err := w.Write(r.Value); err != nil {
				return err
			}
			if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) && (len(r.Value) == 0 || r.Value[len(r.Value)-1] != '\n') {
				fmt.Fprintln(w)
			}
			return nil
		},
	}
	var tail int
	list := &cobra.Command{
		Use: "list", Short: "List journal facts in causal order (then pending writes)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tail < 0 {
				return fmt.Errorf("--tail %d: want 0 (all) or more", tail)
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			fs, err := a.client().Facts(ctx, tail)
			if err != nil {
				return err
			}
			if fs == nil {
				fs = []node.FactInfo{}
			}
			return a.out(cmd, fs, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "LAMPORT\tAUTHOR\tSEQ\tKIND\tDETAIL")
				for _, f := range fs {
					d := ""
					switch {
					case f.Key == "":
					case f.Kind == "put" && f.Value == "" && len(f.ValueBytes) > 0:
						d = fmt.Sprintf("%s=<%d bytes, not text>", esc(f.Key), len(f.ValueBytes))
					case f.Kind == "put":
						d = fmt.Sprintf("%s=%q", esc(f.Key), f.Value)
					default:
						d = esc(f.Key)
					}
					lamport, seq := fmt.Sprint(f.Lamport), fmt.Sprint(f.Seq)
					if f.Pending {
						lamport, seq, d = "pending", "-", d+" (buffered behind the fence)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", lamport, shortID(f.Author), seq, f.Kind, d)
				}
				tw.Flush()
			})
		},
	}
	list.Flags().IntVar(&tail, "tail", 0, "only the last N facts")
	c.AddCommand(put, get, list)
	return c
}

// readLimited reads a value from a file (r nil) or r, refusing more than
// a fact can hold before anything is sent.
func readLimited(name string, r io.Reader) ([]byte, error) {
	if r == nil {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, node.MaxFactBody+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > node.MaxFactBody {
		return nil, fmt.Errorf("%s holds more than %d bytes, the most one fact holds: store it with `aura-cli blob put`", name, node.MaxFactBody)
	}
	return b, nil
}
