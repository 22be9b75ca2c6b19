package blobstore

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

func testCIDs(n int) []cid.Cid {
	var out []cid.Cid
	for i := range n {
		h, _ := mh.Sum([]byte{byte(i)}, mh.SHA2_256, -1)
		codec := uint64(cid.Raw)
		if i%2 == 1 {
			codec = cid.DagProtobuf
		}
		out = append(out, cid.NewCidV1(codec, h))
	}
	return out
}

func TestRequestRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, maxRequestCIDs} {
		cids := testCIDs(n)
		wire := appendRequest(nil, cids)
		wire = appendRequest(wire, cids[:1]) // pipelined
		r := bufio.NewReader(bytes.NewReader(wire))
		got, err := readRequest(r)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(got) != n {
			t.Fatalf("n=%d: got %d CIDs", n, len(got))
		}
		for i := range got {
			if !got[i].Equals(cids[i]) {
				t.Fatalf("CID %d differs", i)
			}
		}
		if got, err := readRequest(r); err != nil || len(got) != 1 {
			t.Fatalf("second request: %v, %d", err, len(got))
		}
		if _, err := readRequest(r); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last request: %v, want io.EOF", err)
		}
	}
}

func TestMalformedRequests(t *testing.T) {
	good := testCIDs(1)[0].Bytes()
	cases := map[string][]byte{
		"zero CIDs":        {0},
		"too many CIDs":    {maxRequestCIDs + 1},
		"truncated count":  {0x80},
		"varint overflow":  bytes.Repeat([]byte{0xff}, 11),
		"zero-length CID":  {1, 0},
		"CID too long":     {1, maxCIDBytes + 1},
		"truncated CID":    append([]byte{1, byte(len(good))}, good[:5]...),
		"garbage CID":      append([]byte{1, 4}, 0xde, 0xad, 0xbe, 0xef),
		"missing 2nd CID":  append([]byte{2, byte(len(good))}, good...),
		"CID length trunc": {1},
	}
	for name, wire := range cases {
		if _, err := readRequest(bufio.NewReader(bytes.NewReader(wire))); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
}

func TestMalformedResponses(t *testing.T) {
	cases := map[string][]byte{
		"empty":            {},
		"bad status":       {7},
		"truncated length": {statusBlock, 0x80},
		"too big":          {statusBlock, 0x81, 0x80, 0x80, 0x01}, // 2 MiB + 1
		"truncated block":  {statusBlock, 10, 1, 2, 3},
	}
	for name, wire := range cases {
		if _, _, err := readBlock(bufio.NewReader(bytes.NewReader(wire))); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
	// A block of exactly MaxBlockSize is fine, and "missing" is not an error.
	wire := appendBlockHeader(nil, make([]byte, MaxBlockSize), true)
	wire = append(wire, make([]byte, MaxBlockSize)...)
	wire = appendBlockHeader(wire, nil, false)
	r := bufio.NewReader(bytes.NewReader(wire))
	if data, held, err := readBlock(r); err != nil || !held || len(data) != MaxBlockSize {
		t.Fatalf("max block: %v %v %d", err, held, len(data))
	}
	if _, held, err := readBlock(r); err != nil || held {
		t.Fatalf("missing: %v %v", err, held)
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add(appendRequest(nil, testCIDs(3)))
	f.Add([]byte{1, 2, 0x12, 0x20})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, wire []byte) {
		cids, err := readRequest(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.EOF) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(cids) == 0 || len(cids) > maxRequestCIDs {
			t.Fatalf("accepted %d CIDs", len(cids))
		}
		// What was accepted re-encodes to a request that decodes the same.
		again, err := readRequest(bufio.NewReader(bytes.NewReader(appendRequest(nil, cids))))
		if err != nil || len(again) != len(cids) {
			t.Fatalf("re-decode: %v", err)
		}
		for i := range cids {
			if !again[i].Equals(cids[i]) {
				t.Fatalf("CID %d changed", i)
			}
		}
	})
}

func FuzzReadBlock(f *testing.F) {
	f.Add(append(appendBlockHeader(nil, []byte("hello"), true), "hello"...))
	f.Add([]byte{statusMissing})
	f.Add([]byte{statusBlock, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, wire []byte) {
		data, held, err := readBlock(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if !held {
			if data != nil || wire[0] != statusMissing {
				t.Fatal("missing with data")
			}
			return
		}
		if len(data) > MaxBlockSize {
			t.Fatalf("accepted %d bytes", len(data))
		}
		// The data is the bytes after the status and the length.
		if len(wire) < 2+len(data) || !bytes.Contains(wire[2:], data) {
			t.Fatal("data is not from the wire")
		}
	})
}
