package synproxy

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/edgegate/edgegate/packet"
)

var testSecret = SecretFrom([32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32})

const t0 = int64(1_800_000_000) * int64(time.Second)

func TestCookieValidity(t *testing.T) {
	tp := Tuple{SrcPort: 40000, DstPort: 80}
	copy(tp.Src[:], "client-address!!")
	copy(tp.Dst[:], "service-address!")
	min := int64(time.Minute)
	start := t0 - t0%min // the start of a counter period
	for _, tc := range []struct {
		name    string
		made    int64
		checked int64
		mutate  func(t *Tuple, isn, cookie *uint32)
		data    uint32
		ok      bool
	}{
		{"same instant", start, start, nil, 3, true},
		{"end of the next period", start, start + 2*min - 1, nil, 2, true},
		{"expired after two periods", start + min - 1, start + 2*min, nil, 1, false},
		{"from the future", start + min, start, nil, 1, false},
		{"other client port", start, start, func(t *Tuple, _, _ *uint32) { t.SrcPort++ }, 0, false},
		{"other service", start, start, func(t *Tuple, _, _ *uint32) { t.Dst[15]++ }, 0, false},
		{"other isn", start, start, func(_ *Tuple, isn, _ *uint32) { *isn++ }, 0, false},
		// The low bits are hash + data, as in the kernel: one more than the largest index is no index.
		{"cookie off by one", start, start, func(_ *Tuple, _, c *uint32) { *c++ }, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, isn := tp, uint32(0xfffffff0)
			c := testSecret.Make(&k, isn, tc.data, tc.made)
			if tc.mutate != nil {
				tc.mutate(&k, &isn, &c)
			}
			data, ok := testSecret.Check(&k, isn, c, tc.checked)
			if ok != tc.ok || ok && data != tc.data {
				t.Fatalf("Check = %d, %v; want %d, %v", data, ok, tc.data, tc.ok)
			}
		})
	}
}

// TestCookieForgery: random guesses for a tuple almost never validate (about 2^-31 each).
func TestCookieForgery(t *testing.T) {
	tp := Tuple{SrcPort: 1, DstPort: 2}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200000 {
		if _, ok := testSecret.Check(&tp, r.Uint32(), r.Uint32(), t0); ok {
			t.Fatalf("random cookie %d validated", i)
		}
	}
	other := SecretFrom([32]byte{9})
	c := testSecret.Make(&tp, 7, 1, t0)
	if _, ok := other.Check(&tp, 7, c, t0); ok {
		t.Error("a cookie validated under another secret")
	}
}

func TestCookieTS(t *testing.T) {
	for _, now := range []int64{t0, t0 + 63*tsClockUnit, t0 + 64*tsClockUnit} {
		for opts := uint32(0); opts <= tsMask; opts++ {
			ts := cookieTS(now, opts)
			if ts&tsMask != opts || ts > tsClock(now) || tsClock(now)-ts >= 2<<tsBits {
				t.Fatalf("cookieTS(%d, %#x) = %d, clock %d", now, opts, ts, tsClock(now))
			}
		}
	}
}

func TestMSSIndex(t *testing.T) {
	for _, tc := range []struct {
		mss  uint16
		want uint16
	}{{0, 536}, {536, 536}, {1299, 536}, {1300, 1300}, {1459, 1440}, {1460, 1460}, {9000, 1460}} {
		if got := mssTable4[mssIndex(&mssTable4, tc.mss)]; got != tc.want {
			t.Errorf("MSS %d encoded as %d, want %d", tc.mss, got, tc.want)
		}
	}
}

// handshake describes one proxied connection's options on both sides.
type handshake struct {
	name            string
	client, service netip.AddrPort
	clientMSS       uint16
	clientWS        int8 // noWScale: none
	clientTS, sack  bool
	ecn             bool
	backendWS       int8
	backendTS       bool
	wantMSS         uint16
}

var handshakes = []handshake{
	{"linux both sides", ap("198.51.100.7:40000"), ap("203.0.113.10:80"), 1460, 7, true, true, false, 7, true, 1460},
	{"backend scales more", ap("198.51.100.7:40001"), ap("203.0.113.10:80"), 1460, 9, true, true, true, 10, true, 1460},
	{"backend scales less", ap("198.51.100.7:40002"), ap("203.0.113.10:80"), 1400, 2, true, false, false, 0, true, 1300},
	{"backend without scaling or timestamps", ap("198.51.100.7:40003"), ap("203.0.113.10:80"), 1460, 8, true, true, false, noWScale, false, 1460},
	{"client without timestamps", ap("198.51.100.7:40004"), ap("203.0.113.10:80"), 1460, 7, false, true, false, 7, true, 1460},
	{"ipv6", ap("[2001:db8::7]:40005"), ap("[2001:db8:1::10]:443"), 1440, 7, true, true, false, 9, true, 1440},
	{"ipv6 small mss", ap("[2001:db8::7]:40006"), ap("[2001:db8:1::10]:443"), 1280, noWScale, true, false, false, 9, true, 1220},
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func (hs handshake) clientSYN(isn, tsval uint32) []byte {
	var opts []byte
	if hs.clientTS {
		opts = synOpts(hs.clientMSS, tsval, hs.clientWS, hs.sack)
	} else {
		opts = []byte{optMSS, 4, byte(hs.clientMSS >> 8), byte(hs.clientMSS)}
	}
	flags := packet.TCPSyn
	if hs.ecn {
		flags |= packet.TCPEce | packet.TCPCwr
	}
	return seg{src: hs.client, dst: hs.service, seq: isn, flags: flags, win: 64240, opts: opts, ipOpts: 4}.build()
}

// TestHandshake runs the whole proxied handshake and checks every segment built.
func TestHandshake(t *testing.T) {
	for _, hs := range handshakes {
		t.Run(hs.name, func(t *testing.T) { runHandshake(t, hs) })
	}
}

func runHandshake(t *testing.T, hs handshake) {
	const isn, tsval, iss, btsval = 0xfffffff0, 1000, 0x7ffffff0, 555555
	now := t0 + 12345*tsClockUnit
	// 1. The client's SYN becomes the cookie SYN-ACK.
	p := parse(t, hs.clientSYN(isn, tsval))
	if !testSecret.AnswerSYN(p, now, 1460) {
		t.Fatal("AnswerSYN refused")
	}
	p = parse(t, p.B)
	h := p.TCP()
	o, _ := ParseOptions(h)
	if !checksumsOK(p) || p.Src != hs.service.Addr() || p.Dst != hs.client.Addr() || p.SrcPort != hs.service.Port() || p.DstPort != hs.client.Port() {
		t.Fatalf("SYN-ACK addressing or checksums wrong: %+v", p)
	}
	if h.Flags()&^packet.TCPEce != packet.TCPSyn|packet.TCPAck || h.Ack() != isn+1 || h.Window() != 0 || o.MSS != 1460 {
		t.Fatalf("SYN-ACK flags %#x ack %d window %d mss %d", h.Flags(), h.Ack(), h.Window(), o.MSS)
	}
	if (h.Flags()&packet.TCPEce != 0) != (hs.ecn && hs.clientTS) || o.TS != hs.clientTS || o.SACKPerm != (hs.sack && hs.clientTS) ||
		(o.WScale == AdvertisedWScale) != (hs.clientWS >= 0 && hs.clientTS) || hs.clientTS && o.TSEcr != tsval {
		t.Fatalf("SYN-ACK options %+v flags %#x", o, h.Flags())
	}
	cookie := h.Seq()
	// 2. The client's ACK proves the cookie; a wrong one does not.
	var ackOpts []byte
	if hs.clientTS {
		ackOpts = tsOpt(tsval+1, o.TSVal)
	}
	ack := seg{src: hs.client, dst: hs.service, seq: isn + 1, ack: cookie + 1, flags: packet.TCPAck, win: 502, opts: ackOpts}
	bad := ack
	bad.ack += 1 << 20
	if _, ok := testSecret.CheckACK(parse(t, bad.build()), now); ok {
		t.Fatal("a wrong cookie validated")
	}
	p = parse(t, ack.build())
	pr, ok := testSecret.CheckACK(p, now+time.Second.Nanoseconds())
	if !ok {
		t.Fatal("the cookie ACK did not validate")
	}
	c := NewConn(pr)
	// 3. It becomes the SYN to the backend with the client's options.
	if !c.BackendSYN(p) {
		t.Fatal("BackendSYN refused")
	}
	p = parse(t, p.B)
	h = p.TCP()
	o, _ = ParseOptions(h)
	wantWS := hs.clientWS
	if !hs.clientTS {
		wantWS = noWScale
	}
	if !checksumsOK(p) || p.Src != hs.client.Addr() || p.DstPort != hs.service.Port() || h.Flags()&^(packet.TCPEce|packet.TCPCwr) != packet.TCPSyn ||
		h.Seq() != isn || o.MSS != hs.wantMSS || o.WScale != wantWS || o.SACKPerm != (hs.sack && hs.clientTS) || o.TS != hs.clientTS ||
		hs.clientTS && o.TSVal != tsval+1 {
		t.Fatalf("backend SYN: seq %d flags %#x options %+v", h.Seq(), h.Flags(), o)
	}
	// 4. The backend's SYN-ACK (to the client's address: no NAT in this test).
	bopts := []byte{optMSS, 4, 0x05, 0xb4}
	if o.SACKPerm {
		bopts = append(bopts, optNOP, optNOP, optSACKPerm, 2)
	}
	if hs.backendTS && o.TS {
		bopts = append(bopts, tsOpt(btsval, o.TSVal)...)
	}
	if hs.backendWS >= 0 && o.WScale >= 0 {
		bopts = append(bopts, optNOP, optWScale, 3, byte(hs.backendWS))
	}
	synack := seg{src: hs.service, dst: hs.client, seq: iss, ack: isn + 1, flags: packet.TCPSyn | packet.TCPAck, win: 65160, opts: bopts}
	extra := make([]byte, 128)
	p = parse(t, synack.build())
	n := c.ServerSYNACK(p, extra)
	if n == 0 {
		t.Fatal("ServerSYNACK refused")
	}
	checkSplice(t, hs, c, p, parse(t, extra[:n]), o.TS && hs.backendTS, cookie)
	checkData(t, hs, c, cookie, iss)
}

// checkSplice checks the ACK to the backend (p) and the window opening to the client (q).
func checkSplice(t *testing.T, hs handshake, c *Conn, p, q *packet.Packet, ts bool, cookie uint32) {
	const isn, iss, btsval = 0xfffffff0, 0x7ffffff0, 555555
	h := p.TCP()
	o, _ := ParseOptions(h)
	if !checksumsOK(p) || p.Src != hs.client.Addr() || p.DstPort != hs.service.Port() || h.Flags() != packet.TCPAck ||
		h.Seq() != isn+1 || h.Ack() != iss+1 || o.TS != ts || ts && (o.TSEcr != btsval || o.TSVal != 1001) {
		t.Fatalf("ACK to the backend: seq %d ack %d flags %#x options %+v", h.Seq(), h.Ack(), h.Flags(), o)
	}
	if a := c.Adjust(q, false); a != Pass {
		t.Fatalf("Adjust of the window opening: %v", a)
	}
	h = q.TCP()
	o, _ = ParseOptions(h)
	if !checksumsOK(q) || q.Src != hs.service.Addr() || q.Dst != hs.client.Addr() || h.Flags() != packet.TCPAck || h.Seq() != cookie+1 || h.Ack() != isn+1 {
		t.Fatalf("window opening: seq %d (cookie %d) ack %d flags %#x", h.Seq(), cookie, h.Ack(), h.Flags())
	}
	// The client applies our advertised scale: it must see the backend's 65160 bytes (rounded
	// down to the coarser of the two scales' granularity).
	shift := 0
	if hs.clientWS >= 0 && hs.clientTS {
		shift = AdvertisedWScale
	}
	grain := 1 << max(shift, int(c.replyFrom))
	if got := int(h.Window()) << shift; got > 65160 || got <= 65160-grain {
		t.Fatalf("window opening advertises %d bytes, want about 65160", got)
	}
}

// checkData adjusts a data segment each way and checks it against the other side's numbers.
func checkData(t *testing.T, hs handshake, c *Conn, cookie, iss uint32) {
	const isn = 0xfffffff0
	// Backend -> client: 1000 bytes at backend sequence iss+1.
	var opts []byte
	if c.tsAdj {
		opts = tsOpt(600000, 5000)
	}
	d := seg{src: hs.service, dst: hs.client, seq: iss + 1, ack: isn + 1, flags: packet.TCPAck | packet.TCPPsh, win: 300, opts: opts, payload: make([]byte, 1000)}
	p := parse(t, d.build())
	c.Adjust(p, false)
	h := p.TCP()
	o, _ := ParseOptions(h)
	if !checksumsOK(p) || h.Seq() != cookie+1 || c.tsAdj && o.TSVal != 600000+c.tsOff {
		t.Fatalf("backend data: seq %d want %d, options %+v", h.Seq(), cookie+1, o)
	}
	// Client -> backend: ACK of 1000 bytes with a SACK block, and its echoed timestamp.
	sack := []byte{optNOP, optNOP, optSACK, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(sack[4:], cookie+1+2000)
	binary.BigEndian.PutUint32(sack[8:], cookie+1+3000)
	opts = sack
	if c.tsAdj {
		opts = append(tsOpt(7000, 600000+c.tsOff), sack...)
	}
	a := seg{src: hs.client, dst: hs.service, seq: isn + 1, ack: cookie + 1 + 1000, flags: packet.TCPAck, win: 100, opts: opts}
	p = parse(t, a.build())
	c.Adjust(p, true)
	h = p.TCP()
	o, _ = ParseOptions(h)
	lo, hi := binary.BigEndian.Uint32(h[o.sackAt:]), binary.BigEndian.Uint32(h[o.sackAt+4:])
	if !checksumsOK(p) || h.Ack() != iss+1+1000 || lo != iss+1+2000 || hi != iss+1+3000 || c.tsAdj && o.TSEcr != 600000 {
		t.Fatalf("client ACK: ack %d want %d, SACK %d-%d, options %+v", h.Ack(), iss+1+1000, lo, hi, o)
	}
	if c.origShift != 0 && int(h.Window()) != min(100<<c.origShift, 0xffff) {
		t.Fatalf("client window %d not rescaled for a backend without scaling", h.Window())
	}
}

// TestAdjustPartial: with a CHECKSUM_PARTIAL segment the checksum field (the pseudo-header
// sum) is left alone while the numbers change.
func TestAdjustPartial(t *testing.T) {
	c := &Conn{seqOff: 1000}
	c.state.Store(stateEstablished)
	p := parse(t, seg{src: ap("203.0.113.10:80"), dst: ap("198.51.100.7:1"), seq: 5, flags: packet.TCPAck}.build())
	binary.BigEndian.PutUint16(p.B[p.L4Off+16:], 0x1234)
	p.PartialCsum = true
	c.Adjust(p, false)
	if h := p.TCP(); h.Checksum() != 0x1234 || h.Seq() != 1005 {
		t.Fatalf("partial: checksum %#x seq %d", h.Checksum(), h.Seq())
	}
}

// TestPending: before the backend answers, client segments re-send the SYN, a backend RST is
// passed at the cookie's next number and anything else from the backend is dropped.
func TestPending(t *testing.T) {
	c := NewConn(Proof{clientISN: 100, cookieISS: 5000})
	cl, sv := ap("198.51.100.7:1"), ap("203.0.113.10:80")
	for _, tc := range []struct {
		name       string
		s          seg
		fromClient bool
		want       Action
		wantSeq    uint32
	}{
		{"client probe", seg{src: cl, dst: sv, seq: 100, ack: 5001, flags: packet.TCPAck}, true, ResendSYN, 100},
		{"client reset", seg{src: cl, dst: sv, seq: 101, flags: packet.TCPRst}, true, Pass, 101},
		{"backend refuses", seg{src: sv, dst: cl, seq: 0, ack: 101, flags: packet.TCPRst | packet.TCPAck}, false, Pass, 5001},
		{"backend data", seg{src: sv, dst: cl, seq: 9, ack: 101, flags: packet.TCPAck}, false, Drop, 9},
	} {
		p := parse(t, tc.s.build())
		if a := c.Adjust(p, tc.fromClient); a != tc.want || p.TCP().Seq() != tc.wantSeq || !checksumsOK(p) {
			t.Errorf("%s: %v seq %d, want %v seq %d", tc.name, a, p.TCP().Seq(), tc.want, tc.wantSeq)
		}
	}
}

// TestServerSYNACKRefusals: a SYN-ACK that does not answer our SYN, or a second one while the
// first is spliced, builds nothing.
func TestServerSYNACKRefusals(t *testing.T) {
	cl, sv := ap("198.51.100.7:1"), ap("203.0.113.10:80")
	extra := make([]byte, 128)
	c := NewConn(Proof{clientISN: 100, cookieISS: 5000})
	for _, s := range []seg{
		{src: sv, dst: cl, seq: 9, ack: 102, flags: packet.TCPSyn | packet.TCPAck},
		{src: sv, dst: cl, seq: 9, ack: 101, flags: packet.TCPAck},
	} {
		if c.ServerSYNACK(parse(t, s.build()), extra) != 0 {
			t.Errorf("%+v spliced", s)
		}
	}
	ok := seg{src: sv, dst: cl, seq: 9, ack: 101, flags: packet.TCPSyn | packet.TCPAck}
	if c.ServerSYNACK(parse(t, ok.build()), extra[:10]) != 0 {
		t.Error("spliced without room for the second segment")
	}
	if c.ServerSYNACK(parse(t, ok.build()), extra) == 0 || !c.Established() {
		t.Fatal("the answer was not spliced")
	}
	if c.ServerSYNACK(parse(t, ok.build()), extra) != 0 {
		t.Error("a repeated SYN-ACK was spliced again")
	}
}
