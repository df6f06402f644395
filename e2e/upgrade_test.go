package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

var (
	upgradeOnce sync.Once
	upgradeBin  string
	upgradeErr  error
)

// secondEdgegate builds a second edgegate binary from the tree, with another version string,
// for upgrades that alternate two binaries.
func secondEdgegate(t *testing.T) string {
	t.Helper()
	upgradeOnce.Do(func() {
		upgradeBin = filepath.Join(filepath.Dir(edgegateBin), "edgegate-next")
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version=next", "-o", upgradeBin, "../cmd/edgegate")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			upgradeErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if upgradeErr != nil {
		t.Fatal(upgradeErr)
	}
	return upgradeBin
}

// udpStream sends a request every 50 ms from ns to addr and counts those without an answer
// within a second, until stop.
type udpStream struct {
	sent, lost atomic.Int64
	stop       chan struct{}
	done       chan struct{}
}

func startUDPStream(t *testing.T, ns *netns.NS, addr string) *udpStream {
	t.Helper()
	var c net.Conn
	must(t, ns.Do(func() (err error) { c, err = net.Dial("udp", addr); return }))
	s := &udpStream{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer c.Close()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		buf := make([]byte, 512)
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			req := fmt.Sprintf("req-%d", i)
			s.sent.Add(1)
			c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte(req)); err != nil {
				s.lost.Add(1)
				continue
			}
			ok := false
			for !ok {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				ok = strings.HasSuffix(string(buf[:n]), " "+req) // late answers to earlier ones are skipped
			}
			if !ok {
				s.lost.Add(1)
			}
		}
	}()
	return s
}

func (s *udpStream) finish() (sent, lost int64) {
	close(s.stop)
	<-s.done
	return s.sent.Load(), s.lost.Load()
}

// wrkTimeout is the request timeout of the wrk load (wrk counts a slower response as a timeout
// error): well above a response's time on the loaded machine, so a timeout means a stuck request.
const wrkTimeout = "5s"

// wrkResult is what wrk reported: requests, socket errors by kind, responses not 2xx or 3xx.
type wrkResult struct {
	requests, connect, read, write, timeout, non2xx int
}

// startWrk runs wrk (one thread, 8 keep-alive connections) from ns against url until stopWrk,
// for at most two minutes.
func startWrk(t *testing.T, ns *netns.NS, url string) *exec.Cmd {
	t.Helper()
	cmd, err := ns.Start(context.Background(), "wrk", "-t1", "-c8", "-d120s", "--timeout", wrkTimeout, url)
	must(t, err)
	return cmd
}

// stopWrk ends wrk with SIGINT (it stops and reports) and parses its report.
func stopWrk(t *testing.T, ns *netns.NS, cmd *exec.Cmd) wrkResult {
	t.Helper()
	must(t, cmd.Process.Signal(os.Interrupt))
	if err := ns.Wait(cmd); err != nil {
		t.Fatalf("wrk: %v\n%s", err, ns.Output(cmd))
	}
	out := ns.Output(cmd)
	var r wrkResult
	m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("wrk printed no request count:\n%s", out)
	}
	fmt.Sscan(m[1], &r.requests)
	if m := regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`).FindStringSubmatch(out); m != nil {
		fmt.Sscan(m[1]+" "+m[2]+" "+m[3]+" "+m[4], &r.connect, &r.read, &r.write, &r.timeout)
	}
	if m := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindStringSubmatch(out); m != nil {
		fmt.Sscan(m[1], &r.non2xx)
	}
	return r
}

// h2Load sends requests one after another over HTTP/2 without TLS (h2c with prior knowledge)
// from ns, on one connection while it lasts: a process that drains with GOAWAY lets the
// transport move to a new connection with no request lost, an abrupt close fails the requests in
// flight (the transport retries only those a GOAWAY says were not processed).
type h2Load struct {
	ok, errs, non2xx atomic.Int64
	firstErr         atomic.Value
	stop, done       chan struct{}
}

func startH2Load(ns *netns.NS, url string) *h2Load {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err = d.DialContext(ctx, network, addr)
			return
		})
		return c, err
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{DialContext: dial, Protocols: &p}
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	l := &h2Load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer tr.CloseIdleConnections()
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			resp, err := c.Get(url)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			switch {
			case err != nil:
				l.errs.Add(1)
				l.firstErr.CompareAndSwap(nil, err.Error())
			case resp.StatusCode/100 != 2 || resp.ProtoMajor != 2:
				l.non2xx.Add(1)
				l.firstErr.CompareAndSwap(nil, resp.Proto+" "+resp.Status)
			default:
				l.ok.Add(1)
			}
		}
	}()
	return l
}

func (l *h2Load) finish() {
	close(l.stop)
	<-l.done
}

// upgradeConfig adds a UDP service (maglev over three backends), a round-robin service with
// client_ip affinity and an ingress route to restartConfig.
func upgradeConfig() string {
	return restartConfig(`  - name: dns
    addresses: [198.18.200.50]
    ports: [{name: dns, protocol: udp, port: 53}]
    scheduler: maglev
    backends: [{address: 198.19.1.2}, {address: 198.19.2.2}, {address: 198.19.3.2}]
  - name: sticky
    addresses: [198.18.200.60]
    ports: [{name: http, port: 80, target_port: 8080}]
    scheduler: round_robin
    session_affinity: client_ip
    backends: [{address: 198.19.1.2}, {address: 198.19.2.2}, {address: 198.19.3.2}]
ingress:
  drain_timeout: 5s
  listeners:
    - {name: plain, address: "198.18.1.1:8088", protocol: http}
  routes:
    - name: web
      listeners: [plain]
      rules:
        - backends: [{service: web, port: 80}]
`)
}

// upgrade starts bin with run --takeover and waits until the predecessor exited 0 and the
// successor is ready; it returns the successor and how long the hand-over took.
func (tp *topo) upgrade(t *testing.T, bin, cfg string, old *exec.Cmd, log *lockedBuffer) (*exec.Cmd, time.Duration) {
	t.Helper()
	start := time.Now()
	cmd := tp.gw.Command(context.Background(), bin, "run", "--takeover", "-c", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	must(t, tp.gw.StartCmd(cmd))
	select {
	case <-tp.gw.Exited(old):
	case <-tp.gw.Exited(cmd):
		t.Fatalf("the successor exited during the hand-over:\n%s", log.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("the predecessor did not exit within 20 s of the takeover:\n%s", log.String())
	}
	took := time.Since(start)
	if code := old.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("the predecessor exited %d after the hand-over", code)
	}
	tp.waitReady(t)
	return cmd, took
}

// TestUpgradeUnderLoad: edgegate is upgraded five times in a row, alternating two binaries
// built from the tree (run --takeover), while an iperf3 transfer (30 s), 500 idle keep-alive
// HTTP connections, a UDP request every 50 ms and wrk against an ingress route go through it
// (each successor serves the ingress listening socket its predecessor passed, while the
// predecessor drains). The transfer completes without a reset and without a second of silence,
// every held connection answers afterwards from the backend it had, at most one UDP request per
// upgrade goes unanswered, and wrk sees no socket error and no response other than 2xx/3xx.
func TestUpgradeUnderLoad(t *testing.T) {
	tp := newTopo(t)
	tp.serveBackends()
	_, err := tp.b[0].Start(context.Background(), "iperf3", "-s", "-p", "5201", "-i", "0.2", "-J")
	must(t, err)
	waitFor(t, 5*time.Second, "iperf3 server listening", func() bool {
		out, _ := tp.b[0].Exec("ss", "-ltn", "sport = :5201")
		return strings.Contains(out, "5201")
	})
	bins := [2]string{edgegateBin, secondEdgegate(t)}
	path := tp.writeConfig("edgegate.yaml", upgradeConfig())
	log := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("edgegate output (all processes):\n%s", log.String())
		}
	})
	cur := tp.gw.Command(context.Background(), bins[0], "run", "-c", path)
	cur.Stdout, cur.Stderr = log, log
	must(t, tp.gw.StartCmd(cur))
	tp.waitReady(t)

	held := holdConns(t, tp.c1, "198.18.200.10:80", 500)
	udp := startUDPStream(t, tp.c1, "198.18.200.50:53")
	// The JSON report of 30 s outgrows the kept command output: into a file.
	report := filepath.Join(tp.dir, "iperf3.json")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second) // a transfer that hangs fails
	defer cancel()
	iperf, err := tp.c1.Start(ctx, "iperf3", "-c", "198.18.200.30", "-p", "5201", "-t", "30", "-J", "--get-server-output", "--logfile", report)
	must(t, err)
	waitFor(t, 5*time.Second, "iperf3 transfer running", func() bool {
		return len(tp.flows(t, "port=5201&state=established&service=bulk")) >= 2
	})
	wrk := startWrk(t, tp.c1, "http://198.18.1.1:8088/")
	h2 := startH2Load(tp.c1, "http://198.18.1.1:8088/")
	const upgrades = 5
	for i := range upgrades {
		time.Sleep(3 * time.Second) // load between upgrades, not a measurement
		var took time.Duration
		cur, took = tp.upgrade(t, bins[(i+1)%2], path, cur, log)
		t.Logf("upgrade %d to %s: predecessor gone %v after the successor started", i+1, filepath.Base(bins[(i+1)%2]), took.Round(time.Millisecond))
	}
	time.Sleep(time.Second) // load on the last successor alone, not a measurement
	w := stopWrk(t, tp.c1, wrk)
	h2.finish()
	t.Logf("h2c client through the ingress during the upgrades: %d ok, %d errors, %d not 2xx over HTTP/2", h2.ok.Load(), h2.errs.Load(), h2.non2xx.Load())
	if h2.ok.Load() == 0 || h2.errs.Load() != 0 || h2.non2xx.Load() != 0 {
		t.Errorf("h2c across %d upgrades: %d ok, %d errors, %d not 2xx over HTTP/2 (first: %v); want no error",
			upgrades, h2.ok.Load(), h2.errs.Load(), h2.non2xx.Load(), h2.firstErr.Load())
	}
	t.Logf("wrk through the ingress during the upgrades: %+v", w)
	if w.requests == 0 || w.connect+w.read+w.write+w.timeout != 0 || w.non2xx != 0 {
		t.Errorf("wrk across %d upgrades: %d requests, socket errors connect %d read %d write %d timeout %d, %d not 2xx/3xx; want 0 errors",
			upgrades, w.requests, w.connect, w.read, w.write, w.timeout, w.non2xx)
	}
	err = tp.c1.Wait(iperf)
	out, _ := os.ReadFile(report)
	if err != nil {
		t.Fatalf("iperf3 did not complete: %v\n%s\nits flows now: %+v", err, out, tp.flows(t, "port=5201"))
	}
	sent, lost := udp.finish()
	// Each successor bound the ingress listener its predecessor released.
	if body, err := get(nsClient(tp.c1, 5*time.Second), "http://198.18.1.1:8088/"); err != nil || !strings.HasPrefix(body, "b") {
		t.Errorf("ingress after the upgrades: %q %v", body, err)
	}
	bytes, secs := iperfIntervals(t, string(out))
	stall := longestStall(bytes, secs)
	t.Logf("iperf3: longest stall %.1f s; UDP: %d of %d requests unanswered", stall, lost, sent)
	if stall >= 1 {
		t.Errorf("iperf3 received nothing for %.1f s, want no silent second", stall)
	}
	if lost > upgrades {
		t.Errorf("%d UDP requests lost in %d upgrades, want at most one per upgrade", lost, upgrades)
	}
	checkHeld(t, held, fmt.Sprintf("%d upgrades", upgrades))
	t.Logf("data path frozen per upgrade: %v", regexp.MustCompile(`frozen=(\S+)`).FindAllString(log.String(), -1))
	if !strings.Contains(log.String(), "flows handed over") {
		t.Error("no successor reported restoring flows")
	}
	if n := strings.Count(log.String(), "ingress_listeners=1"); n != upgrades {
		t.Errorf("%d of %d successors received the ingress listening socket", n, upgrades)
	}
	must(t, cur.Process.Signal(syscall.SIGTERM))
	<-tp.gw.Exited(cur)
	if code := cur.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	if _, err := tp.gw.Exec("ip", "link", "show", "edge0"); err == nil {
		t.Error("the TUN survived a clean exit after the upgrades")
	}
}

// TestUpgradeFailed: a successor that cannot start leaves the running edgegate serving: one
// with a broken configuration exits non-zero before touching anything, one that fails after
// the predecessor froze (a TUN setting that needs a restart) exits non-zero and the
// predecessor serves again. Held connections and new ones work throughout.
func TestUpgradeFailed(t *testing.T) {
	tp := newTopo(t)
	tp.serveBackends()
	path := tp.writeConfig("edgegate.yaml", upgradeConfig())
	tp.startEdgegate(path)
	tp.waitReady(t)
	held := holdConns(t, tp.c1, "198.18.200.10:80", 20)
	c := nsClient(tp.c1, 5*time.Second)
	broken := tp.writeConfig("broken.yaml", strings.Replace(upgradeConfig(), "198.19.1.2", "198.19.1.999", 1))
	otherTUN := tp.writeConfig("queues.yaml", strings.Replace(upgradeConfig(), "queues: 2", "queues: 3", 1))
	for _, c2 := range []struct{ name, cfg, want string }{
		{"broken config", broken, "198.19.1.999"},
		{"fails after freezing", otherTUN, "takeover failed"},
	} {
		out, err := tp.gw.Exec(edgegateBin, "run", "--takeover", "-c", c2.cfg)
		var ee *exec.ExitError
		if err == nil || !errorsAs(err, &ee) {
			t.Fatalf("%s: successor exited %v, want non-zero\n%s", c2.name, err, out)
		}
		if !strings.Contains(out, c2.want) {
			t.Errorf("%s: output does not say %q:\n%s", c2.name, c2.want, out)
		}
		select {
		case <-tp.gw.Exited(tp.eg):
			t.Fatalf("%s: the running edgegate exited:\n%s", c2.name, tp.egLog.String())
		default:
		}
		if body, err := get(c, "http://198.18.200.10/"); err != nil || !strings.HasPrefix(body, "b") {
			t.Fatalf("%s: new connection after the failed upgrade: %q %v", c2.name, body, err)
		}
		checkHeld(t, held, "a failed upgrade: "+c2.name)
	}
	if !strings.Contains(tp.egLog.String(), "serving again") {
		t.Error("the predecessor did not report thawing after the failed hand-over")
	}
	tp.stopEdgegate(t)
}

func errorsAs(err error, target **exec.ExitError) bool { return errors.As(err, target) }
