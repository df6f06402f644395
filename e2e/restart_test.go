package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

// restartConfig: web (maglev over three backends) carries the held HTTP connections, bulk
// (maglev, one backend: iperf3's control and data connections must meet one server) the
// transfer; extra services are appended as given.
func restartConfig(extra string) string {
	return `tun: {name: edge0, mtu: 1500, queues: 2}
nat:
  masquerade_addresses: [198.18.250.1]
admin: {listen: "127.0.0.1:9469", socket: "` + adminSocketVar + `"}
services:
  - name: web
    addresses: [198.18.200.10]
    ports: [{name: http, port: 80, target_port: 8080}]
    scheduler: maglev
    backends: [{address: 198.19.1.2}, {address: 198.19.2.2}, {address: 198.19.3.2}]
  - name: bulk
    addresses: [198.18.200.30]
    ports: [{name: iperf, port: 5201}]
    scheduler: maglev
    backends: [{address: 198.19.1.2}]
` + extra
}

// supervisor runs edgegate in the gateway namespace and starts it again whenever it exits, as
// systemd's Restart=always with no delay, until stop.
type supervisor struct {
	tp      *topo
	bin     string
	cfg     string
	mu      sync.Mutex
	cur     *exec.Cmd
	starts  int
	stopped bool
	done    chan struct{}
	log     lockedBuffer
}

func (tp *topo) supervise(t *testing.T, bin, cfg string) *supervisor {
	s := &supervisor{tp: tp, bin: bin, cfg: cfg, done: make(chan struct{})}
	go s.loop()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("edgegate output (all runs):\n%s", s.log.String())
		}
	})
	return s
}

func (s *supervisor) loop() {
	defer close(s.done)
	for {
		cmd := s.tp.gw.Command(context.Background(), s.bin, "run", "-c", s.cfg)
		cmd.Stdout, cmd.Stderr = &s.log, &s.log
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		err := s.tp.gw.StartCmd(cmd)
		if err == nil {
			s.cur, s.starts = cmd, s.starts+1
		}
		s.mu.Unlock()
		if err != nil {
			fmt.Fprintf(&s.log, "supervisor: %v\n", err)
			return
		}
		<-s.tp.gw.Exited(cmd)
	}
}

// current returns the running edgegate and how many times it was started.
func (s *supervisor) current() (*exec.Cmd, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.starts
}

// stop ends the loop and stops edgegate with SIGTERM, returning its exit code.
func (s *supervisor) stop(t *testing.T) int {
	t.Helper()
	s.mu.Lock()
	s.stopped = true
	cmd := s.cur
	s.mu.Unlock()
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.tp.gw.Exited(cmd):
	case <-time.After(10 * time.Second):
		t.Fatal("edgegate did not exit within 10 s of SIGTERM")
	}
	<-s.done
	return cmd.ProcessState.ExitCode()
}

// heldConn is an idle keep-alive HTTP connection and the backend that answered it first.
type heldConn struct {
	c       net.Conn
	r       *bufio.Reader
	backend string
}

// ask sends one request on the connection and returns the answer's body.
func (h *heldConn) ask() (string, error) { return h.askWithin(10 * time.Second) }

// askWithin is ask with its own time limit.
func (h *heldConn) askWithin(limit time.Duration) (string, error) {
	h.c.SetDeadline(time.Now().Add(limit))
	if _, err := io.WriteString(h.c, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// holdConns opens n keep-alive connections from ns to addr and records each one's backend.
func holdConns(t *testing.T, ns *netns.NS, addr string, n int) []*heldConn {
	t.Helper()
	hs := make([]*heldConn, 0, n)
	t.Cleanup(func() {
		for _, h := range hs {
			h.c.Close()
		}
	})
	for range n {
		var c net.Conn
		must(t, ns.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, 5*time.Second); return }))
		h := &heldConn{c: c, r: bufio.NewReader(c)}
		hs = append(hs, h)
		b, err := h.ask()
		if err != nil {
			t.Fatalf("held connection %d: %v", len(hs), err)
		}
		h.backend = b
	}
	return hs
}

// heldCheckParallel bounds the held connections checkHeld asks at once.
const heldCheckParallel = 100

// checkHeld asks every held connection again: each must answer, from the backend that answered
// it first. after names the event for the message (the test goes on: later checks still report).
func checkHeld(t *testing.T, hs []*heldConn, after string) {
	t.Helper()
	var mu sync.Mutex
	var failed, moved int
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, heldCheckParallel) // a broken path fails within ask's deadline, not n times it
	for _, h := range hs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			b, err := h.ask()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failed++
				if firstErr == nil {
					firstErr = err
				}
			case b != h.backend:
				moved++
			}
		})
	}
	wg.Wait()
	if failed > 0 || moved > 0 {
		t.Errorf("%d held connections after %s: %d failed (first: %v), %d answered by another backend", len(hs), after, failed, firstErr, moved)
	}
}

// iperfIntervals parses the receiver's side of iperf3 -J --get-server-output: bytes received per
// reporting interval with its length (the sender's intervals count bytes written into its socket
// buffer, which hides a stall).
func iperfIntervals(t *testing.T, out string) (bytes []float64, secs []float64) {
	t.Helper()
	type intervals struct {
		Intervals []struct {
			Sum struct {
				Bytes   float64 `json:"bytes"`
				Seconds float64 `json:"seconds"`
			} `json:"sum"`
		} `json:"intervals"`
	}
	var r struct {
		Server intervals `json:"server_output_json"`
		Error  string    `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	if r.Error != "" || len(r.Server.Intervals) == 0 {
		t.Fatalf("iperf3: error %q, %d receiver intervals\n%s", r.Error, len(r.Server.Intervals), out)
	}
	for _, iv := range r.Server.Intervals {
		bytes = append(bytes, iv.Sum.Bytes)
		secs = append(secs, iv.Sum.Seconds)
	}
	return
}

// longestStall is the longest run of consecutive intervals without a byte, in seconds.
func longestStall(bytes, secs []float64) float64 {
	longest, run := 0.0, 0.0
	for i, b := range bytes {
		if b == 0 {
			run += secs[i]
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}

// TestCrashRestart: edgegate is killed with SIGKILL during an iperf3 transfer through a maglev
// service and started again by a supervisor loop. The persistent TUN and its routes outlive the
// process; the restarted one reattaches and picks the flows up from their next segment: the
// transfer stalls for at most 2 s and completes, and 500 idle keep-alive connections held
// across the crash still answer, each from the backend that answered it before. Rules are not
// duplicated, a route the new configuration no longer needs is pruned, and a clean exit
// afterwards still removes the TUN, its routes and its rules.
func TestCrashRestart(t *testing.T) {
	tp := newTopo(t)
	tp.serveBackends()
	// One iperf3 server (bulk's only backend) reporting every 0.2 s: the receiver's intervals
	// measure the stall.
	_, err := tp.b[0].Start(context.Background(), "iperf3", "-s", "-p", "5201", "-i", "0.2", "-J")
	must(t, err)
	waitFor(t, 5*time.Second, "iperf3 server listening", func() bool {
		out, _ := tp.b[0].Exec("ss", "-ltn", "sport = :5201")
		return strings.Contains(out, "5201")
	})
	gone := `  - name: gone
    addresses: [198.18.200.40]
    ports: [{name: http, port: 80, target_port: 8080}]
    scheduler: maglev
    backends: [{address: 198.19.2.2}]
`
	path := tp.writeConfig("edgegate.yaml", restartConfig(gone))
	sup := tp.supervise(t, edgegateBin, path)
	tp.waitReady(t)
	held := holdConns(t, tp.c1, "198.18.200.10:80", 500)
	perBackend := map[string]int{}
	for _, h := range held {
		perBackend[h.backend]++
	}
	t.Logf("500 held connections per backend: %v", perBackend)
	rulesBefore, _ := tp.gw.Exec("sh", "-c", "ip rule; ip -6 rule")
	// The configuration loses a service while edgegate is down.
	tp.writeConfig("edgegate.yaml", restartConfig(""))

	iperf, err := tp.c1.Start(context.Background(), "iperf3", "-c", "198.18.200.30", "-p", "5201", "-t", "10", "-J", "--get-server-output")
	must(t, err)
	waitFor(t, 5*time.Second, "iperf3 transfer running", func() bool {
		return len(tp.flows(t, "port=5201&state=established&service=bulk")) >= 2
	})
	time.Sleep(3 * time.Second) // a transfer well under way, not a measurement
	victim, _ := sup.current()
	killed := time.Now()
	must(t, victim.Process.Signal(syscall.SIGKILL))
	<-tp.gw.Exited(victim)
	waitFor(t, 5*time.Second, "edgegate restarted", func() bool {
		c, n := sup.current()
		return n == 2 && c != victim
	})
	tp.waitReady(t)
	t.Logf("restarted and ready %v after SIGKILL", time.Since(killed).Round(time.Millisecond))

	if err := tp.c1.Wait(iperf); err != nil {
		t.Fatalf("iperf3 did not complete: %v\n%s", err, tp.c1.Output(iperf))
	}
	bytes, secs := iperfIntervals(t, tp.c1.Output(iperf))
	stall := longestStall(bytes, secs)
	t.Logf("iperf3: longest stall %.1f s (receiver's 0.2 s intervals: %v)", stall, bytes)
	if stall > 2 {
		t.Errorf("iperf3 stalled for %.1f s after the crash, want at most 2 s", stall)
	}
	checkHeld(t, held, "the crash")
	m := tp.scrape(t)
	t.Logf("after the restart: pickup_not_rebuildable drops %v, invalid %v", m.get("edgegate_drops_total", "reason=pickup_not_rebuildable"), m.get("edgegate_drops_total", "reason=invalid_state"))

	if !strings.Contains(sup.log.String(), "reattached to the TUN") {
		t.Error("the restarted edgegate did not report reattaching the TUN")
	}
	if rulesAfter, _ := tp.gw.Exec("sh", "-c", "ip rule; ip -6 rule"); rulesAfter != rulesBefore {
		t.Errorf("policy rules changed across the restart:\nbefore:\n%s\nafter:\n%s", rulesBefore, rulesAfter)
	}
	if out, _ := tp.gw.Exec("ip", "route", "show", "198.18.200.40"); strings.TrimSpace(out) != "" {
		t.Errorf("the removed service's route survived the restart: %s", out)
	}
	if out, _ := tp.gw.Exec("ip", "route", "show", "198.18.200.10"); !strings.Contains(out, "edge0") {
		t.Errorf("service route missing after the restart: %q", out)
	}

	if code := sup.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if _, err := tp.gw.Exec("ip", "link", "show", "edge0"); err == nil {
		t.Error("the TUN survived a clean exit")
	}
	for _, cmd := range [][]string{{"ip", "route", "show", "table", "all", "proto", "201"}, {"ip", "-6", "route", "show", "table", "all", "proto", "201"}} {
		if out, _ := tp.gw.Exec(cmd...); strings.TrimSpace(out) != "" {
			t.Errorf("routes left after a clean exit (%v): %s", cmd, out)
		}
	}
	if out, _ := tp.gw.Exec("sh", "-c", "ip rule; ip -6 rule"); strings.Contains(out, "4242") || strings.Contains(out, "edge0") {
		t.Errorf("rules left after a clean exit:\n%s", out)
	}
}

// TestCrashCheckpoint: with conntrack.checkpoint, flows of round-robin services, which a restart
// cannot rebuild from a packet, survive kill -9: an iperf3 transfer and 100 idle keep-alive
// connections through round-robin services go on after the supervisor's restart (the transfer
// stalls at most 2 s and completes, each held connection answers from its backend), restored
// from the last checkpoint (interval 1 s). A clean exit removes the checkpoint.
func TestCrashCheckpoint(t *testing.T) {
	tp := newTopo(t)
	tp.serveBackends()
	_, err := tp.b[0].Start(context.Background(), "iperf3", "-s", "-p", "5201", "-i", "0.2", "-J")
	must(t, err)
	waitFor(t, 5*time.Second, "iperf3 server listening", func() bool {
		out, _ := tp.b[0].Exec("ss", "-ltn", "sport = :5201")
		return strings.Contains(out, "5201")
	})
	checkpoint := filepath.Join(tp.dir, "state", "flows.json")
	path := tp.writeConfig("edgegate.yaml", restartConfig(`  - name: rr
    addresses: [198.18.200.70]
    ports: [{name: http, port: 80, target_port: 8080}]
    scheduler: round_robin
    backends: [{address: 198.19.1.2}, {address: 198.19.2.2}, {address: 198.19.3.2}]
  - name: rrbulk
    addresses: [198.18.200.71]
    ports: [{name: iperf, port: 5201}]
    scheduler: round_robin
    backends: [{address: 198.19.1.2}]
conntrack:
  checkpoint: {path: `+checkpoint+`, interval: 1s}
`))
	sup := tp.supervise(t, edgegateBin, path)
	tp.waitReady(t)
	held := holdConns(t, tp.c1, "198.18.200.70:80", 100)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second) // a transfer that hangs fails
	defer cancel()
	iperf, err := tp.c1.Start(ctx, "iperf3", "-c", "198.18.200.71", "-p", "5201", "-t", "10", "-J", "--get-server-output")
	must(t, err)
	waitFor(t, 5*time.Second, "iperf3 transfer running", func() bool {
		return len(tp.flows(t, "port=5201&state=established&service=rrbulk")) >= 2
	})
	waitFor(t, 5*time.Second, "a checkpoint with the held connections and the transfer", func() bool {
		return checkpointFlows(checkpoint, "rr") >= 100 && checkpointFlows(checkpoint, "rrbulk") >= 2
	})
	time.Sleep(2 * time.Second) // a transfer well under way, not a measurement
	victim, _ := sup.current()
	must(t, victim.Process.Signal(syscall.SIGKILL))
	<-tp.gw.Exited(victim)
	waitFor(t, 5*time.Second, "edgegate restarted", func() bool {
		c, n := sup.current()
		return n == 2 && c != victim
	})
	tp.waitReady(t)
	if err := tp.c1.Wait(iperf); err != nil {
		t.Fatalf("iperf3 did not complete: %v\n%s", err, tp.c1.Output(iperf))
	}
	bytes, secs := iperfIntervals(t, tp.c1.Output(iperf))
	stall := longestStall(bytes, secs)
	t.Logf("iperf3 through a round-robin service: longest stall %.1f s", stall)
	if stall > 2 {
		t.Errorf("iperf3 stalled for %.1f s after the crash, want at most 2 s", stall)
	}
	checkHeld(t, held, "the crash (round robin, checkpoint)")
	if !strings.Contains(sup.log.String(), "flows restored from the checkpoint") {
		t.Error("the restarted edgegate did not report restoring the checkpoint")
	}
	if code := sup.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if _, err := os.Stat(checkpoint); err == nil {
		t.Error("the checkpoint survived a clean exit")
	}
}

// checkpointFlows counts the flows of service in the checkpoint at path (0 when unreadable).
func checkpointFlows(path, service string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var cp struct {
		Flows []struct {
			Service string `json:"service"`
		} `json:"flows"`
	}
	if json.Unmarshal(b, &cp) != nil {
		return 0
	}
	n := 0
	for _, f := range cp.Flows {
		if f.Service == service {
			n++
		}
	}
	return n
}
