package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgegate/edgegate/internal/netns"
	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/packet"
)

// lineServer is a TCP server on :8080 in a backend namespace: it greets each connection with its
// name, echoes lines prefixed with it, and records accepts and how connections ended.
type lineServer struct {
	name     string
	accepts  atomic.Int64
	resets   atomic.Int64 // connections ended by ECONNRESET (an RST reached the backend)
	listener net.Listener
}

func (tp *topo) serveLines(t *testing.T) []*lineServer {
	var out []*lineServer
	for i, b := range tp.b {
		s := &lineServer{name: backendNames[i]}
		must(t, b.Do(func() (err error) { s.listener, err = net.Listen("tcp", ":8080"); return }))
		t.Cleanup(func() { s.listener.Close() })
		go s.serve()
		out = append(out, s)
	}
	return out
}

func (s *lineServer) serve() {
	for {
		c, err := s.listener.Accept()
		if err != nil {
			return
		}
		s.accepts.Add(1)
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "%s hello\n", s.name)
			r := bufio.NewReader(c)
			for {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				l, err := r.ReadString('\n')
				if err != nil {
					if errors.Is(err, syscall.ECONNRESET) {
						s.resets.Add(1)
					}
					return
				}
				fmt.Fprintf(c, "%s %s", s.name, l)
			}
		}()
	}
}

// seqWatch follows, with an AF_PACKET socket in the client's namespace, the TCP segments the
// client sends from one port: what an on-path observer knows and a blind attacker does not.
type seqWatch struct {
	fd   int
	mu   sync.Mutex
	port uint16
	next uint32 // the client's next sequence number (seq + length of its latest segment)
	seen bool
	done chan struct{}
}

func watchClient(t *testing.T, ns *netns.NS) *seqWatch {
	w := &seqWatch{done: make(chan struct{})}
	must(t, ns.Do(func() (err error) {
		w.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL))) // ETH_P_ALL: only such taps see outgoing packets
		return err
	}))
	tv := unix.Timeval{Usec: 100_000}
	must(t, unix.SetsockoptTimeval(w.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	go w.run()
	t.Cleanup(func() { close(w.done); unix.Close(w.fd) })
	return w
}

func (w *seqWatch) run() {
	buf := make([]byte, 65536)
	for {
		select {
		case <-w.done:
			return
		default:
		}
		n, from, err := unix.Recvfrom(w.fd, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype != unix.PACKET_OUTGOING {
			continue
		}
		var p packet.Packet
		if p.Parse(buf[:n]) != packet.OK || p.Proto != packet.ProtoTCP {
			continue
		}
		w.mu.Lock()
		// The client's own segments after the handshake all carry ACK; the spoofed ones here do not.
		if p.SrcPort == w.port && p.TCPFlags&packet.TCPAck != 0 {
			end := p.Seq + uint32(p.PayloadLen)
			if p.TCPFlags&packet.TCPFin != 0 {
				end++
			}
			if !w.seen || int32(end-w.next) > 0 {
				w.next, w.seen = end, true
			}
		}
		w.mu.Unlock()
	}
}

func (w *seqWatch) follow(port uint16) {
	w.mu.Lock()
	w.port, w.seen = port, false
	w.mu.Unlock()
}

func (w *seqWatch) nextSeq() (uint32, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next, w.seen
}

// spoof sends raw IPv4 packets from the client's namespace (IP_HDRINCL).
func spoof(t *testing.T, ns *netns.NS, pkts ...[]byte) {
	t.Helper()
	var fd int
	must(t, ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	}))
	defer unix.Close(fd)
	for _, b := range pkts {
		dst := unix.SockaddrInet4{Addr: [4]byte(b[16:20])}
		must(t, unix.Sendto(fd, b, 0, &dst))
	}
}

// TestBlindResetAndHijack: a real TCP connection through a service survives an off-path attacker
// who knows the client's address and port but not its sequence numbers (RFC 5961): a spoofed RST
// out of window is dropped and counted, a spoofed SYN with the client's port is forwarded to the
// same backend (which answers with a challenge ACK) instead of balancing a new flow elsewhere.
// A RST with the right sequence number (what an on-path observer can send) still closes it.
func TestBlindResetAndHijack(t *testing.T) {
	tp := newTopo(t)
	srv := tp.serveLines(t)
	tp.startEdgegate(tp.writeConfig("edgegate.yaml", opsConfig("", svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0, 1, 2}})))
	watch := watchClient(t, tp.c1)
	var conn net.Conn
	must(t, tp.c1.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", "198.18.200.10:80", 5*time.Second)
		return err
	}))
	defer conn.Close()
	laddr := conn.LocalAddr().(*net.TCPAddr)
	watch.follow(uint16(laddr.Port))
	r := bufio.NewReader(conn)
	roundTrip := func(msg string) (string, error) {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(conn, "%s\n", msg); err != nil {
			return "", err
		}
		return r.ReadString('\n')
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	hello, err := r.ReadString('\n')
	must(t, err)
	backend, _, _ := strings.Cut(hello, " ")
	if got, err := roundTrip("one"); err != nil || got != backend+" one\n" {
		t.Fatalf("first exchange: %q, %v", got, err)
	}
	waitFor(t, 5*time.Second, "the client's sequence number seen", func() bool { _, ok := watch.nextSeq(); return ok })
	next, _ := watch.nextSeq()

	// The blind attack: an RST far out of the window, then a SYN, both with the client's tuple.
	client, vip := netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("198.18.200.10")
	seg := func(flags string, seq uint32) []byte {
		return pkttest.P{Proto: 6, Src: client, Dst: vip, Sport: uint16(laddr.Port), Dport: 80, Flags: flags, Seq: seq}.Build(t)
	}
	spoof(t, tp.c1, seg("R", next+1_000_000_000), seg("S", next+2_000_000_000))
	waitFor(t, 5*time.Second, "the blind RST counted", func() bool {
		m := tp.scrape(t)
		return m.get("edgegate_drops_total", "reason=invalid_window") >= 1 && m.get("edgegate_conntrack_invalid_window_total") >= 1
	})
	if got, err := roundTrip("two"); err != nil || got != backend+" two\n" {
		t.Fatalf("after the spoofed RST and SYN: %q, %v; want the same connection to %s", got, err, backend)
	}
	total := int64(0)
	for _, s := range srv {
		total += s.accepts.Load()
		if s.resets.Load() != 0 {
			t.Fatalf("backend %s saw a reset", s.name)
		}
	}
	if total != 1 {
		t.Fatalf("%d connections accepted by the backends, want 1 (the spoofed SYN opened another)", total)
	}

	// An RST with the exact sequence number closes the connection at the backend.
	waitFor(t, 5*time.Second, "the client's latest segment seen", func() bool { n, _ := watch.nextSeq(); return n != next })
	next, _ = watch.nextSeq()
	spoof(t, tp.c1, seg("R", next))
	waitFor(t, 5*time.Second, "the in-window RST closing the backend's connection", func() bool {
		resets := int64(0)
		for _, s := range srv {
			resets += s.resets.Load()
		}
		return resets == 1
	})
	if _, err := roundTrip("three"); err == nil {
		t.Fatal("the connection still works after an in-window RST")
	}
}

// TestWindowTrackingBulk: bulk TCP (iperf3, both directions, one and two streams, offloads on so
// segments cross the gateway as super-packets, two queues) stays inside the tracked windows: no
// RST of a real connection is dropped, and segments judged out of window (forwarded anyway) stay
// rare: at most 1 in 1000 forwarded packets.
func TestWindowTrackingBulk(t *testing.T) {
	tp := newTopo(t)
	tp.startIperfServers(t)
	tp.startEdgegate(tp.writeConfig("edgegate.yaml", opsConfigQ(2, "", svcSpec{name: "web", vip: "198.18.200.10", backends: []int{0, 1, 2}, extra: "    session_affinity: client_ip\n"})))
	for _, args := range [][]string{{"-t", "3", "-P", "2"}, {"-t", "3", "-R"}} {
		out, err := tp.c1.Exec(append([]string{"iperf3", "-c", "198.18.200.10", "-p", "5201", "-J"}, args...)...)
		if err != nil || iperfBitsPerSecond(out) <= 0 {
			t.Fatalf("iperf3 %v: %v\n%s", args, err, out)
		}
	}
	m := tp.scrape(t)
	n, d := m.get("edgegate_conntrack_invalid_window_total"), m.get("edgegate_drops_total", "reason=invalid_window")
	fwd := m.get("edgegate_packet_verdicts_total", "verdict=forwarded")
	t.Logf("%v packets forwarded, %v judged out of window, %v dropped", fwd, n, d)
	if d != 0 || n > fwd/1000 {
		t.Fatalf("%v of %v segments of real connections judged out of window, %v RSTs dropped", n, fwd, d)
	}
}
