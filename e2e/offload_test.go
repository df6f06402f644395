package e2e

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edgegate/edgegate/internal/netns"
	"golang.org/x/sys/unix"
)

// csumChecker counts TCP segments and UDP datagrams (IPv4) seen on an interface and those whose
// IPv4 header or L4 checksum is wrong. Its checksum code is deliberately independent of package packet.
type csumChecker struct {
	fd        int
	stopped   atomic.Bool
	once      sync.Once
	mu        sync.Mutex
	segments  int
	datagrams int
	bad       int
	payload   int
	firstBad  string
	done      chan struct{}
}

func sum16(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold16(s uint32) uint16 {
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// startChecker opens a packet socket on ifname inside ns and checks every IPv4 TCP segment
// received for port.
func startChecker(t *testing.T, ns *netns.NS, ifname string, port uint16) *csumChecker {
	t.Helper()
	c := &csumChecker{done: make(chan struct{})}
	must(t, ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		idx, err := ifIndex(ifname)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: idx})
	}))
	tv := unix.Timeval{Usec: 200000}
	unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	fd := c.fd
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			if c.stopped.Load() {
				return
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil {
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			c.check(buf[:n], port)
		}
	}()
	t.Cleanup(func() { c.stop() })
	return c
}

// stop ends the reader (within its 200 ms receive timeout) and closes the socket.
func (c *csumChecker) stop() {
	c.once.Do(func() {
		c.stopped.Store(true)
		<-c.done
		unix.Close(c.fd)
	})
}

func (c *csumChecker) check(b []byte, port uint16) {
	if len(b) < 28 || b[0]>>4 != 4 || (b[9] != 6 && b[9] != 17) {
		return
	}
	proto := b[9]
	ihl := int(b[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(b[2:]))
	hl := 20 // TCP minimum
	if proto == 17 {
		hl = 8
	}
	if tot > len(b) || ihl < 20 || tot < ihl+hl {
		return
	}
	l4 := b[ihl:tot]
	if binary.BigEndian.Uint16(l4[0:]) != port && binary.BigEndian.Uint16(l4[2:]) != port {
		return
	}
	ipOK := fold16(sum16(b[:ihl], 0)) == 0xffff
	ps := sum16(b[12:20], 0) + uint32(proto) + uint32(len(l4))
	l4OK := fold16(sum16(l4, ps)) == 0xffff
	if proto == 17 && l4[6] == 0 && l4[7] == 0 {
		l4OK = true // IPv4 UDP without checksum
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.segments++
	if proto == 6 {
		c.payload += len(l4) - int(l4[12]>>4)*4
	} else {
		c.payload += len(l4) - 8
		c.datagrams++
	}
	if !ipOK || !l4OK {
		c.bad++
		if c.firstBad == "" {
			c.firstBad = fmt.Sprintf("ip ok %v l4 ok %v: % x", ipOK, l4OK, b[:min(len(b), 60)])
		}
	}
}

func (c *csumChecker) counts() (segments, bad, payload int, first string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.segments, c.bad, c.payload, c.firstBad
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestOffloadChecksums sends iperf3 through DNAT + masquerade with offloads on, both directions,
// and checks every segment's checksums where it is received. Transmit checksum offload is turned
// off on the gateway's links so the kernel finishes partial checksums in software and the
// receiver sees (and verifies) exactly what edgegate's rewrite produced.
func TestOffloadChecksums(t *testing.T) {
	tp := newTopo(t)
	for i := range tp.b {
		out, err := tp.gw.Exec("ethtool", "-K", fmt.Sprintf("gw-b%d", i+1), "tx", "off")
		must(t, wrapOut(err, out))
	}
	out, err := tp.gw.Exec("ethtool", "-K", "gw-c1", "tx", "off")
	must(t, wrapOut(err, out))
	tp.startEdgegate(tp.writeConfig("edgegate.yaml", fmt.Sprintf(mainConfig, 1, true)))
	tp.startIperfServers(t)
	var checkers []*csumChecker
	for _, b := range tp.b {
		checkers = append(checkers, startChecker(t, b, "eth0", 5201))
	}
	client := startChecker(t, tp.c1, "eth0", 5201)
	// TCP both ways (super-packets from the kernel), then small UDP datagrams that edgegate
	// coalesces into UDP super-packets itself.
	for _, args := range [][]string{{"-t", "3"}, {"-t", "3", "-R"}, {"-t", "2", "-u", "-l", "64", "-b", "0"}, {"-t", "2", "-u", "-l", "64", "-b", "0", "-R"}} {
		out, err := tp.c1.Exec(append([]string{"iperf3", "-c", "198.18.200.11", "-p", "5201", "-J"}, args...)...)
		if err != nil {
			t.Fatalf("iperf3 %v: %v\n%s", args, err, out)
		}
		t.Logf("iperf3 %v with offloads: %.2f Gbit/s", args, iperfBitsPerSecond(out)/1e9)
	}
	total := 0
	for i, c := range append(checkers, client) {
		c.stop()
		seg, bad, payload, first := c.counts()
		total += seg
		if bad > 0 {
			t.Errorf("checker %d: %d of %d segments with bad checksums; first: %s", i, bad, seg, first)
		}
		t.Logf("checker %d: %d segments, %d payload bytes verified", i, seg, payload)
	}
	if seg, _, payload, _ := client.counts(); seg < 1000 || payload < 1<<20 {
		t.Errorf("client saw %d segments (%d bytes): the reverse run did not go through", seg, payload)
	}
	if total < 2000 {
		t.Errorf("only %d segments checked", total)
	}
	datagrams := 0
	for _, c := range append(checkers, client) {
		c.mu.Lock()
		datagrams += c.datagrams
		c.mu.Unlock()
	}
	if datagrams < 10000 {
		t.Errorf("only %d UDP datagrams checked", datagrams)
	}
	coalesced := tp.scrape(t).get("edgegate_udp_coalesced_total")
	t.Logf("%d UDP datagrams verified, %.0f of those edgegate sent were coalesced into super-packets", datagrams, coalesced)
	if coalesced == 0 {
		t.Error("no UDP datagram was coalesced: the super-packet path was not exercised")
	}
}

func wrapOut(err error, out string) error {
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func ifIndex(name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("interface %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}
