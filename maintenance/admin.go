package maintenance

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"aura/crdt"
	"aura/threshold"
)

// Errors of admin replacement (DESIGN §6). Each failure has its own.
var (
	// ErrNotMember: the device named as the new admin is not a member.
	ErrNotMember = errors.New("the new admin is not a member of the account")
	// ErrAlreadyAdmin: the device named is the admin already.
	ErrAlreadyAdmin = errors.New("the device named is the admin already")
	// ErrAwaitingOperator: this device's policy leaves the approval to its
	// operator (`aura-cli admin replace --new DEVICE --approve`), and the
	// admin has not been unreachable for the auto-approval time.
	ErrAwaitingOperator = errors.New("this device waits for its operator's approval")
	// ErrNotCurrentAdmin: the request replaces a device that is not the
	// account's admin (any more).
	ErrNotCurrentAdmin = errors.New("the request replaces a device that is not the admin")
	// ErrApprovedOther: this device already signed another replacement of
	// the same admin; it signs one only (competing replacements cannot
	// both gather M honest partials when 2M > N).
	ErrApprovedOther = errors.New("this device approved another replacement of this admin")
	// ErrRequestExpired: the request's deadline passed.
	ErrRequestExpired = errors.New("the replacement request expired")
	// ErrNotEnoughApprovals: the request's deadline passed with fewer than
	// M valid partial signatures; no AdminReplaced was appended.
	ErrNotEnoughApprovals = errors.New("not enough devices approved the admin replacement")
	// ErrLostToCompeting: another replacement of the same admin won
	// (crdt.AdminOverride.Wins).
	ErrLostToCompeting = errors.New("a competing replacement of this admin won")
	// ErrNoRequest: no open request to replace the admin by that device.
	ErrNoRequest = errors.New("no open admin replacement request for that device")
)

// MetaAdminOverride is the Meta key under which a replica keeps the
// winning admin overrides (crdt.State.AdminReplacements, canonical CBOR):
// the seed's maintenance:admin_override.
const MetaAdminOverride = "maintenance:admin_override"

// AdminPolicy is a device's own rule for approving an admin replacement.
type AdminPolicy struct {
	// AutoApproveAfter: approve without the operator once the admin has
	// been unreachable this long (ms); 0 never approves by itself.
	AutoApproveAfter int64
}

// ApprovalKind is the verdict of DecideAdminApproval.
type ApprovalKind uint8

// The verdicts.
const (
	ApprovalRefused  ApprovalKind = iota // Reason says why; it may change (awaiting the operator)
	ApprovalOperator                     // the operator approved
	ApprovalAuto                         // the admin has been unreachable past the policy's time
)

var approvalNames = [...]string{"refused", "operator", "auto"}

func (k ApprovalKind) String() string {
	if int(k) < len(approvalNames) {
		return approvalNames[k]
	}
	return fmt.Sprintf("approval(%d)", uint8(k))
}

// Approval is a device's decision on one replacement request.
type Approval struct {
	Kind   ApprovalKind
	Reason error // why not, when Refused
}

// AdminApprovalInput is everything DecideAdminApproval reads.
type AdminApprovalInput struct {
	State    *crdt.State
	Self     crdt.DeviceID
	Request  *crdt.AdminReplaceProposed
	Policy   AdminPolicy
	Operator bool  // this device's operator approved replacing the admin by Request.New
	Now      int64 // unix ms
	// AdminSeen is when the driver last reached Request.Previous (or when
	// the driver started, if never since): unix ms.
	AdminSeen int64
}

// DecideAdminApproval is the one rule by which a device decides whether
// to sign a replacement request: the request must replace the current
// admin by another member, under the identity epoch it was made for
// (CheckSession), before its deadline, and this device must not have
// signed another replacement of that admin; then it approves when its
// operator said so, or by itself when its policy allows and the admin has
// been unreachable for AutoApproveAfter. The replaced admin never
// approves by itself.
func DecideAdminApproval(in AdminApprovalInput) Approval {
	st, p := in.State, in.Request
	refuse := func(err error) Approval { return Approval{Kind: ApprovalRefused, Reason: err} }
	if p.Deadline != 0 && in.Now > int64(p.Deadline) {
		return refuse(ErrRequestExpired)
	}
	if p.ActivationEpoch == 0 {
		return refuse(&StaleEpochError{Session: Scope{}, Current: ScopeOf(st)})
	}
	if err := CheckSession(st, Scope{Identity: p.ActivationEpoch - 1, Snapshot: st.SnapshotEpoch}, []crdt.DeviceID{in.Self}); err != nil {
		return refuse(err)
	}
	if st.Admin() != p.Previous {
		return refuse(fmt.Errorf("%w: %s is not the admin", ErrNotCurrentAdmin, p.Previous.Short()))
	}
	if !st.IsMember(p.New) {
		return refuse(fmt.Errorf("%w: %s", ErrNotMember, p.New.Short()))
	}
	if other, ok := approvedOther(st, in.Self, p); ok {
		return refuse(fmt.Errorf("%w (request %x)", ErrApprovedOther, other[:4]))
	}
	if in.Operator {
		return Approval{Kind: ApprovalOperator}
	}
	if in.Self != p.Previous && in.Policy.AutoApproveAfter > 0 && in.Now-in.AdminSeen >= in.Policy.AutoApproveAfter {
		return Approval{Kind: ApprovalAuto}
	}
	return refuse(ErrAwaitingOperator)
}

// approvedOther reports another request replacing the same admin that
// self voted for (its vote facts are the durable record): the lowest id.
func approvedOther(st *crdt.State, self crdt.DeviceID, p *crdt.AdminReplaceProposed) ([16]byte, bool) {
	var best [16]byte
	found := false
	for id, ref := range st.AdminProposals {
		if id == p.ProposalID || ref.Proposal.Previous != p.Previous {
			continue
		}
		if ref.Proposal.New == p.New && ref.Proposal.ActivationEpoch == p.ActivationEpoch {
			continue // the same replacement asked twice: the same message
		}
		if _, ok := ref.Votes[self]; ok && (!found || bytes.Compare(id[:], best[:]) < 0) {
			best, found = id, true
		}
	}
	return best, found
}

// adminRound is a replica's memory of one request.
type adminRound struct {
	verdict Approval
	done    bool // completed (or lost to a winning replacement)
}

// AdminRound is the status of one replacement request, as a replica sees it.
type AdminRound struct {
	ID              [16]byte
	Previous, New   crdt.DeviceID
	ActivationEpoch uint64
	Deadline        int64
	Votes           int // partials held (not yet checked)
	Threshold       int
	Verdict         Approval // this device's
	Voted           bool     // this device signed it
	Replaced        bool     // Previous has been replaced (by this request or another)
	Won             bool     // by exactly this request's replacement: the winning override
}

// adminReplaced is the replacement a request asks for (no signature).
func adminReplaced(p *crdt.AdminReplaceProposed) *crdt.AdminReplaced {
	return &crdt.AdminReplaced{Previous: p.Previous, New: p.New, ActivationEpoch: p.ActivationEpoch}
}

// SetAdminSeen tells the replica when the driver last reached the admin
// (unix ms). Drivers call it when the admin connects or a fact of it
// arrives, and once at start.
func (r *Replica) SetAdminSeen(at int64) { r.adminSeen = max(r.adminSeen, at) }

// AdminSeen is the last time the driver reported reaching the admin.
func (r *Replica) AdminSeen() int64 { return r.adminSeen }

// ProposeAdminReplace opens a replacement of the current admin by
// newAdmin, activating at the next identity epoch, and approves it itself
// (its operator asked). The signatures come with the others' votes; Tick
// completes it once M valid partials are held.
func (r *Replica) ProposeAdminReplace(now int64, newAdmin crdt.DeviceID) (Output, [16]byte, error) {
	var id [16]byte
	st := r.state
	if st.Account.IsZero() || st.Genesis == nil {
		return Output{}, id, ErrNoAccount
	}
	if st.GroupKey() == nil {
		return Output{}, id, ErrNoGroupKey
	}
	if !st.IsMember(newAdmin) {
		return Output{}, id, fmt.Errorf("replace admin by %s: %w", newAdmin.Short(), ErrNotMember)
	}
	prev := st.Admin()
	if prev == newAdmin {
		return Output{}, id, fmt.Errorf("replace admin by %s: %w", newAdmin.Short(), ErrAlreadyAdmin)
	}
	if err := CheckSession(st, ScopeOf(st), []crdt.DeviceID{r.device, newAdmin}); err != nil {
		return Output{}, id, fmt.Errorf("replace admin: %w", err)
	}
	id = r.adminProposalID(now)
	p := &crdt.AdminReplaceProposed{ProposalID: id, Previous: prev, New: newAdmin, ActivationEpoch: st.Epoch + 1,
		Deadline: uint64(now + r.cfg.AdminTimeout)}
	if other, ok := approvedOther(st, r.device, p); ok {
		return Output{}, id, fmt.Errorf("replace admin by %s: %w (request %x)", newAdmin.Short(), ErrApprovedOther, other[:4])
	}
	r.adminApproved[newAdmin] = true
	out, err := r.write(p)
	if err != nil {
		return Output{}, id, err
	}
	out.Events = append(out.Events, Event{Kind: EventAdminProposed, Proposal: id, Device: newAdmin,
		Detail: fmt.Sprintf("replace %s from epoch %d", prev.Short(), p.ActivationEpoch)})
	out.merge(r.adminTick(now))
	return out, id, nil
}

// ApproveAdminReplace records this operator's approval of replacing the
// admin by newAdmin and signs the open request for it, if any. It returns
// the verdict on that request: ErrNoRequest when none is open (expired
// ones are over; the approval waits for the next), the refusal reason
// when the rule refuses.
func (r *Replica) ApproveAdminReplace(now int64, newAdmin crdt.DeviceID) (Output, error) {
	if r.state.Account.IsZero() {
		return Output{}, ErrNoAccount
	}
	if !r.state.IsMember(newAdmin) {
		return Output{}, fmt.Errorf("approve admin %s: %w", newAdmin.Short(), ErrNotMember)
	}
	r.adminApproved[newAdmin] = true
	out := r.adminTick(now)
	var found *AdminRound
	expired := false
	for _, rd := range r.AdminRounds() {
		if rd.New != newAdmin {
			continue
		}
		if rd.Voted || rd.Won {
			return out, nil
		}
		if rd.Replaced {
			continue
		}
		if rd.Deadline != 0 && now > rd.Deadline {
			expired = true // over: the approval is for the next request
			continue
		}
		found = &rd
	}
	if found == nil {
		why := "none open"
		if expired {
			why = "the last one expired"
		}
		return out, fmt.Errorf("approve admin %s: %w (%s; the approval holds for the next one)", newAdmin.Short(), ErrNoRequest, why)
	}
	return out, fmt.Errorf("approve admin %s: %w", newAdmin.Short(), found.Verdict.Reason)
}

// adminProposalID derives a request id from the device, its seq and the time.
func (r *Replica) adminProposalID(now int64) [16]byte {
	h := sha256.New()
	h.Write([]byte("aura/admin-proposal/v1\x00"))
	h.Write(r.device[:])
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], r.writer.Seq())
	binary.BigEndian.PutUint64(n[8:], uint64(now))
	h.Write(n[:])
	var id [16]byte
	copy(id[:], h.Sum(nil))
	return id
}

// adminTick moves every open request forward (in id order): decide and
// sign, complete with M valid partials, and keep the winning override in
// Meta.
func (r *Replica) adminTick(now int64) Output {
	var out Output
	st := r.state
	if st.Genesis == nil {
		return out
	}
	ids := make([][16]byte, 0, len(st.AdminProposals))
	for id := range st.AdminProposals {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	for _, id := range ids {
		out.merge(r.adminProgress(now, id))
	}
	out.merge(r.saveAdminOverride())
	return out
}

func (r *Replica) adminProgress(now int64, id [16]byte) Output {
	var out Output
	ref := r.state.AdminProposals[id]
	if ref == nil || ref.Stamp == (crdt.Stamp{}) {
		return out // votes ahead of their request
	}
	rd := r.adminRounds[id]
	if rd == nil {
		rd = &adminRound{}
		r.adminRounds[id] = rd
	}
	if rd.done {
		return out
	}
	p := &ref.Proposal
	if cur, ok := r.state.AdminReplacements[p.Previous]; ok && (cur.ActivationEpoch <= p.ActivationEpoch) {
		rd.done = true // replaced already (by this request or a winner)
		return out
	}
	_, voted := ref.Votes[r.device]
	prev := rd.verdict
	rd.verdict = DecideAdminApproval(AdminApprovalInput{State: r.state, Self: r.device, Request: p, Policy: r.cfg.AdminPolicy,
		Operator: r.adminApproved[p.New], Now: now, AdminSeen: r.adminSeen})
	if rd.verdict.Kind == ApprovalRefused {
		if !voted && (prev.Reason == nil || prev.Reason.Error() != rd.verdict.Reason.Error()) {
			out.Events = append(out.Events, Event{Kind: EventAdminRefused, Proposal: id, Device: p.New, Err: rd.verdict.Reason})
		}
		return out
	}
	if !voted && r.share != nil {
		partial, err := threshold.SignPartial(r.share, crdt.AdminReplaceMessage(r.state.Account, adminReplaced(p)))
		if err != nil {
			out.Events = append(out.Events, Event{Kind: EventError, Proposal: id, Err: err, Detail: "sign admin replacement"})
			return out
		}
		o, err := r.write(&crdt.AdminReplaceVote{ProposalID: id, Partial: partial})
		if err != nil {
			out.Events = append(out.Events, Event{Kind: EventError, Proposal: id, Err: err, Detail: "write admin vote"})
			return out
		}
		out.merge(o)
		out.Events = append(out.Events, Event{Kind: EventAdminVoted, Proposal: id, Device: p.New, Detail: rd.verdict.Kind.String()})
		voted = true
	}
	if voted {
		// Only signers complete: every request has one (its asker, when it
		// holds a share), and a device without a share writes nothing.
		out.merge(r.adminComplete(id))
	}
	return out
}

// adminComplete recovers the group signature from the request's valid
// partials (each checked; bad signers named) and appends AdminReplaced.
func (r *Replica) adminComplete(id [16]byte) Output {
	var out Output
	ref := r.state.AdminProposals[id]
	v, gk, err := r.groupVerifier()
	if err != nil || len(ref.Votes) < int(gk.Threshold) {
		return out
	}
	p := &ref.Proposal
	repl := adminReplaced(p)
	col := v.NewCollector(crdt.AdminReplaceMessage(r.state.Account, repl))
	voters := make([]crdt.DeviceID, 0, len(ref.Votes))
	for d := range ref.Votes {
		voters = append(voters, d)
	}
	sort.Slice(voters, func(i, j int) bool { return bytes.Compare(voters[i][:], voters[j][:]) < 0 })
	bad := func(d crdt.DeviceID, why string) {
		out.Events = append(out.Events, Event{Kind: EventBadPartial, Proposal: id, Device: d, Detail: "admin replacement: " + why})
	}
	for _, d := range voters {
		part := ref.Votes[d]
		idx, err := threshold.PartialIndex(v.Key(), part)
		if err != nil || idx >= len(gk.Participants) || gk.Participants[idx] != d {
			bad(d, "a partial that is not its own")
			continue
		}
		if err := col.Add(part); err != nil {
			bad(d, err.Error())
		}
	}
	if col.Len() < int(gk.Threshold) {
		return out
	}
	sig, badIdx, err := col.Recover()
	for _, i := range badIdx {
		if i < len(gk.Participants) {
			bad(gk.Participants[i], "invalid partial signature")
		}
	}
	if err != nil {
		return out
	}
	var signers []crdt.DeviceID
	for _, i := range col.Signers() {
		signers = append(signers, gk.Participants[i])
	}
	if err := CheckSession(r.state, Scope{Identity: p.ActivationEpoch - 1, Snapshot: r.state.SnapshotEpoch}, signers); err != nil {
		out.Events = append(out.Events, Event{Kind: EventAdminRefused, Proposal: id, Device: p.New, Err: err, Detail: "not completing"})
		return out
	}
	repl.ThresholdSignature = sig
	o, err := r.write(repl)
	if err != nil {
		out.Events = append(out.Events, Event{Kind: EventError, Proposal: id, Err: err, Detail: "write admin replacement"})
		return out
	}
	out.merge(o)
	out.Events = append(out.Events, Event{Kind: EventAdminReplaced, Proposal: id, Device: p.New,
		Detail: fmt.Sprintf("replaced %s from epoch %d, signers=%d", p.Previous.Short(), p.ActivationEpoch, len(signers))})
	return out
}

// saveAdminOverride keeps the winning overrides under MetaAdminOverride
// whenever they change.
func (r *Replica) saveAdminOverride() Output {
	if len(r.state.AdminReplacements) == 0 {
		return Output{}
	}
	b, err := crdt.Marshal(r.state.AdminReplacements)
	if err != nil || bytes.Equal(b, r.adminSaved) {
		return Output{}
	}
	if err := r.cfg.Meta.Put(MetaAdminOverride, b); err != nil {
		return Output{Events: []Event{{Kind: EventError, Err: err, Detail: "save " + MetaAdminOverride}}}
	}
	r.adminSaved = b
	return Output{}
}

// AdminOverrides reads the overrides kept under MetaAdminOverride (nil
// when none was ever saved).
func (r *Replica) AdminOverrides() (map[crdt.DeviceID]crdt.AdminOverride, error) {
	b, err := r.cfg.Meta.Get(MetaAdminOverride)
	if err != nil || b == nil {
		return nil, err
	}
	var m map[crdt.DeviceID]crdt.AdminOverride
	if err := crdt.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", MetaAdminOverride, err)
	}
	return m, nil
}

// AdminRounds lists the replacement requests in the state, in id order,
// with this device's verdict.
func (r *Replica) AdminRounds() []AdminRound {
	st := r.state
	var thr int
	if gk := st.GroupKey(); gk != nil {
		thr = int(gk.Threshold)
	}
	var out []AdminRound
	for id, ref := range st.AdminProposals {
		if ref.Stamp == (crdt.Stamp{}) {
			continue
		}
		p := ref.Proposal
		rd := AdminRound{ID: id, Previous: p.Previous, New: p.New, ActivationEpoch: p.ActivationEpoch, Deadline: int64(p.Deadline),
			Votes: len(ref.Votes), Threshold: thr}
		_, rd.Voted = ref.Votes[r.device]
		if m := r.adminRounds[id]; m != nil {
			rd.Verdict = m.verdict
		}
		cur, ok := st.AdminReplacements[p.Previous]
		rd.Replaced = ok
		rd.Won = ok && cur.New == p.New && cur.ActivationEpoch == p.ActivationEpoch
		out = append(out, rd)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].ID[:], out[j].ID[:]) < 0 })
	return out
}

// NotEnoughApprovalsError says how many valid approvals a request had of
// the M it needed; it wraps ErrNotEnoughApprovals.
type NotEnoughApprovalsError struct {
	Votes, Threshold int
}

func (e *NotEnoughApprovalsError) Error() string {
	return fmt.Sprintf("%v: %d of the %d needed before the deadline; nothing was appended (approve on more devices with `aura-cli admin replace --new DEVICE --approve`, then retry)",
		ErrNotEnoughApprovals, e.Votes, e.Threshold)
}

func (e *NotEnoughApprovalsError) Unwrap() error { return ErrNotEnoughApprovals }

// AdminOutcome says how request id ended, as this replica sees it at now:
// done with nil when its replacement is the winning override; done with
// ErrLostToCompeting when another replacement of the admin won; done with
// a *NotEnoughApprovalsError when its deadline passed first; not done
// otherwise. ErrNoRequest for an id the state does not hold.
func (r *Replica) AdminOutcome(now int64, id [16]byte) (done bool, err error) {
	ref := r.state.AdminProposals[id]
	if ref == nil || ref.Stamp == (crdt.Stamp{}) {
		return true, ErrNoRequest
	}
	p := ref.Proposal
	if cur, ok := r.state.AdminReplacements[p.Previous]; ok {
		if cur.New == p.New && cur.ActivationEpoch == p.ActivationEpoch {
			return true, nil
		}
		return true, fmt.Errorf("%w: %s is admin from epoch %d", ErrLostToCompeting, cur.New.Short(), cur.ActivationEpoch)
	}
	if p.Deadline != 0 && now > int64(p.Deadline) {
		thr := 0
		if gk := r.state.GroupKey(); gk != nil {
			thr = int(gk.Threshold)
		}
		return true, &NotEnoughApprovalsError{Votes: len(ref.Votes), Threshold: thr}
	}
	return false, nil
}
