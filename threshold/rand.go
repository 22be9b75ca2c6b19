package threshold

import (
	"crypto/cipher"
	"crypto/sha256"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20"
)

// seedDomain separates SeededReader keys from any other use of the seed.
const seedDomain = "aura/threshold/seed/v1"

// SeededReader returns a deterministic, unbounded io.Reader for tests and the
// simulator: the ChaCha20 keystream (RFC 8439, 32-bit counter, nonce zero)
// under the key SHA-256("aura/threshold/seed/v1" ‖ seed). The same seed
// always yields the same bytes, on every platform.
//
// Never hand the same seed to two key generations or DKG runs that matter:
// the DKG signs with Schnorr, and a repeated nonce over different messages
// leaks the long-term key. Production drivers pass crypto/rand.Reader.
func SeededReader(seed []byte) io.Reader {
	h := sha256.New()
	h.Write([]byte(seedDomain))
	h.Write(seed)
	key := h.Sum(nil)
	c, err := chacha20.NewUnauthenticatedCipher(key, make([]byte, chacha20.NonceSize))
	if err != nil {
		// Key and nonce sizes are fixed above; this cannot happen.
		panic("threshold: chacha20: " + err.Error())
	}
	return &keystreamReader{c: c}
}

type keystreamReader struct {
	c *chacha20.Cipher
}

func (r *keystreamReader) Read(p []byte) (int, error) {
	clear(p)
	r.c.XORKeyStream(p, p)
	return len(p), nil
}

// Stream adapts an io.Reader to the cipher.Stream that kyber draws scalars
// from: the key stream is the reader's output, read in order, so a
// deterministic reader gives a deterministic stream. kyber's Stream interface
// cannot return errors; if the reader fails, the functions of this package
// that consume the stream return an error wrapping the reader's error.
func Stream(r io.Reader) cipher.Stream { return &readerStream{r: r} }

type readerStream struct {
	r   io.Reader
	buf []byte
}

// streamFailure is the panic value readerStream raises when its reader fails;
// catchStream turns it back into an error at the package boundary.
type streamFailure struct{ err error }

func (s *readerStream) XORKeyStream(dst, src []byte) {
	if len(dst) < len(src) {
		panic("threshold: XORKeyStream: output smaller than input")
	}
	if cap(s.buf) < len(src) {
		s.buf = make([]byte, len(src))
	}
	buf := s.buf[:len(src)]
	if _, err := io.ReadFull(s.r, buf); err != nil {
		panic(streamFailure{err: err})
	}
	for i := range src {
		dst[i] = src[i] ^ buf[i]
	}
	clear(buf)
}

// catchStream converts a readerStream failure raised below it into *errp.
// Other panics propagate. Use as: defer catchStream(&err).
func catchStream(errp *error) {
	if r := recover(); r != nil {
		f, ok := r.(streamFailure)
		if !ok {
			panic(r)
		}
		*errp = fmt.Errorf("threshold: reading randomness: %w", f.err)
	}
}
