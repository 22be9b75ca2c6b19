package blobstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ProtocolID is the block exchange protocol (see the package doc).
const ProtocolID protocol.ID = "/aura/blocks/1"

const (
	maxRequestCIDs = 64  // CIDs in one request
	maxCIDBytes    = 128 // bytes of one CID on the wire

	statusBlock   byte = 0x00 // uvarint(len) and the block follow
	statusMissing byte = 0x01 // the server does not hold the block
)

// appendRequest encodes a request for cids.
func appendRequest(dst []byte, cids []cid.Cid) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(cids)))
	for _, c := range cids {
		b := c.Bytes()
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		dst = append(dst, b...)
	}
	return dst
}

// readRequest decodes one request. io.EOF means the client closed cleanly
// between requests; any other error wraps ErrProtocol or is an I/O error.
func readRequest(r *bufio.Reader) ([]cid.Cid, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, protoErr("request count", err)
	}
	if n == 0 || n > maxRequestCIDs {
		return nil, fmt.Errorf("request of %d CIDs (want 1..%d): %w", n, maxRequestCIDs, ErrProtocol)
	}
	cids := make([]cid.Cid, 0, n)
	var buf [maxCIDBytes]byte
	for range n {
		l, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, protoErr("CID length", err)
		}
		if l == 0 || l > maxCIDBytes {
			return nil, fmt.Errorf("CID of %d bytes: %w", l, ErrProtocol)
		}
		if _, err := io.ReadFull(r, buf[:l]); err != nil {
			return nil, protoErr("CID", err)
		}
		c, err := cid.Cast(buf[:l])
		if err != nil {
			return nil, fmt.Errorf("bad CID: %v: %w", err, ErrProtocol)
		}
		cids = append(cids, c)
	}
	return cids, nil
}

// appendBlockHeader encodes the status and, for a block, its length.
func appendBlockHeader(dst []byte, data []byte, held bool) []byte {
	if !held {
		return append(dst, statusMissing)
	}
	dst = append(dst, statusBlock)
	return binary.AppendUvarint(dst, uint64(len(data)))
}

// readBlock decodes one answer: the block bytes, or held=false.
func readBlock(r *bufio.Reader) (data []byte, held bool, err error) {
	return readBlockInto(r, func(n int) []byte { return make([]byte, n) })
}

// readBlockInto is readBlock with the buffer for the block from alloc.
func readBlockInto(r *bufio.Reader, alloc func(n int) []byte) (data []byte, held bool, err error) {
	st, err := r.ReadByte()
	if err != nil {
		return nil, false, protoErr("status", err)
	}
	switch st {
	case statusMissing:
		return nil, false, nil
	case statusBlock:
	default:
		return nil, false, fmt.Errorf("status 0x%02x: %w", st, ErrProtocol)
	}
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, false, protoErr("block length", err)
	}
	if l > MaxBlockSize {
		return nil, false, fmt.Errorf("block of %d bytes (max %d): %w", l, MaxBlockSize, ErrProtocol)
	}
	data = alloc(int(l))
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, false, protoErr("block", err)
	}
	return data, true, nil
}

// protoErr classifies a read error: a truncated or malformed frame is a
// protocol error; other I/O errors (reset, deadline) pass through.
func protoErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "varint overflows") {
		return fmt.Errorf("truncated or malformed %s: %w", what, ErrProtocol)
	}
	return fmt.Errorf("read %s: %w", what, err)
}
