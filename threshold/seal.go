package threshold

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
)

// Shares at rest are age files (https://age-encryption.org/v1, binary, not
// armored) whose plaintext is Share.Bytes(). Sealing uses crypto/rand inside
// age (file key, nonce, scrypt salt), which age does not let callers
// replace: sealed bytes differ on every call. That is the one place this
// package draws its own randomness; nothing in the protocol depends on
// sealed bytes, so the simulator can keep shares unsealed.

// DefaultScryptWorkFactor is the scrypt cost (log2 N) SealShare uses: age's
// default, about a second on a laptop.
const DefaultScryptWorkFactor = 18

// maxSealedPlaintext bounds what OpenShare reads from a decrypted file.
const maxSealedPlaintext = 4 << 10

// SealShare encrypts the share under a passphrase (age scrypt recipient,
// work factor DefaultScryptWorkFactor).
func SealShare(s *Share, passphrase []byte) ([]byte, error) {
	return SealShareWorkFactor(s, passphrase, DefaultScryptWorkFactor)
}

// SealShareWorkFactor is SealShare with an explicit scrypt work factor
// (log2 N, 1..22; OpenShare accepts up to 22). Tests use small values.
func SealShareWorkFactor(s *Share, passphrase []byte, logN int) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("seal share: empty passphrase")
	}
	if logN < 1 || logN > 22 {
		return nil, fmt.Errorf("seal share: scrypt work factor %d outside 1..22", logN)
	}
	r, err := age.NewScryptRecipient(string(passphrase))
	if err != nil {
		return nil, fmt.Errorf("seal share: %w", err)
	}
	r.SetWorkFactor(logN)
	return seal(s, r)
}

// SealShareTo encrypts the share to an age X25519 recipient ("age1...").
func SealShareTo(s *Share, recipient string) ([]byte, error) {
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		return nil, fmt.Errorf("seal share: recipient: %w", err)
	}
	return seal(s, r)
}

func seal(s *Share, r age.Recipient) ([]byte, error) {
	var out bytes.Buffer
	w, err := age.Encrypt(&out, r)
	if err != nil {
		return nil, fmt.Errorf("seal share: %w", err)
	}
	plain := s.Bytes()
	defer clear(plain)
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("seal share: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("seal share: %w", err)
	}
	return out.Bytes(), nil
}

// OpenShare decrypts a share sealed with SealShare. A wrong passphrase
// returns ErrWrongPassphrase; bytes that are not a sealed share return
// ErrBadSealed.
func OpenShare(sealed, passphrase []byte) (*Share, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("open share: empty passphrase: %w", ErrWrongPassphrase)
	}
	id, err := age.NewScryptIdentity(string(passphrase))
	if err != nil {
		return nil, fmt.Errorf("open share: %w", err)
	}
	return open(sealed, id)
}

// OpenShareWith decrypts a share sealed with SealShareTo, given the age
// X25519 identity ("AGE-SECRET-KEY-1..."). The wrong identity returns
// ErrWrongPassphrase.
func OpenShareWith(sealed []byte, identity string) (*Share, error) {
	id, err := age.ParseX25519Identity(identity)
	if err != nil {
		return nil, fmt.Errorf("open share: identity: %w", err)
	}
	return open(sealed, id)
}

func open(sealed []byte, id age.Identity) (*Share, error) {
	r, err := age.Decrypt(bytes.NewReader(sealed), id)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) || errors.Is(err, age.ErrIncorrectIdentity) {
			return nil, fmt.Errorf("open share: %w", ErrWrongPassphrase)
		}
		return nil, fmt.Errorf("open share: %w: %w", ErrBadSealed, err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, maxSealedPlaintext+1))
	defer clear(plain)
	if err != nil {
		return nil, fmt.Errorf("open share: %w: %w", ErrBadSealed, err)
	}
	if len(plain) > maxSealedPlaintext {
		return nil, fmt.Errorf("open share: plaintext too large: %w", ErrBadSealed)
	}
	s, err := ParseShare(plain)
	if err != nil {
		return nil, fmt.Errorf("open share: %w", err)
	}
	return s, nil
}
