// Package synproxy answers TCP connection attempts with SYN cookies and splices the proven
// connections to a backend, like netfilter's SYNPROXY target with seqadj: a client's SYN gets
// a SYN-ACK whose sequence number is a keyed cookie (RFC 4987 section 3.6) and no state is kept;
// only the client's ACK, whose acknowledgement number proves the cookie, opens the connection
// to the backend (SYN, SYN-ACK, ACK, built from the client's own options recovered from the
// cookie), after which every segment of the flow has its sequence numbers (SACK blocks
// included) and timestamps shifted by one offset per direction. It does no I/O and allocates
// nothing per packet: the gateway hands it parsed packets and writes back what it builds in
// place.
//
// The cookie follows the Linux kernel's layout (net/ipv4/syncookies.c): the top 8 bits carry
// a minute counter, the low 24 bits a keyed hash plus the index of the client's MSS in a
// four-entry table; when the client sends timestamps, the low 6 bits of the SYN-ACK's
// timestamp carry its window scale (4 bits, 0xf for none), SACK-permitted and ECN.
package synproxy

import (
	crand "crypto/rand"
	"encoding/binary"
	"time"
)

const (
	cookieBits = 24                // low bits: hash + MSS index; high bits: minute counter
	cookieMask = 1<<cookieBits - 1 // the hash part of a cookie
	// CookiePeriod is the tick of the cookie's counter (the kernel's minute).
	CookiePeriod = 60 * time.Second
	// MaxCookieAge is how many counter ticks a cookie stays valid: an ACK proves a SYN-ACK sent
	// in the same or the previous period (the kernel's MAX_SYNCOOKIE_AGE), so at most two
	// minutes and at least one.
	MaxCookieAge = 2
)

// The kernel's MSS tables (msstab, msstab v6): a cookie carries the index of the largest entry
// not above the client's MSS, and the backend is offered that entry.
var (
	mssTable4 = [4]uint16{536, 1300, 1440, 1460}
	mssTable6 = [4]uint16{1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60}
)

// Secret holds the two SipHash keys cookies are made with (the kernel's syncookie_secret):
// the first hashes the tuple alone, the second the tuple and the counter. Made once per
// process; a restart invalidates outstanding cookies (their clients retry their SYN).
type Secret struct {
	k [2]sipKey
}

// NewSecret draws fresh random keys.
func NewSecret() *Secret {
	var b [32]byte
	crand.Read(b[:]) // never fails on Linux (Go 1.24+ panics rather than return an error)
	return SecretFrom(b)
}

// SecretFrom makes a Secret from 32 key bytes (tests, and nodes that share cookies).
func SecretFrom(b [32]byte) *Secret {
	le := binary.LittleEndian
	return &Secret{k: [2]sipKey{{le.Uint64(b[0:]), le.Uint64(b[8:])}, {le.Uint64(b[16:]), le.Uint64(b[24:])}}}
}

// Tuple is what a cookie is bound to: the client's and the service's address and port as the
// client's SYN carried them (IPv4 as v4-mapped IPv6).
type Tuple struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
}

func (s *Secret) hash(t *Tuple, count uint32, key int) uint32 {
	le := binary.LittleEndian
	m := [5]uint64{
		le.Uint64(t.Src[0:]), le.Uint64(t.Src[8:]), le.Uint64(t.Dst[0:]), le.Uint64(t.Dst[8:]),
		uint64(t.SrcPort) | uint64(t.DstPort)<<16 | uint64(count)<<32,
	}
	return uint32(sip24(s.k[key], m[:]))
}

// counter is the cookie clock: CookiePeriod ticks since the Unix epoch.
func counter(now int64) uint32 { return uint32(now / int64(CookiePeriod)) }

// Make returns the cookie (the SYN-ACK's sequence number) for a SYN of tuple t with initial
// sequence number isn, carrying data (an MSS index, < 4) at time now (Unix ns).
func (s *Secret) Make(t *Tuple, isn uint32, data uint32, now int64) uint32 {
	c := counter(now)
	return s.hash(t, 0, 0) + isn + c<<cookieBits + (s.hash(t, c, 1)+data)&cookieMask
}

// Check validates cookie (an ACK's acknowledgement number minus one) for tuple t and isn (its
// sequence number minus one) at time now, and returns the data it carries. ok is false for a
// forged, mistyped or expired cookie, and for data that cannot have been encoded (>= 4).
func (s *Secret) Check(t *Tuple, isn, cookie uint32, now int64) (data uint32, ok bool) {
	c := counter(now)
	cookie -= s.hash(t, 0, 0) + isn
	age := (c - cookie>>cookieBits) & (1<<(32-cookieBits) - 1)
	if age >= MaxCookieAge {
		return 0, false
	}
	data = (cookie - s.hash(t, c-age, 1)) & cookieMask
	return data, data < uint32(len(mssTable4))
}

// mssIndex is the index of the largest table entry not above mss (0 when mss is below all).
func mssIndex(table *[4]uint16, mss uint16) uint32 {
	for i := len(table) - 1; i > 0; i-- {
		if mss >= table[i] {
			return uint32(i)
		}
	}
	return 0
}

// Bits of the SYN-ACK timestamp's low 6 bits (the kernel's TS_OPT_*).
const (
	tsBits      = 6
	tsMask      = 1<<tsBits - 1
	tsWScale    = 0x0f // the client's window scale; 0xf: the client sent none
	tsSACK      = 0x10 // the client sent SACK-permitted
	tsECN       = 0x20 // the client asked for ECN (SYN with ECE and CWR)
	maxWScale   = 14   // RFC 7323 section 2.3
	noWScale    = -1   // Options.WScale when absent
	tsClockUnit = int64(time.Millisecond)
)

// tsClock is the timestamp clock of the SYN proxy: milliseconds (what Linux uses).
func tsClock(now int64) uint32 { return uint32(now / tsClockUnit) }

// cookieTS is the SYN-ACK's timestamp value: the clock with its low bits replaced by opts,
// moved one step back if that would be ahead of the clock (the kernel's cookie_init_timestamp).
func cookieTS(now int64, opts uint32) uint32 {
	c := tsClock(now)
	ts := c&^tsMask | opts
	if ts > c {
		ts = (ts>>tsBits-1)<<tsBits | opts
	}
	return ts
}
