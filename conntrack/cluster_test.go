package conntrack

import (
	"errors"
	"slices"
	"testing"
)

type event struct {
	e  *Entry
	ev Event
}

// TestOnEvent: inserts, state changes, Deletes and expiry are reported; packets that keep the
// state are not.
func TestOnEvent(t *testing.T) {
	var got []event
	tb := New(Config{MaxEntries: 16, OnEvent: func(e *Entry, ev Event) { got = append(got, event{e, ev}) }})
	e := natEntry(tcpPkt(fSYN), 50000, t0)
	mustInsert(t, tb, e, t0)
	e.Update(Original, tcpDirPkt(Original, fSYN), t0+sec) // retransmitted SYN: same state
	e.Update(Reply, tcpDirPkt(Reply, fSYNACK), t0+sec)
	e.Update(Original, tcpDirPkt(Original, fACK), t0+2*sec)    // established, assured
	e.Update(Original, tcpDirPkt(Original, fPSHACK), t0+3*sec) // nothing new
	tb.Delete(e)
	want := []event{{e, EventInserted}, {e, EventState}, {e, EventState}, {e, EventDeleted}}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	got = nil
	u := natEntry(tcpPkt(fSYN), 50001, t0)
	mustInsert(t, tb, u, t0)
	tb.Sweep(t0 + 1000*sec)
	if want := []event{{u, EventInserted}, {u, EventGone}}; !slices.Equal(got, want) || !u.Removed() {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// TestInstall: a peer's flow is installed with this table's timeout for its state, updated in
// place by the same peer, replaced when the peer reuses the client tuple with another port, and
// never overrides a flow of this node or of another peer.
func TestInstall(t *testing.T) {
	tb := New(Config{MaxEntries: 16, Timeouts: Timeouts{TCPEstablished: 100 * 1e9, TCPFinWait: 10 * 1e9}})
	src := natEntry(tcpPkt(fSYN), 50000, t0)
	peer := func(port uint16) *Entry {
		x := natEntry(tcpPkt(fSYN), port, t0)
		return &Entry{Tuple: x.Tuple, Kind: 1, Origin: 2, Service: 9}
	}
	est := Saved{State: StateEstablished, Assured: true, SeenReply: true}
	a := peer(50000)
	if got, err := tb.Install(a, est, t0); err != nil || got != a || a.State() != StateEstablished || !a.Assured() || a.Expires() != (t0+100*sec)&^0xff {
		t.Fatalf("install: %v %v state %v expires %d", got, err, a.State(), a.Expires()-t0)
	}
	if got, err := tb.Install(peer(50000), Saved{State: StateFinWait, Assured: true, SeenReply: true}, t0+sec); err != nil || got != a || a.State() != StateFinWait || a.Expires() != (t0+11*sec)&^0xff {
		t.Fatalf("update: %v %v state %v", got, err, a.State())
	}
	b := peer(50001)
	if got, err := tb.Install(b, est, t0+2*sec); err != nil || got != b || !a.Removed() || tb.Len() != 1 {
		t.Fatalf("replace: %v %v, old removed %v, len %d", got, err, a.Removed(), tb.Len())
	}
	other := peer(50001)
	other.Origin = 3
	if _, err := tb.Install(other, est, t0+2*sec); !errors.Is(err, ErrExists) || b.Removed() {
		t.Fatalf("another peer's flow replaced: %v", err)
	}
	tb2 := New(Config{MaxEntries: 16})
	mustInsert(t, tb2, src, t0)
	if _, err := tb2.Install(peer(50000), est, t0); !errors.Is(err, ErrExists) || src.Removed() {
		t.Fatalf("local flow replaced: %v", err)
	}
	if _, err := tb2.Install(peer(50001), Saved{}, t0); !errors.Is(err, ErrNotInit) {
		t.Fatalf("state none: %v", err)
	}
}
