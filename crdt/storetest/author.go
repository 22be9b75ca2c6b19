// Package storetest is the conformance suite of crdt.Store: one set of tests
// that every implementation passes (crdt's MemStore and the Pebble store),
// plus the merge laws checked with rapid, and helpers that make signed facts.
//
// It imports crdt and testing libraries only.
package storetest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"

	"aura/crdt"
)

// Author makes the signed facts of one device, deterministically from a
// seed, numbering them 1, 2, 3 … with a rising Lamport clock.
type Author struct {
	Key     ed25519.PrivateKey
	ID      crdt.DeviceID
	Account crdt.AccountID
	Seq     uint64 // of the last fact made by Next
	Lamport uint64
}

// NewAuthor returns the author with key seed name, writing to account.
func NewAuthor(account crdt.AccountID, name string) *Author {
	seed := sha256.Sum256([]byte("storetest/author/" + name))
	key := ed25519.NewKeyFromSeed(seed[:])
	return &Author{Key: key, ID: crdt.DeviceIDFromKey(key.Public().(ed25519.PublicKey)), Account: account}
}

// Next makes the author's next fact: a Put of value under key "k".
func (a *Author) Next(tb testing.TB, value string) *crdt.Fact {
	tb.Helper()
	a.Seq++
	a.Lamport++
	return a.At(tb, a.Seq, a.Lamport, value)
}

// At makes a fact at a chosen seq and Lamport time, without moving the
// author's counters (for equivocations).
func (a *Author) At(tb testing.TB, seq, lamport uint64, value string) *crdt.Fact {
	tb.Helper()
	f, err := crdt.NewFact(a.Key, a.Account, seq, 1, lamport, &crdt.Put{Key: "k", Value: []byte(value)})
	if err != nil {
		tb.Fatalf("make fact: %v", err)
	}
	return f
}

// Chain makes n facts of the author.
func (a *Author) Chain(tb testing.TB, n int) []*crdt.Fact {
	tb.Helper()
	out := make([]*crdt.Fact, n)
	for i := range out {
		out[i] = a.Next(tb, fmt.Sprintf("%s-%d", a.ID.Short(), a.Seq+1))
	}
	return out
}

// Decoded returns a copy of f as a peer would receive it: decoded from its
// bytes, signature not yet checked.
func Decoded(tb testing.TB, f *crdt.Fact) *crdt.Fact {
	tb.Helper()
	g, err := crdt.DecodeFact(f.Bytes())
	if err != nil {
		tb.Fatalf("decode fact: %v", err)
	}
	return g
}

// IDs returns the ids of facts.
func IDs(fs []*crdt.Fact) []crdt.FactID {
	out := make([]crdt.FactID, len(fs))
	for i, f := range fs {
		out[i] = f.ID()
	}
	return out
}
