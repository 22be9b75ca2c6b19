// Package threshold owns the account's M-of-N BLS threshold key (DESIGN §2,
// §5): generating it (a trusted dealer for tests and the simulator, a
// Pedersen DKG for real accounts), signing partials with a share, verifying
// partials and group signatures, recovering the group signature from t
// partials while naming the signers of bad ones, and sealing shares at rest.
//
// # Curve
//
// The curve sits behind Backend; the default, NewBN256, is kyber v3.1.0's
// pairing/bn256 with public keys and commitments in G2 and signatures in G1,
// hashed as kyber's sign/bls does. Partials are byte-compatible with
// kyber's sign/tbls and group signatures with sign/bls.
//
// # Byte formats
//
// Everything a caller stores or sends is bytes with a fixed layout (details
// on each type): GroupKey (version, backend, t, n, t commitments), Share
// (version, backend, index, scalar; secret), partial signatures (kyber tbls:
// uint16 BE index ‖ G1 point, 66 bytes), group signatures (G1 point, 64
// bytes), DKGKey (version, backend, scalar; secret) with DKGKey.Public (G2
// point), DKG messages (dkgwire.go), sealed shares (age files). Signer
// indexes are 0-based (kyber's convention); signer i's share is f(i+1).
// Decoders are strict: exact lengths, canonical point encodings, points on
// the curve and in the prime-order subgroup, scalars below the order.
//
// # Invariants
//
//   - Pure: no clock, no network, no disk, no goroutines. Functions that
//     need randomness take an io.Reader (Deal, NewDKGKey, DKGConfig.Rand);
//     SeededReader gives a reproducible one. Given the same seed and the same
//     inputs in the same order, Deal and the whole DKG (including every
//     message byte) are reproduced bit for bit: kyber's pedersen DKG takes
//     its secret coefficient from Config.Reader (UserReaderOnly) and
//     everything else (polynomial, ephemeral keys, Schnorr nonces) from the
//     suite's RandomStream, which this package's DKG suite answers with the
//     caller's reader. The exception is sealing (SealShare, SealShareTo):
//     age draws from crypto/rand internally and offers no hook.
//   - A partial is checked structurally (length, index < n, duplicate)
//     before any curve work; Recover verifies before it trusts, names every
//     signer whose partial fails an exact check, and returns only a group
//     signature that verified against the group public key.
//   - Verifier caches each signer's public share after first use.
//   - The DKG never reads the clock: the driver calls Timeout. Honest
//     participants that finish without Timeout hold the same group key;
//     after Timeout (kyber assumes synchrony) drivers must compare keys.
//
// # Imports
//
// Only the standard library, go.dedis.ch/kyber/v3, filippo.io/age and
// golang.org/x/crypto. Never libp2p, Pebble, time.Now/time.Sleep, math/rand,
// or any other package of this module.
package threshold
