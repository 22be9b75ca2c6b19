// Package threshold owns the account's M-of-N BLS threshold key (DESIGN §2,
// §5): generating it (a trusted dealer for tests, a Pedersen DKG for real
// accounts, run by the key generation session), signing partials with a
// share, verifying partials and group signatures, recovering the group
// signature from t partials while naming the signers of bad ones, and
// sealing shares at rest.
//
// # Key generation session
//
// keygen.go holds the whole protocol of `aura-cli threshold keygen`: a hub
// (the device the operator asked) and n-1 participants exchange frames
// (init, pub, start, msg, result, final, abort; keygenwire.go) around the
// DKG, as two state machines, KeygenHub and KeygenParticipant. Inputs are
// frames received (and, at the hub, from which participant), ticks with
// the driver's current time, broken channels and the driver's Abort;
// outputs (KeygenOutput) are frames to send and to whom, a share to seal
// before acknowledging (Keep, then Kept), and a final result (group key,
// share, participants) or a *KeygenError naming the participant that
// failed or lied. Every participant reports the key it computed; only when
// all agree does the hub send final, each participant seal its share, and
// the hub finish, so that its driver publishes the key. The node drives
// the sessions over libp2p streams (node/keygen.go), the simulator over
// virtual streams under faults (sim/keygen.go). Frames keep the byte
// format of /aura/dkg/1 from before the move (canonical CBOR, checked
// against the node's encoder in node's tests), so devices of either
// version interoperate. testdata/keygen/*.txt pins the frames and
// outcomes of a few scenarios (keygen_transcript_test.go, -rewrite).
//
// A participant that acknowledged holds a share of a key the hub may still
// fail to finish (other acknowledgements lost, the hub crashed): such a
// share is only good once a group key fact names its key. (The node seals
// it in place of the previous share, as it did before the protocol moved
// here; a retried keygen replaces it.)
//
// # Resharing session
//
// reshare.go moves the account's key to new shares of the same group
// public key (`aura-cli threshold reshare`, and by itself after a device
// is removed): ReshareHub and ReshareParticipant, built like the key
// generation session and speaking its KeygenOutput, with their own frames
// (reshare_wire.go, ParseReshareFrame) around a resharing DKG
// (reshare_dkg.go, kyber's pedersen DKG with OldNodes/NewNodes/Share/
// OldThreshold). Invited devices that do not answer within
// ReshareTimeouts.Collect are left out instead of waited for: the session
// needs only the old threshold M of share holders online. With fewer it
// fails with ErrReshareQuorum, a threshold the new group cannot meet
// fails with ErrReshareThreshold, and a failed session changes nothing
// (no participant is asked to keep a share). The devices that answered
// are the new group, and the hub names the dealers in its start frame, so
// the DKG needs no timeout: each member is done once every named deal is
// certified by every member, and all interpolate the same first M deals.
// The new key keeps the group public point (past snapshots still verify)
// with new commitments, so a partial made with an old share is a bad
// partial under it.
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
// point), DKG messages (dkgwire.go), key generation frames (keygenwire.go:
// canonical CBOR maps with integer keys), sealed shares (age files). Signer
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
//     The key generation session does: only its hub ever times the DKG
//     out, and a key that differs from the hub's is a lie
//     (ErrKeygenDisagree) only when the hub did not time out.
//   - Sessions take time from their callers (Tick(now), Step(now, ...)),
//     randomness from KeygenHubConfig.Rand / KeygenParticipantConfig.Rand,
//     and order everything they emit by participant index: the same inputs
//     give the same frames, byte for byte.
//   - Decoders of frames (ParseKeygenFrame) and messages never panic on
//     any input; a frame that does not decode fails the session naming its
//     sender (ErrKeygenProtocol).
//
// # Imports
//
// Only the standard library, go.dedis.ch/kyber/v3, filippo.io/age and
// golang.org/x/crypto. Never libp2p, Pebble, time.Now/time.Sleep, math/rand,
// or any other package of this module.
package threshold
