// Package blobstore stores content-addressed blobs (snapshot state, backups,
// anything up to hundreds of megabytes) as chunked UnixFS DAGs, their
// bytes in pack files and their catalogue in the node's Pebble database,
// and fetches them by CID from peers.
//
// # What it owns
//
//   - The key range under the prefix given to [New] in the caller's
//     *pebble.DB. Nothing else may write there; blobstore never touches a key
//     outside it.
//   - The pack directory given with [WithPackDir]: nothing else may write
//     there.
//   - The libp2p protocol [ProtocolID] ("/aura/blocks/1") on the host given
//     with [WithHost]: a node serves every block it holds to any peer that
//     may connect (the node's connection gater decides who may).
//
// # Layout
//
// [Store.Put] builds the DAG with aura/blobstore/unixfs (the same code the
// simulator's memory blob store runs, so both name equal bytes by the same
// CID), which writes out the DAGs of boxo's balanced importer with the
// parameters of the IPIP-499 "unixfs-v1-2025" profile (TestLayoutMatchesBoxo
// compares them block for block): balanced DAG, CIDv1, sha2-256,
// raw leaves, 1 MiB chunks, at most 1024 links per node. 1 MiB rather than
// 256 KiB because snapshot blobs are large and fetched whole: a quarter of
// the blocks means a quarter of the per-block work (keys, hashes, frames),
// while 1 MiB stays well under the 2 MiB block limit of the bitswap
// specification: the DAGs remain ordinary IPFS DAGs, and an importer using
// that profile derives the same CIDs. A 100 MB blob is a root plus 100
// leaves.
//
// Keys, with P the prefix:
//
//	P "c" <multihash>   → where the block is: uvarint size, uvarint pack,
//	                       uvarint offset (bytes in a pack file); or
//	                       uvarint size, uvarint n (bytes in Pebble)
//	P "b" <uint64 BE n> → bytes of the block numbered n (no pack directory,
//	                       or written by a Store before pack files)
//	P "p" <cid>         → pin (empty value)
//
// With a pack directory, a sink (one Put, PutMany, fetch or GC move)
// appends block bytes to a pack file <16 hex digits>.pack, written once,
// front to back, past the page cache (aura/directio), by a goroutine of its
// own: 1 MiB leaves start on 4 KiB boundaries and go to the disk straight
// from the buffer they were received or read into, uncopied. Every 32 MiB
// the pack is finished (fsynced, and the directory) and only then are the
// catalogue entries of its blocks committed, while the next pack is being
// written. Serving a block is one catalogue read and one pread. Before
// pack files, blocks were ingested into Pebble as sstables; a block cost
// Pebble's sstable writer a copy and a checksum, and a read a fresh 1 MiB
// cache buffer and a checksum. Those blocks stay readable. Without a pack
// directory (small or in-memory stores), blocks go into Pebble batches
// under block numbers in write order.
//
// GC walks the pins, drops the catalogue entries of unreachable blocks,
// deletes the pack files no live block is in, copies the live blocks out
// of packs less than half live (then deletes those), and range-deletes
// every block number in Pebble no entry uses, so Pebble can drop whole
// sstables without reading them.
//
// # Invariants
//
//   - A catalogue entry is written only after the block bytes it points to
//     (and the name of their pack file) are durable, and always points to
//     bytes that hash to its multihash:
//     [Store.Fetch] verifies every received block against the CID it asked
//     for before storing it, and [Store.Put] stores what it hashed itself.
//     Block bytes without an entry (a crash between the two writes: a
//     pack file nobody points to, or Pebble block numbers) are garbage that
//     the next GC removes. Pack numbers are never reused.
//   - A damaged pack (truncated, missing) never yields other bytes: the
//     read fails with an error naming the pack and wrapping [ErrNotFound],
//     and the blocks of that pack that are not all there lose their
//     catalogue entries, so they count as missing and the next fetch of
//     the blob brings them back from a peer.
//   - Only sha2-256 CIDs with the dag-pb or raw codec are fetched or walked
//     ([ErrUnsupportedCID] otherwise).
//   - Put and Fetch end with a synced Pebble write: when they return nil,
//     the blob survives a crash.
//   - [Store.GC] deletes exactly the blocks not reachable from a pinned root
//     and never runs concurrently with Put or Fetch (they hold a shared lock,
//     GC an exclusive one). Put and Fetch do not pin: a blob that must
//     survive the next GC is pinned by the caller (pinning a root before
//     fetching it also protects a partial fetch, so it can resume later),
//     or put with [Store.PutPinned], which pins under the same shared lock
//     so that no GC runs between the put and the pin.
//   - A peer that sends a block whose hash differs from its CID is dropped
//     from the fetch and banned from this Store's fetches for the ban
//     duration ([WithBanDuration]).
//
// # Wire protocol /aura/blocks/1
//
// The client sends requests, the server answers them in order on the same
// stream, and the client may pipeline several requests. A request is
// uvarint(n) followed by n × (uvarint(len) CID bytes), 1 ≤ n ≤ 64. For each
// CID the server answers 0x00 uvarint(len) block bytes (len ≤ 2 MiB), or
// 0x01 when it does not hold the block. Fetch walks the DAG breadth-first,
// hands the missing blocks round-robin to one queue per peer, lets an idle
// peer steal half the queue of the busiest one, and at the end asks an idle
// peer for blocks still in flight elsewhere, so a slow or stalled peer
// cannot hold up the fetch.
//
// # Why not bitswap
//
// The blocks and DAGs are those bitswap moves, and [Store.Blockstore] serves
// boxo components directly, but fetching uses /aura/blocks/1: a restore
// wants one whole DAG from a few known peers as fast as the link allows,
// where bitswap is built for finding blocks among many unknown peers
// (want-have/want-block rounds, per-block bookkeeping, an unbounded
// session walk). On the same stores, blob and three peers,
// BenchmarkBitswapFetch100MB3Peers measured 220 MB/s against 464 MB/s for
// Fetch and 964 MB/s for a raw libp2p stream.
//
// # Imports
//
// blobstore imports nothing of aura except its own pure subpackage
// aura/blobstore/unixfs, the leaf aura/directio (pack files written past
// the page cache) and, if ever needed, types of aura/crdt. It must never
// import aura/node (node imports blobstore) nor the
// pure cores (maintenance, sim): they name blobs by CID and the node driver
// calls this package.
package blobstore
