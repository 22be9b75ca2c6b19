package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func cacheCmd(a *app) *cobra.Command {
	c := &cobra.Command{Use: "cache", Short: "Derived-data cache: epoch floors, hits and misses"}
	status := &cobra.Command{
		Use: "status", Short: "Cache keys with their epoch floors, and hits, misses, recomputes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			s, err := a.client().CacheStatus(ctx)
			if err != nil {
				return err
			}
			return a.out(cmd, s, func(w io.Writer) {
				fmt.Fprintf(w, "identity epoch %d: %d hits, %d misses, %d recomputes\n", s.Epoch, s.Hits, s.Misses, s.Recomputes)
				fmt.Fprintln(w, "an entry is served only while the epoch exceeds its key's floor")
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tFLOOR\tCACHED")
				for _, k := range s.Keys {
					fmt.Fprintf(tw, "%s\t%d\t%t\n", esc(k.Key), k.Floor, k.Cached)
				}
				tw.Flush()
			})
		},
	}
	invalidate := &cobra.Command{
		Use:   "invalidate KEY...",
		Short: "Raise the epoch floor of cache keys on every device (needs the write capability)",
		Long: "Appends CacheInvalidated{keys, epoch_floor = the current identity epoch}: every\n" +
			"device raises those floors and recomputes the views until the epoch moves past\n" +
			"it. Keys: members, snapshots, blobs, kv/KEY, kv-prefix/PREFIX, or * for all.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			r, err := a.client().InvalidateCache(ctx, args)
			if err != nil {
				return err
			}
			return a.out(cmd, r, func(w io.Writer) {
				if b, _ := r["buffered"].(bool); b {
					fmt.Fprintln(w, "invalidation buffered behind the writer fence (commits when the snapshot round ends)")
				} else {
					fmt.Fprintf(w, "invalidated %d keys as %v\n", len(args), r["id"])
				}
			})
		},
	}
	c.AddCommand(status, invalidate)
	return c
}
