package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// blobCmd is `aura-cli blob put|get|list|rm` (DESIGN §8): account blobs,
// recorded by BlobStored and BlobTombstoned facts. A removed blob's space
// is freed on every device after the next completed snapshot.
func blobCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "blob", Short: "Account blobs: put, get, list, rm"}
	c.AddCommand(blobPutCmd(a), blobGetCmd(a), blobListCmd(a), blobRmCmd(a))
	return c
}

func blobPutCmd(a *app) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use: "put FILE", Short: "Store FILE (- for stdin) as an account blob and print its CID", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var r io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("blob put: %w", err)
				}
				defer f.Close()
				r = f
				if name == "" {
					name = filepath.Base(args[0])
				}
			}
			bi, err := a.client().PutBlob(ctx, r, name)
			if err != nil {
				return err
			}
			if bi.Buffered && !a.json {
				fmt.Fprintln(cmd.ErrOrStderr(), "aura-cli: stored; the BlobStored fact waits behind this device's writer fence and commits when the snapshot round ends")
			}
			return a.out(cmd, bi, func(w io.Writer) { fmt.Fprintln(w, bi.CID) })
		},
	}
	c.Flags().StringVar(&name, "name", "", "name recorded with the blob (default: the file's base name)")
	return c
}

func blobGetCmd(a *app) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use: "get CID", Short: "Write a blob to --out (or stdout), fetching it from connected devices if not held", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.json && (out == "" || out == "-") {
				return errors.New("blob get --json: stdout carries the JSON document, so give --out FILE for the bytes")
			}
			if f, ok := cmd.OutOrStdout().(*os.File); ok && out == "" && isatty.IsTerminal(f.Fd()) {
				return errors.New("blob get: stdout is a terminal; give --out FILE, redirect (> FILE), or --out - to print the bytes anyway")
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			cl := a.client()
			var bar *progressbar.ProgressBar
			tty := !a.json && isatty.IsTerminal(os.Stderr.Fd())
			progress := func(done, total int64) {
				if !tty || total <= 0 {
					return
				}
				if bar == nil {
					bar = progressbar.DefaultBytes(total, "fetching blob")
				}
				_ = bar.Set64(done)
			}
			bi, err := cl.FetchBlob(ctx, args[0], progress)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			rc, size, err := cl.OpenBlob(ctx, args[0])
			if err != nil {
				return err
			}
			defer rc.Close()
			if out == "" || out == "-" {
				n, err := io.Copy(cmd.OutOrStdout(), rc)
				if err == nil && size > 0 && n != size {
					err = fmt.Errorf("blob get: the node sent %d of %d bytes", n, size)
				}
				return err
			}
			n, err := writeFileAtomic(out, rc)
			if err != nil {
				return fmt.Errorf("blob get: %w", err)
			}
			if size > 0 && n != size {
				return fmt.Errorf("blob get: the node sent %d of %d bytes; %s not written", n, size, out)
			}
			return a.out(cmd, bi, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %d bytes of %s to %s\n", n, bi.CID, out)
			})
		},
	}
	c.Flags().StringVarP(&out, "out", "o", "", "write the blob to this file (default stdout unless it is a terminal; - for stdout)")
	return c
}

// writeFileAtomic writes r to path through a temporary file beside it, so
// a failed copy leaves no partial file under the name.
func writeFileAtomic(path string, r io.Reader) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return n, err
	}
	return n, nil
}

func blobListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List the account's blobs and this device's blob store", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			l, err := a.client().Blobs(ctx)
			if err != nil {
				return err
			}
			return a.out(cmd, l, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "CID\tSIZE\tNAME\tSTATUS\tHERE")
				for _, b := range l.Blobs {
					here := "no"
					if b.Held {
						here = "yes"
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", b.CID, b.Size, b.Name, b.Status, here)
				}
				tw.Flush()
				s := l.Store
				fmt.Fprintf(w, "blob store: %d blocks, %d bytes, %d pins; %d bytes freed by %d blob GCs since the node started\n",
					s.Blocks, s.Bytes, s.Pins, s.Freed, s.GCRuns)
			})
		},
	}
}

func blobRmCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "rm CID", Short: "Remove a blob from the account (BlobTombstoned); its space is freed after the next snapshot", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			bi, err := a.client().RemoveBlob(ctx, args[0])
			if err != nil {
				return err
			}
			return a.out(cmd, bi, func(w io.Writer) {
				fmt.Fprintf(w, "removed %s; every device frees its space after the next completed snapshot (`aura-cli snapshot propose`)\n", bi.CID)
			})
		},
	}
}
