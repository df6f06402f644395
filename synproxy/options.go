package synproxy

import (
	"encoding/binary"

	"github.com/edgegate/edgegate/packet"
)

// TCP option kinds (RFC 9293, RFC 7323, RFC 2018).
const (
	optEOL      = 0
	optNOP      = 1
	optMSS      = 2
	optWScale   = 3
	optSACKPerm = 4
	optSACK     = 5
	optTS       = 8
)

// Options are the TCP options the SYN proxy reads, with where the mutable ones sit in the
// header (offsets from the start of the TCP header; 0: absent).
type Options struct {
	MSS      uint16 // 0: absent
	WScale   int8   // noWScale (-1): absent; clamped to 14
	SACKPerm bool
	TS       bool
	TSVal    uint32
	TSEcr    uint32
	tsAt     int // offset of TSval (TSecr follows)
	sackAt   int // offset of the first SACK block
	sackN    int // number of SACK blocks (8 bytes each)
}

// ParseOptions reads the options of TCP header h (h at least its data offset long). ok is false
// for a malformed option list (a length running past the header, or a known option of the wrong
// length): such a segment is answered by nobody.
func ParseOptions(h packet.TCP) (o Options, ok bool) {
	o.WScale = noWScale
	if len(h) < packet.TCPMinLen {
		return o, false
	}
	end := h.DataOffset()
	if end < packet.TCPMinLen || end > len(h) {
		return o, false
	}
	for i := packet.TCPMinLen; i < end; {
		kind := h[i]
		if kind == optEOL {
			break
		}
		if kind == optNOP {
			i++
			continue
		}
		if i+1 >= end {
			return o, false
		}
		n := int(h[i+1])
		if n < 2 || i+n > end {
			return o, false
		}
		if !o.set(h, kind, i, n) {
			return o, false
		}
		i += n
	}
	return o, true
}

// set records option kind of length n at offset i; false for a known kind of a wrong length.
func (o *Options) set(h packet.TCP, kind byte, i, n int) bool {
	switch kind {
	case optMSS:
		if n != 4 {
			return false
		}
		o.MSS = binary.BigEndian.Uint16(h[i+2:])
	case optWScale:
		if n != 3 {
			return false
		}
		o.WScale = int8(min(h[i+2], maxWScale))
	case optSACKPerm:
		if n != 2 {
			return false
		}
		o.SACKPerm = true
	case optTS:
		if n != 10 {
			return false
		}
		o.TS, o.tsAt = true, i+2
		o.TSVal, o.TSEcr = binary.BigEndian.Uint32(h[i+2:]), binary.BigEndian.Uint32(h[i+6:])
	case optSACK:
		if (n-2)%8 != 0 {
			return false
		}
		o.sackAt, o.sackN = i+2, (n-2)/8
	}
	return true
}

// writeSYNOptions writes the options of a SYN or SYN-ACK into b in Linux's layout (MSS,
// SACK-permitted + timestamps, NOP + window scale; NOPs pad) and returns their length, a
// multiple of 4 (at most 20). wscale < 0 leaves window scaling out; ts false leaves out
// timestamps (tsval, tsecr unused).
func writeSYNOptions(b []byte, mss uint16, sack, ts bool, tsval, tsecr uint32, wscale int8) int {
	n := 0
	b[0], b[1] = optMSS, 4
	binary.BigEndian.PutUint16(b[2:], mss)
	n = 4
	switch {
	case sack && ts:
		b[n], b[n+1] = optSACKPerm, 2
		n += 2
	case ts:
		b[n], b[n+1] = optNOP, optNOP
		n += 2
	case sack:
		b[n], b[n+1], b[n+2], b[n+3] = optNOP, optNOP, optSACKPerm, 2
		n += 4
	}
	if ts {
		b[n], b[n+1] = optTS, 10
		binary.BigEndian.PutUint32(b[n+2:], tsval)
		binary.BigEndian.PutUint32(b[n+6:], tsecr)
		n += 10
	}
	if wscale >= 0 {
		b[n], b[n+1], b[n+2], b[n+3] = optNOP, optWScale, 3, byte(wscale)
		n += 4
	}
	return n
}

// writeTSOption writes NOP, NOP, timestamps into b (12 bytes).
func writeTSOption(b []byte, tsval, tsecr uint32) int {
	b[0], b[1], b[2], b[3] = optNOP, optNOP, optTS, 10
	binary.BigEndian.PutUint32(b[4:], tsval)
	binary.BigEndian.PutUint32(b[8:], tsecr)
	return 12
}
