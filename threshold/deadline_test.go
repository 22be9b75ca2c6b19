package threshold

import "testing"

// The hub's DKG deadline grows with the participants, and its session
// outlasts the DKG yet ends before a participant's 90 s session would.
func TestDKGDeadlineScalesWithParticipants(t *testing.T) {
	if d5, d30 := DefaultDKGDeadline(5), DefaultDKGDeadline(30); d5 < 20_000 || d30 <= d5 {
		t.Fatalf("DKG deadline %d ms at 5 devices, %d ms at 30", d5, d30)
	}
	for n := 2; n <= 30; n++ {
		k := KeygenTimeouts{}.withDefaults(60_000, n)
		r := ReshareTimeouts{}.withDefaults(60_000, n)
		if k.Session < k.DKG+30_000 || k.Session >= 90_000 || r.Session < r.Collect+r.DKG || r.Session >= 90_000 {
			t.Fatalf("n=%d: keygen %+v, reshare %+v", n, k, r)
		}
	}
	if k := (KeygenTimeouts{DKG: 1000, Session: 5000}).withDefaults(60_000, 30); k.DKG != 1000 || k.Session != 5000 {
		t.Fatalf("explicit timeouts overridden: %+v", k)
	}
}
