// Package directio writes files that are written once, front to back, and
// not read back soon — pack files of fetched blobs, backup files —
// without passing their bytes through the page cache (O_DIRECT on Linux,
// from an aligned buffer, or straight from the caller's memory when a
// write is aligned; an ordinary buffered file elsewhere or where the file
// system refuses it).
//
// # What it promises
//
//   - A File holds exactly the bytes written to it once Finish returns
//     nil, and they are durable (fsynced); the padding direct I/O needs at
//     the tail is trimmed before the sync.
//   - Every write error, the file system's short writes included, is
//     returned, wrapped with the file's name.
//
// Why: on a host that backs guest memory lazily (these VMs), copying into
// freshly allocated page-cache pages costs about ten times copying into
// recycled ones, and more CPU than hashing the bytes; such files gain
// nothing from being cached. It imports nothing of the project.
package directio
