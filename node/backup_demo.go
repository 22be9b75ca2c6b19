package node

import (
	"context"
	"fmt"
	"path/filepath"

	"filippo.io/age"
)

// demoBackup is the backup part of RunDemo: a device exports an encrypted
// backup, a fresh home is restored from it offline, started, admitted by
// invite, and converges with the mesh (syncing what came after the
// backup).
func demoBackup(ctx context.Context, say func(string, ...any), dir string, nodes *[]*Node, o DemoOptions) error {
	ns := *nodes
	src := ns[1]
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	file := filepath.Join(dir, "node2-backup.age")
	ex, err := ExportBackupFile(ctx, src, file, []age.Recipient{id.Recipient()})
	if err != nil {
		return fmt.Errorf("backup export: %w", err)
	}
	say("node2 exported an encrypted backup to %s (%d bytes, age recipient %s…): snapshot %s, its completion, %d journal facts, manifest last",
		filepath.Base(file), ex.Bytes, id.Recipient().String()[:12], short(ex.Manifest.Snapshot.ID), ex.Manifest.Facts)
	if _, err := ns[0].Put("after/backup", []byte("written after the backup")); err != nil {
		return err
	}
	say("node1 wrote after/backup, which the backup does not hold")

	name := fmt.Sprintf("node%d", len(ns)+1)
	home := filepath.Join(dir, name)
	cfg := TestConfig()
	cfg.Name = name
	if _, err := Init(home, InitOptions{Config: &cfg}); err != nil {
		return err
	}
	res, err := RestoreBackup(ctx, BackupRestoreOptions{Home: home, File: file, Identities: []age.Identity{id}})
	if err != nil {
		return fmt.Errorf("backup restore: %w", err)
	}
	say("%s: a fresh home restored offline from the backup: manifest hashes, fact signatures, threshold signature and digest verified; %d tail facts replayed (digest %s)",
		name, res.Facts, short(res.StateDigest))
	n, err := New(ctx, Options{Home: home, Logger: o.Logger.With("node", name), NoSocket: true})
	if err != nil {
		return err
	}
	*nodes = append(*nodes, n)
	code, _, err := ns[0].Invite(0)
	if err != nil {
		return err
	}
	if _, err := n.Join(ctx, code); err != nil {
		return fmt.Errorf("%s join: %w", name, err)
	}
	meshUp(ctx, *nodes)
	say("%s started and joined with an invite; it syncs only what the backup lacks", name)
	if err := waitSame(ctx, o.Timeout, *nodes); err != nil {
		return err
	}
	v, _ := n.Get("after/backup")
	say("converged: digest %s on all %d nodes; %s reads after/backup = %q", short(n.Digest().String()), len(*nodes), name, v)
	return nil
}
