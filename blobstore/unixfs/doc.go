// Package unixfs builds and reads the UnixFS DAGs of aura's blobs, with no
// storage and no network: it turns bytes into blocks (Import, Sum) and
// blocks back into bytes (Cat, Links). The node's blobstore stores what it
// emits in Pebble; the simulator's memory blob store keeps it in a map. Both
// therefore name equal bytes by the same CID, and the simulator exercises
// the product's chunking and multi-block layout.
//
// # Layout
//
// The IPIP-499 "unixfs-v1-2025" profile, as boxo's balanced importer builds
// it with raw leaves: fixed-size chunks (ChunkSize, 1 MiB), each a raw-codec
// CIDv1 sha2-256 leaf; internal nodes are dag-pb (links first, each with an
// empty name and the cumulative size of its subtree, then a UnixFS Data
// message of type File with the file size and one block size per child),
// at most MaxLinks children each, the tree growing a level whenever it is
// full. A blob of at most one chunk is a single raw block; the empty blob
// is the raw block of no bytes. The encoding is written out here by hand
// (a dag-pb node is two protobuf fields); tests in aura/blobstore check it
// byte for byte against boxo's importer for sizes across the chunk and
// link boundaries.
//
// # Imports
//
// go-cid and go-multihash only: never libp2p, Pebble, boxo (boxo's chunker
// pulls in libp2p's buffer pool), nor anything of aura. The simulator
// imports this package and must stay free of libp2p and Pebble
// (`go list -deps ./sim | grep -E 'libp2p|pebble'` is empty).
package unixfs
