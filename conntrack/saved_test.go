package conntrack

import (
	"errors"
	"testing"
)

// TestSaveRestore: an entry saved in one table and restored in another keeps its tuples,
// state, flags and expiry, and goes on from there; expired or uninitialised saves are refused.
func TestSaveRestore(t *testing.T) {
	src := New(Config{MaxEntries: 16})
	e := natEntry(tcpPkt(fSYN), 50000, t0)
	mustInsert(t, src, e, t0)
	e.Update(Reply, tcpDirPkt(Reply, fSYNACK), t0+sec)
	e.Update(Original, tcpDirPkt(Original, fACK), t0+2*sec)
	saved := e.Save()
	if saved.State != StateEstablished || !saved.Assured || !saved.SeenReply || saved.Expires != e.Expires() {
		t.Fatalf("saved %+v from %v", saved, e.State())
	}

	dst := New(Config{MaxEntries: 16})
	r := &Entry{Tuple: e.Tuple, Kind: 1, Service: e.Service}
	if got, err := dst.Restore(r, saved, t0+3*sec); err != nil || got != r {
		t.Fatalf("Restore: %v", err)
	}
	if r.Save() != saved {
		t.Fatalf("restored %+v, saved %+v", r.Save(), saved)
	}
	for _, d := range []Dir{Original, Reply} {
		if got, gd := dst.Lookup(&e.Tuple[d], t0+3*sec); got != r || gd != d {
			t.Fatalf("lookup %v: %p %v", d, got, gd)
		}
	}
	// The flow continues (its windows are learnt afresh) and closes as usual.
	if !r.Update(Original, tcpDirPkt(Original, fFINACK), t0+4*sec) || r.State() != StateFinWait {
		t.Fatalf("FIN on the restored flow: %v", r.State())
	}

	for _, c := range []struct {
		name string
		s    Saved
		want error
	}{
		{"expired", Saved{State: StateEstablished, Expires: t0}, ErrExpired},
		{"no state", Saved{Expires: t0 + 100*sec}, ErrNotInit},
		{"bad state", Saved{State: numStates, Expires: t0 + 100*sec}, ErrNotInit},
	} {
		x := &Entry{Tuple: [2]Tuple{TupleOf(udpPkt(client, vip, 1, 2)), TupleOf(udpPkt(backend, masq, 2, 1))}}
		if _, err := dst.Restore(x, c.s, t0+5*sec); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
