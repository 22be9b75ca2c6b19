package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"strings"

	"filippo.io/age"
	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"aura/node"
)

// Exit codes of `backup restore`: one per failure, so scripts (and users)
// never read "wrong password" for a damaged file.
const (
	exitBackupKey        = 10 // no identity or passphrase opens the file
	exitBackupTruncated  = 11 // the file ends early
	exitBackupCorrupted  = 12 // encrypted bytes changed, or not an age file
	exitBackupTampered   = 13 // decrypts, but an entry differs from the manifest / a fact's signature fails
	exitBackupUnverified = 14 // the snapshot's threshold signature or digest fails
	exitHomeRunning      = 15 // a node runs in --home
	exitHomeNotFresh     = 16 // --home already holds a journal
)

func backupExit(err error) int {
	switch {
	case errors.Is(err, node.ErrBackupKey):
		return exitBackupKey
	case errors.Is(err, node.ErrBackupTruncated):
		return exitBackupTruncated
	case errors.Is(err, node.ErrBackupCorrupted):
		return exitBackupCorrupted
	case errors.Is(err, node.ErrBackupTampered):
		return exitBackupTampered
	case errors.Is(err, node.ErrBackupUnverified):
		return exitBackupUnverified
	case errors.Is(err, node.ErrRunning):
		return exitHomeRunning
	case errors.Is(err, node.ErrHomeNotFresh):
		return exitHomeNotFresh
	}
	return 1
}

func backupCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "backup",
		Short: "Encrypted backups: the newest snapshot and the journal tail in an age file",
	}
	var out, passFile string
	var recips []string
	export := &cobra.Command{
		Use:   "export --out FILE [--recipient AGE_PUBKEY]... [--passphrase-file F]",
		Short: "Write an encrypted backup of this node (snapshot, its completion, the last 1000 facts)",
		Long: "Writes the newest completed snapshot's blob, its SnapshotCompleted fact, the last\n" +
			"1000 journal facts and a manifest (sha256 of each entry) as a TAR encrypted with\n" +
			"age to FILE. Recipients (age public keys, age1…) are preferred; --passphrase-file\n" +
			"uses age's scrypt passphrase mode. The file is an ordinary age file: `age -d -i KEY\n" +
			"FILE | tar t` lists it. It appears only when complete (temporary file, fsync, rename).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out FILE is required")
			}
			rs, err := backupRecipients(recips, passFile)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if cmd.Flags().Changed("timeout") {
				var cancel func()
				ctx, cancel = a.ctx(cmd)
				defer cancel()
			}
			bar := newBar(a, "exporting")
			res, err := a.client().ExportBackup(ctx, node.ExportOptions{Out: out, Recipients: rs, Progress: bar.update})
			bar.finish()
			if err != nil {
				return err
			}
			return a.out(cmd, res, func(w io.Writer) {
				m := res.Manifest
				fmt.Fprintf(w, "wrote %s (%d bytes): snapshot %s (epoch %d, %d-byte blob), its completion and %d journal facts of account %s\n",
					res.File, res.Bytes, shortID(m.Snapshot.ID), m.Snapshot.Epoch, m.Snapshot.BlobSize, m.Facts, m.Account)
			})
		},
	}
	export.Flags().StringVar(&out, "out", "", "the backup file to write")
	export.Flags().StringArrayVar(&recips, "recipient", nil, "age public key (age1…) to encrypt to; repeat for several")
	export.Flags().StringVar(&passFile, "passphrase-file", "", "encrypt with the passphrase in this file (its first line)")

	var identFile, rPassFile string
	restore := &cobra.Command{
		Use:   "restore FILE --home DIR [--identity F | --passphrase-file F]",
		Short: "Bring up a node's state in DIR from a backup (no node may run there)",
		Long: "Decrypts FILE into a staging directory in DIR, reads it to the end, checks every\n" +
			"entry against the manifest, the threshold signature and the state digest, and only\n" +
			"then puts the snapshot and the journal tail in DIR. DIR must be initialised\n" +
			"(`aura-node init`), hold no journal yet, and have no node running. Start the node\n" +
			"afterwards: it syncs the rest from its peers.\n\n" +
			"Exit codes: 10 wrong key or passphrase, 11 truncated file, 12 corrupted file,\n" +
			"13 altered content (an entry differs from the manifest, a bad fact signature),\n" +
			"14 the snapshot's signature or digest does not verify, 15 a node runs in DIR,\n" +
			"16 DIR already holds a journal. On every failure DIR is left as it was.",
		Args:        cobra.ExactArgs(1),
		Annotations: map[string]string{offline: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := backupIdentities(identFile, rPassFile)
			if err != nil {
				return err
			}
			if debug.SetMemoryLimit(-1) == math.MaxInt64 { // no GOMEMLIMIT
				debug.SetMemoryLimit(node.RestoreMemoryLimit)
			}
			ctx := cmd.Context()
			bar := newBar(a, "restoring")
			res, err := node.RestoreBackup(ctx, node.BackupRestoreOptions{Home: a.homeDir(), File: args[0], Identities: ids, Progress: bar.update})
			bar.finish()
			if err != nil {
				code := backupExit(err)
				if code == 1 {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "aura-cli:", esc(strings.ReplaceAll(err.Error(), "\n", "; ")))
				return exitCode(code)
			}
			return a.out(cmd, res, func(w io.Writer) {
				fmt.Fprintf(w, "restored snapshot %s (epoch %d, %d facts under it) and %d journal facts of account %s into %s\n",
					shortID(res.Snapshot.ID), res.Snapshot.Epoch, res.Snapshot.Facts, res.Facts, res.Account, res.Home)
				fmt.Fprintf(w, "state digest %s (the backup was written by %s at %s)\n", res.StateDigest, res.ExportedBy, res.Created)
				if res.Member {
					fmt.Fprintf(w, "next: `aura-node run --home %s`; it syncs the rest from its peers\n", res.Home)
				} else {
					fmt.Fprintf(w, "this device (%s) is not a device of the account yet: start it (`aura-node run --home %s`),\n"+
						"run `aura-cli account invite` on a device of the account, then `aura-cli --home %s account join CODE`;\n"+
						"it then syncs the rest from its peers\n", res.Device, res.Home, res.Home)
				}
			})
		},
	}
	restore.Flags().StringVar(&identFile, "identity", "", "age identity file (AGE-SECRET-KEY-1…) that decrypts the backup")
	restore.Flags().StringVar(&rPassFile, "passphrase-file", "", "file whose first line is the backup's passphrase")
	c.AddCommand(export, restore)
	return c
}

func readPassphrase(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--passphrase-file: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	p := strings.TrimSuffix(string(line), "\r")
	if p == "" {
		return "", fmt.Errorf("--passphrase-file %s: the first line is empty; write the passphrase there", path)
	}
	return p, nil
}

func backupRecipients(recips []string, passFile string) ([]age.Recipient, error) {
	switch {
	case len(recips) > 0 && passFile != "":
		return nil, errors.New("give either --recipient or --passphrase-file, not both (age does not mix a passphrase with recipients)")
	case passFile != "":
		p, err := readPassphrase(passFile)
		if err != nil {
			return nil, err
		}
		r, err := age.NewScryptRecipient(p)
		if err != nil {
			return nil, err
		}
		return []age.Recipient{r}, nil
	case len(recips) == 0:
		return nil, errors.New("no recipient: give --recipient AGE_PUBKEY (preferred; `age-keygen` makes one) or --passphrase-file F")
	}
	var out []age.Recipient
	for _, s := range recips {
		rs, err := age.ParseRecipients(strings.NewReader(s))
		if err != nil {
			return nil, fmt.Errorf("--recipient %q is not an age public key (age1…): %v", s, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

func backupIdentities(identFile, passFile string) ([]age.Identity, error) {
	switch {
	case identFile != "" && passFile != "":
		return nil, errors.New("give either --identity or --passphrase-file, not both")
	case passFile != "":
		p, err := readPassphrase(passFile)
		if err != nil {
			return nil, err
		}
		id, err := age.NewScryptIdentity(p)
		if err != nil {
			return nil, err
		}
		return []age.Identity{id}, nil
	case identFile == "":
		return nil, errors.New("no key: give --identity FILE (the age secret key) or --passphrase-file FILE")
	}
	f, err := os.Open(identFile)
	if err != nil {
		return nil, fmt.Errorf("--identity: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("--identity %s holds no age secret key (AGE-SECRET-KEY-1…): %v", identFile, err)
	}
	return ids, nil
}

// bar is a byte progress bar on a terminal (stderr), silent otherwise.
type bar struct {
	on   bool
	desc string
	b    *progressbar.ProgressBar
}

func newBar(a *app, desc string) *bar {
	return &bar{on: !a.json && isatty.IsTerminal(os.Stderr.Fd()), desc: desc}
}

func (b *bar) update(done, total int64) {
	if !b.on || total <= 0 {
		return
	}
	if b.b == nil {
		b.b = progressbar.DefaultBytes(total, b.desc)
	}
	if b.b.GetMax64() < total {
		b.b.ChangeMax64(total)
	}
	_ = b.b.Set64(done)
}

func (b *bar) finish() {
	if b.b != nil {
		_ = b.b.Finish()
	}
}
