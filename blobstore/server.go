package blobstore

import (
	"bufio"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

const (
	// serveIdleTimeout closes a served stream with no request for this long.
	serveIdleTimeout = time.Minute
	// serveWriteTimeout bounds writing the answer to one request.
	serveWriteTimeout = time.Minute
)

type serverStream struct{ s network.Stream }

// handleStream answers /aura/blocks/1 requests on one stream until the
// client closes it.
func (s *Store) handleStream(str network.Stream) {
	st := &serverStream{s: str}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = str.Reset()
		return
	}
	s.streams[st] = struct{}{}
	s.serveWG.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
		s.serveWG.Done()
	}()

	if err := s.serve(str); err != nil {
		_ = str.Reset()
		return
	}
	_ = str.Close()
}

func (s *Store) serve(str network.Stream) error {
	remote := str.Conn().RemotePeer()
	br := bufio.NewReaderSize(str, 4<<10)
	bw := bufio.NewWriterSize(str, 64<<10)
	var hdr []byte
	for {
		if br.Buffered() == 0 {
			// Nothing more queued by the client: send what we have
			// before waiting for its next request.
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		_ = str.SetReadDeadline(time.Now().Add(serveIdleTimeout))
		cids, err := readRequest(br)
		if errors.Is(err, io.EOF) {
			return bw.Flush()
		}
		if err != nil {
			return err
		}
		_ = str.SetWriteDeadline(time.Now().Add(serveWriteTimeout))
		for _, c := range cids {
			err := s.viewBlock(c.Hash(), func(v []byte) error {
				if s.opts.serveHook != nil {
					v = s.opts.serveHook(remote, c, v)
				}
				hdr = appendBlockHeader(hdr[:0], v, true)
				if _, err := bw.Write(hdr); err != nil {
					return err
				}
				_, err := bw.Write(v)
				return err
			})
			if errors.Is(err, ErrNotFound) {
				hdr = appendBlockHeader(hdr[:0], nil, false)
				_, err = bw.Write(hdr)
			}
			if err != nil {
				return err
			}
		}
	}
}
