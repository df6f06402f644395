package synproxy

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/edgegate/edgegate/packet"
)

// seg describes a TCP segment for tests.
type seg struct {
	src, dst netip.AddrPort
	seq, ack uint32
	flags    packet.TCPFlags
	win      uint16
	opts     []byte // a multiple of 4 bytes
	payload  []byte
	ipOpts   int // IPv4 option bytes (NOPs) before the TCP header
}

// build returns the segment as an IP packet with valid checksums, with room behind it.
func (s seg) build() []byte {
	v6 := s.src.Addr().Is6()
	hl := 20 + s.ipOpts
	if v6 {
		hl = 40
	}
	tl := 20 + len(s.opts)
	n := hl + tl + len(s.payload)
	b := make([]byte, n, n+256)
	if v6 {
		binary.BigEndian.PutUint32(b, 6<<28)
		binary.BigEndian.PutUint16(b[4:], uint16(tl+len(s.payload)))
		b[6], b[7] = 6, 64
		a, d := s.src.Addr().As16(), s.dst.Addr().As16()
		copy(b[8:], a[:])
		copy(b[24:], d[:])
	} else {
		b[0] = 0x40 | byte(hl/4)
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		b[8], b[9] = 64, 6
		a, d := s.src.Addr().As4(), s.dst.Addr().As4()
		copy(b[12:], a[:])
		copy(b[16:], d[:])
		for i := 20; i < hl; i++ {
			b[i] = 1
		}
		binary.BigEndian.PutUint16(b[10:], ^packet.Checksum(b[:hl], 0))
	}
	h := b[hl:]
	binary.BigEndian.PutUint16(h[0:], s.src.Port())
	binary.BigEndian.PutUint16(h[2:], s.dst.Port())
	binary.BigEndian.PutUint32(h[4:], s.seq)
	binary.BigEndian.PutUint32(h[8:], s.ack)
	h[12] = byte(tl/4) << 4
	h[13] = uint8(s.flags)
	binary.BigEndian.PutUint16(h[14:], s.win)
	copy(h[20:], s.opts)
	copy(h[tl:], s.payload)
	binary.BigEndian.PutUint16(h[16:], ^packet.Checksum(h, packet.PseudoHeaderSum(6, s.src.Addr(), s.dst.Addr(), len(h))))
	return b
}

func parse(t testing.TB, b []byte) *packet.Packet {
	t.Helper()
	p := new(packet.Packet)
	if r := p.Parse(b); r != packet.OK {
		t.Fatalf("parse: %v", r)
	}
	return p
}

// checksumsOK verifies the IPv4 header and TCP checksums of p from scratch.
func checksumsOK(p *packet.Packet) bool {
	if p.Version == 4 && packet.Checksum(p.B[:p.L4Off], 0) != 0xffff {
		return false
	}
	h := p.B[p.L4Off:]
	return packet.Checksum(h, packet.PseudoHeaderSum(6, p.Src, p.Dst, len(h))) == 0xffff
}

// synOpts are a Linux client's SYN options: MSS, SACK-permitted, timestamps, window scale.
func synOpts(mss uint16, tsval uint32, ws int8, sack bool) []byte {
	b := make([]byte, maxSYNOptions)
	return b[:writeSYNOptions(b, mss, sack, true, tsval, 0, ws)]
}

func tsOpt(val, ecr uint32) []byte {
	b := make([]byte, 12)
	writeTSOption(b, val, ecr)
	return b
}
