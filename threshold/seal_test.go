package threshold

import (
	"bytes"
	"errors"
	"testing"

	"filippo.io/age"
)

func TestSealShareWithPassphrase(t *testing.T) {
	_, shares := mustDeal(t, nil, "seal", 3, 5)
	s := shares[3]
	sealed, err := SealShareWorkFactor(s, []byte("correct horse"), 10)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, s.Bytes()[4:]) {
		t.Fatal("sealed bytes contain the scalar")
	}
	got, err := OpenShare(sealed, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), s.Bytes()) || got.Index() != 3 {
		t.Fatal("opened share differs")
	}
	if _, err := OpenShare(sealed, []byte("battery staple")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := OpenShare(sealed, nil); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("empty passphrase: %v", err)
	}
	if _, err := OpenShare([]byte("not an age file"), []byte("x")); !errors.Is(err, ErrBadSealed) {
		t.Fatalf("garbage: %v", err)
	}
	truncated := sealed[:len(sealed)-5]
	if _, err := OpenShare(truncated, []byte("correct horse")); err == nil {
		t.Fatal("truncated file opened")
	}
	if _, err := SealShareWorkFactor(s, nil, 10); err == nil {
		t.Fatal("sealed with an empty passphrase")
	}
	if _, err := SealShareWorkFactor(s, []byte("x"), 23); err == nil {
		t.Fatal("sealed with work factor 23")
	}
}

func TestSealShareToX25519(t *testing.T) {
	_, shares := mustDeal(t, nil, "seal-x", 3, 5)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := age.GenerateX25519Identity()
	sealed, err := SealShareTo(shares[0], id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenShareWith(sealed, id.String())
	if err != nil || !bytes.Equal(got.Bytes(), shares[0].Bytes()) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := OpenShareWith(sealed, other.String()); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong identity: %v", err)
	}
	if _, err := OpenShare(sealed, []byte("pass")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("passphrase on an X25519 file: %v", err)
	}
	if _, err := SealShareTo(shares[0], "age1bogus"); err == nil {
		t.Fatal("sealed to a bogus recipient")
	}
}

func TestSealShareRejectsNonShare(t *testing.T) {
	// An age file with the right passphrase whose plaintext is not a share.
	r, _ := age.NewScryptRecipient("pw")
	r.SetWorkFactor(10)
	var buf bytes.Buffer
	w, _ := age.Encrypt(&buf, r)
	w.Write([]byte("hello"))
	w.Close()
	if _, err := OpenShare(buf.Bytes(), []byte("pw")); !errors.Is(err, ErrBadShare) {
		t.Fatalf("non-share plaintext: %v", err)
	}
}
