package crdt

import "fmt"

// Kind names the type of a fact's body.
type Kind uint8

// The fact kinds of DESIGN §3 and the seed's maintenance events. Values are
// part of the wire format: never renumber.
const (
	KindGenesis           Kind = 1
	KindDeviceAdded       Kind = 2
	KindDeviceRemoved     Kind = 3
	KindCapabilityGrant   Kind = 4
	KindPut               Kind = 5
	KindDelete            Kind = 6
	KindBlobStored        Kind = 7
	KindBlobTombstoned    Kind = 8
	KindEnvelope          Kind = 9
	KindDeviceMetadata    Kind = 10
	KindSnapshotProposed  Kind = 11
	KindSnapshotVote      Kind = 12
	KindSnapshotCompleted Kind = 13
	KindCacheInvalidated  Kind = 14
	KindUpgradeMetadata   Kind = 15
	KindUpgradeReady      Kind = 16
	KindUpgradeActivated  Kind = 17
	KindAdminReplaced     Kind = 18
	KindGroupKey          Kind = 19
	KindSnapshotAbandoned Kind = 20
	// Admin replacement round (crdt/admin.go): a request and its votes.
	KindAdminReplaceProposed Kind = 21
	KindAdminReplaceVote     Kind = 22
	KindUpgradeCancelled     Kind = 23
	kindEnd                       = 24
)

var kindNames = [kindEnd]string{"", "genesis", "device_added", "device_removed", "capability_grant", "put",
	"delete", "blob_stored", "blob_tombstoned", "envelope", "device_metadata", "snapshot_proposed",
	"snapshot_vote", "snapshot_completed", "cache_invalidated", "upgrade_metadata", "upgrade_ready",
	"upgrade_activated", "admin_replaced", "group_key", "snapshot_abandoned", "admin_replace_proposed",
	"admin_replace_vote", "upgrade_cancelled"}

// Known reports whether k is a kind this version understands.
func (k Kind) Known() bool { return k > 0 && k < kindEnd }

func (k Kind) String() string {
	if k.Known() {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Body is the typed payload of a fact.
type Body interface{ Kind() Kind }

// Capabilities (DESIGN §3). Genesis grants all of them to the admin.
const (
	CapAdmin           = "admin"
	CapWrite           = "write"
	CapSnapshotPropose = "snapshot_propose"
	CapSnapshotVote    = "snapshot_vote"
	CapUpgradePublish  = "upgrade_publish"
)

// AllCapabilities lists every capability, sorted.
var AllCapabilities = []string{CapAdmin, CapSnapshotPropose, CapSnapshotVote, CapUpgradePublish, CapWrite}

// DefaultDeviceCapabilities are granted to a joining device unless the admin
// says otherwise.
var DefaultDeviceCapabilities = []string{CapSnapshotPropose, CapSnapshotVote, CapWrite}

// Genesis founds an account. Its author is the first admin; it opens
// identity epoch 1 (the fact's Epoch must be 1 and its Seq 1).
//
// The account id is self-certifying: fact.Account must equal
// AccountIDFor(author, Nonce), so no member can forge another genesis.
type Genesis struct {
	Name      string   `cbor:"1,keyasint,omitempty"`
	Threshold uint64   `cbor:"2,keyasint"` // M of the M-of-N snapshot key
	Nonce     [16]byte `cbor:"3,keyasint"`
}

// DeviceAdded admits a device. A membership fact opens identity epoch
// fact.Epoch.
type DeviceAdded struct {
	Device       DeviceID `cbor:"1,keyasint"`
	Capabilities []string `cbor:"2,keyasint"`
	Name         string   `cbor:"3,keyasint,omitempty"`
}

// DeviceRemoved removes a device from epoch fact.Epoch on.
type DeviceRemoved struct {
	Device DeviceID `cbor:"1,keyasint"`
}

// CapabilityGrant grants more capabilities to a member from epoch fact.Epoch.
type CapabilityGrant struct {
	Device       DeviceID `cbor:"1,keyasint"`
	Capabilities []string `cbor:"2,keyasint"`
}

// Put sets an application key.
type Put struct {
	Key   string `cbor:"1,keyasint"`
	Value []byte `cbor:"2,keyasint"`
}

// Delete removes an application key.
type Delete struct {
	Key string `cbor:"1,keyasint"`
}

// BlobStored records a blob held by the account's devices.
type BlobStored struct {
	CID  []byte `cbor:"1,keyasint"` // binary CID
	Size uint64 `cbor:"2,keyasint"`
	Name string `cbor:"3,keyasint,omitempty"`
}

// BlobTombstoned deletes a blob; its storage may be reclaimed once a snapshot
// epoch passes the tombstone's epoch.
type BlobTombstoned struct {
	CID []byte `cbor:"1,keyasint"`
}

// Envelope is an encrypted payload sealed under a key-rotation epoch.
type Envelope struct {
	KeyEpoch   uint64 `cbor:"1,keyasint"`
	Recipient  []byte `cbor:"2,keyasint,omitempty"`
	Ciphertext []byte `cbor:"3,keyasint"`
}

// Upgrade policies of DeviceMetadata.
const (
	PolicyManual = "manual"
	PolicyAuto   = "auto"
)

// DeviceMetadata is what a device says about itself.
type DeviceMetadata struct {
	Name               string   `cbor:"1,keyasint,omitempty"`
	SupportedProtocols []string `cbor:"2,keyasint"`
	UpgradePolicy      string   `cbor:"3,keyasint"`
}

// SnapshotProposed opens a snapshot round (seed: MaintenanceEvent).
type SnapshotProposed struct {
	ProposalID  [16]byte      `cbor:"1,keyasint"`
	Proposer    DeviceID      `cbor:"2,keyasint"`
	TargetEpoch uint64        `cbor:"3,keyasint"`
	Frontier    VersionVector `cbor:"4,keyasint"`
	StateDigest Hash          `cbor:"5,keyasint"`
	Deadline    uint64        `cbor:"6,keyasint,omitempty"` // unix ms on the proposer's clock
	PrefixHash  Hash          `cbor:"7,keyasint"`           // journal prefix hash of Frontier
}

// SnapshotVote approves a proposal with a partial threshold signature.
type SnapshotVote struct {
	ProposalID  [16]byte `cbor:"1,keyasint"`
	StateDigest Hash     `cbor:"2,keyasint"`
	Partial     []byte   `cbor:"3,keyasint"`
}

// SnapshotV1 is what a completed snapshot names.
type SnapshotV1 struct {
	Epoch       uint64        `cbor:"1,keyasint"` // identity epoch of the snapshot
	Frontier    VersionVector `cbor:"2,keyasint"`
	StateDigest Hash          `cbor:"3,keyasint"`
	BlobCID     []byte        `cbor:"4,keyasint"` // state blob, binary CID
	BlobSize    uint64        `cbor:"5,keyasint"`
	PrefixHash  Hash          `cbor:"6,keyasint"`
	// Heads are the chain heads h(author, Frontier[author]); PrefixHash is
	// their combination, so a restoring node can continue every chain.
	Heads map[DeviceID]Hash `cbor:"7,keyasint"`
}

// SnapshotCompleted closes a round with the account's threshold signature.
type SnapshotCompleted struct {
	ProposalID         [16]byte   `cbor:"1,keyasint"`
	Snapshot           SnapshotV1 `cbor:"2,keyasint"`
	Participants       []DeviceID `cbor:"3,keyasint"`
	ThresholdSignature []byte     `cbor:"4,keyasint"`
}

// SnapshotAbandoned records that a proposer gave up a round.
type SnapshotAbandoned struct {
	ProposalID [16]byte `cbor:"1,keyasint"`
	Reason     string   `cbor:"2,keyasint,omitempty"`
}

// CacheInvalidated raises the epoch floor of derived-data keys.
type CacheInvalidated struct {
	Keys       []string `cbor:"1,keyasint"`
	EpochFloor uint64   `cbor:"2,keyasint"`
}

// Upgrade kinds.
const (
	UpgradeSoft = "soft"
	UpgradeHard = "hard"
)

// UpgradeArtifact is one platform's build of an upgrade: the blob to fetch
// by CID and what the fetched bytes must be.
type UpgradeArtifact struct {
	Platform string `cbor:"1,keyasint"` // GOOS/GOARCH, e.g. "linux/amd64"
	SHA256   Hash   `cbor:"2,keyasint"` // sha2-256 of the artifact's bytes
	Size     uint64 `cbor:"3,keyasint"` // its length in bytes
	CID      []byte `cbor:"4,keyasint"` // binary CID of the blob holding it
}

// UpgradeMetadata announces one version of an upgrade package (DESIGN §6,
// the seed's "OTA Upgrades"). ID is UpgradeIDOf(the body): one id, one
// content, so readiness and activation always name exactly what was
// signed. Validate lists what the guard refuses.
type UpgradeMetadata struct {
	ID              [16]byte          `cbor:"1,keyasint"`
	Version         string            `cbor:"2,keyasint"`           // semver, "1.2.3" or "v1.2.3"
	UpgradeKind     string            `cbor:"5,keyasint"`           // UpgradeSoft or UpgradeHard
	ActivationFence uint64            `cbor:"6,keyasint,omitempty"` // identity epoch (hard forks)
	Protocol        string            `cbor:"7,keyasint,omitempty"` // account protocol it brings, if any
	Package         string            `cbor:"8,keyasint"`
	Artifacts       []UpgradeArtifact `cbor:"9,keyasint"`            // sorted by platform, one per platform
	MinReady        uint64            `cbor:"10,keyasint,omitempty"` // ready devices a hard fork needs
	Expires         uint64            `cbor:"11,keyasint,omitempty"` // unix ms; 0: never
}

// UpgradeReady says the author fetched its platform's artifact, checked
// its hash and size, and consents.
type UpgradeReady struct {
	Upgrade [16]byte `cbor:"1,keyasint"`
	SHA256  Hash     `cbor:"2,keyasint,omitempty"` // the artifact it verified
}

// UpgradeActivated activates a hard fork (seed: MaintenanceEvent).
type UpgradeActivated struct {
	Upgrade         [16]byte `cbor:"1,keyasint"`
	ToVersion       string   `cbor:"2,keyasint"`
	ActivationFence uint64   `cbor:"3,keyasint"`
}

// UpgradeCancelled withdraws an upgrade. It takes effect only when written
// before the fence (at an identity epoch below ActivationFence; soft
// upgrades always).
type UpgradeCancelled struct {
	Upgrade [16]byte `cbor:"1,keyasint"`
	Reason  string   `cbor:"2,keyasint,omitempty"`
}

// AdminReplaced replaces the admin; valid only with the account's threshold
// signature over AdminReplaceMessage, checked by the guard against the
// published group keys. It opens identity epoch ActivationEpoch (the fact's
// Epoch must equal it); competing replacements resolve by AdminOverride.Wins
// (crdt/admin.go).
type AdminReplaced struct {
	Previous           DeviceID `cbor:"1,keyasint"`
	New                DeviceID `cbor:"2,keyasint"`
	ActivationEpoch    uint64   `cbor:"3,keyasint"`
	ThresholdSignature []byte   `cbor:"4,keyasint"`
}

// AdminReplaceProposed asks the devices of the account to sign the
// replacement of Previous by New from ActivationEpoch on (their partials
// come as AdminReplaceVote facts).
type AdminReplaceProposed struct {
	ProposalID      [16]byte `cbor:"1,keyasint"`
	Previous        DeviceID `cbor:"2,keyasint"`
	New             DeviceID `cbor:"3,keyasint"`
	ActivationEpoch uint64   `cbor:"4,keyasint"`
	Deadline        uint64   `cbor:"5,keyasint,omitempty"` // unix ms on the proposer's clock
}

// AdminReplaceVote approves a replacement with the author's partial
// threshold signature over AdminReplaceMessage.
type AdminReplaceVote struct {
	ProposalID [16]byte `cbor:"1,keyasint"`
	Partial    []byte   `cbor:"2,keyasint"`
}

// GroupKey publishes the account's threshold public key.
type GroupKey struct {
	KeyEpoch     uint64     `cbor:"1,keyasint"`
	Threshold    uint64     `cbor:"2,keyasint"`
	Participants []DeviceID `cbor:"3,keyasint"` // share index i+1 belongs to Participants[i]
	PublicKey    []byte     `cbor:"4,keyasint"` // backend-encoded group key with commitments
}

func (Genesis) Kind() Kind           { return KindGenesis }
func (DeviceAdded) Kind() Kind       { return KindDeviceAdded }
func (DeviceRemoved) Kind() Kind     { return KindDeviceRemoved }
func (CapabilityGrant) Kind() Kind   { return KindCapabilityGrant }
func (Put) Kind() Kind               { return KindPut }
func (Delete) Kind() Kind            { return KindDelete }
func (BlobStored) Kind() Kind        { return KindBlobStored }
func (BlobTombstoned) Kind() Kind    { return KindBlobTombstoned }
func (Envelope) Kind() Kind          { return KindEnvelope }
func (DeviceMetadata) Kind() Kind    { return KindDeviceMetadata }
func (SnapshotProposed) Kind() Kind  { return KindSnapshotProposed }
func (SnapshotVote) Kind() Kind      { return KindSnapshotVote }
func (SnapshotCompleted) Kind() Kind { return KindSnapshotCompleted }
func (SnapshotAbandoned) Kind() Kind { return KindSnapshotAbandoned }
func (CacheInvalidated) Kind() Kind  { return KindCacheInvalidated }
func (UpgradeMetadata) Kind() Kind   { return KindUpgradeMetadata }
func (UpgradeReady) Kind() Kind      { return KindUpgradeReady }
func (UpgradeActivated) Kind() Kind  { return KindUpgradeActivated }
func (AdminReplaced) Kind() Kind     { return KindAdminReplaced }
func (GroupKey) Kind() Kind          { return KindGroupKey }
func (UpgradeCancelled) Kind() Kind  { return KindUpgradeCancelled }

func (AdminReplaceProposed) Kind() Kind { return KindAdminReplaceProposed }
func (AdminReplaceVote) Kind() Kind     { return KindAdminReplaceVote }

func newBody(k Kind) Body {
	switch k {
	case KindGenesis:
		return &Genesis{}
	case KindDeviceAdded:
		return &DeviceAdded{}
	case KindDeviceRemoved:
		return &DeviceRemoved{}
	case KindCapabilityGrant:
		return &CapabilityGrant{}
	case KindPut:
		return &Put{}
	case KindDelete:
		return &Delete{}
	case KindBlobStored:
		return &BlobStored{}
	case KindBlobTombstoned:
		return &BlobTombstoned{}
	case KindEnvelope:
		return &Envelope{}
	case KindDeviceMetadata:
		return &DeviceMetadata{}
	case KindSnapshotProposed:
		return &SnapshotProposed{}
	case KindSnapshotVote:
		return &SnapshotVote{}
	case KindSnapshotCompleted:
		return &SnapshotCompleted{}
	case KindSnapshotAbandoned:
		return &SnapshotAbandoned{}
	case KindCacheInvalidated:
		return &CacheInvalidated{}
	case KindUpgradeMetadata:
		return &UpgradeMetadata{}
	case KindUpgradeReady:
		return &UpgradeReady{}
	case KindUpgradeActivated:
		return &UpgradeActivated{}
	case KindAdminReplaced:
		return &AdminReplaced{}
	case KindGroupKey:
		return &GroupKey{}
	case KindAdminReplaceProposed:
		return &AdminReplaceProposed{}
	case KindAdminReplaceVote:
		return &AdminReplaceVote{}
	case KindUpgradeCancelled:
		return &UpgradeCancelled{}
	}
	return nil
}

func decodeBody(k Kind, b []byte) (Body, error) {
	if k == KindPut {
		if p, ok := decodePut(b); ok {
			return p, nil
		}
	}
	body := newBody(k)
	if body == nil {
		return nil, ErrUnknownKind
	}
	if err := Unmarshal(b, body); err != nil {
		return nil, err
	}
	return body, nil
}

// DecodeBodyOf decodes a canonical body of kind k.
func DecodeBodyOf(k Kind, b []byte) (Body, error) { return decodeBody(k, b) }
