package lb

import (
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRecompute: the schedulers whose choice follows from the packet give, for a flow met in
// mid-stream, the backend Pick gave it when it was new; the others refuse.
func TestRecompute(t *testing.T) {
	cases := []struct {
		sched    string
		affinity time.Duration
		ok       bool
	}{
		{SchedMaglev, 0, true},
		{SchedSourceHash, 0, true},
		{SchedSourceHash, time.Hour, true},
		{SchedMaglev, time.Hour, false}, // later flows of a client followed its first one
		{SchedRoundRobin, 0, false},
		{SchedWeightedRoundRobin, 0, false},
		{SchedRandom, 0, false},
		{SchedLeastConn, 0, false},
		{SchedTwoChoices, 0, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/affinity=%v", c.sched, c.affinity), func(t *testing.T) {
			s := mustBuild(t, Spec{Scheduler: c.sched, Backends: backends(1, 2, 1, 3), Affinity: c.affinity}, nil)
			for i := range 2000 {
				client := clientAddr(i % 300)
				h := FlowHash(6, client, addr(999), uint16(1024+i), 80)
				got, ok := s.Recompute(client, h)
				if ok != c.ok {
					t.Fatalf("Recompute ok = %v, want %v", ok, c.ok)
				}
				if !ok {
					return
				}
				if c.affinity != 0 && i%300 != i {
					continue // a client's later flow: Pick answers from the affinity entry
				}
				want, _ := s.Pick(client, h, int64(i))
				if got.Addr != want.Addr {
					t.Fatalf("flow %d: Recompute %v, Pick %v", i, got.Addr, want.Addr)
				}
			}
		})
	}
}

func TestRecomputeNoEligible(t *testing.T) {
	bs := backends(1, 1)
	for i := range bs {
		bs[i].State = Draining
	}
	s := mustBuild(t, Spec{Scheduler: SchedMaglev, Backends: bs}, nil)
	if _, ok := s.Recompute(clientAddr(1), 42); ok {
		t.Fatal("Recompute chose a backend of a set with none eligible")
	}
}

// recomputeDigest hashes the choices of maglev and source_hash for many flows.
func recomputeDigest(t *testing.T) string {
	h := fnv.New64a()
	for _, sched := range []string{SchedMaglev, SchedSourceHash} {
		s := mustBuild(t, Spec{Scheduler: sched, Backends: backends(1, 1, 2, 1, 1), MaglevSize: 251}, nil)
		for i := range 5000 {
			client := clientAddr(i)
			b, ok := s.Recompute(client, FlowHash(6, client, addr(999), uint16(i), 443))
			if !ok {
				t.Fatalf("%s: Recompute refused", sched)
			}
			h.Write(b.Addr.AsSlice())
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// TestRecomputeAcrossProcesses: a restarted process must choose what the crashed one chose, so
// no hash may be seeded per process. The test binary runs itself as a second process and
// compares the digests of both processes' choices.
func TestRecomputeAcrossProcesses(t *testing.T) {
	const env = "EDGEGATE_LB_DIGEST_CHILD"
	if os.Getenv(env) == "1" {
		fmt.Printf("digest=%s\n", recomputeDigest(t))
		return
	}
	mine := recomputeDigest(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecomputeAcrossProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, rest, ok := strings.Cut(string(out), "digest=")
	if !ok {
		t.Fatalf("child printed no digest:\n%s", out)
	}
	if theirs := strings.Fields(rest)[0]; theirs != mine {
		t.Fatalf("choices differ between processes: %s here, %s in the child", mine, theirs)
	}
}
