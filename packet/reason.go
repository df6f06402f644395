// Package packet provides zero-copy, allocation-free views over IPv4/IPv6 packets
// carrying TCP, UDP, ICMP or ICMPv6, with validation that says why a packet is refused
// and incremental (RFC 1624) checksum maintenance for NAT rewrites, including the
// packets embedded in ICMP errors (RFC 5508).
package packet

// Reason says why a packet was refused; OK (the zero value) means it was accepted.
// It is small and dense so callers can index per-reason counters with it.
type Reason uint8

// Reasons, in a stable order (used as metric label indices).
const (
	OK                  Reason = iota
	ErrShort                   // buffer shorter than the fixed IP header
	ErrBadVersion              // IP version is neither 4 nor 6 (or inner version differs from outer)
	ErrBadIHL                  // IPv4 IHL below 5 or beyond the total length
	ErrBadTotalLen             // IP total/payload length beyond the buffer, or too small
	ErrBadExtHeader            // malformed IPv6 extension header chain
	ErrUnsupportedProto        // L4 protocol other than TCP, UDP, ICMP (v4) or ICMPv6 (v6)
	ErrTruncatedL4             // L4 header missing, cut short or self-inconsistent
	ErrFragment                // non-first fragment: there is no L4 header to translate
	ErrBadAddr                 // IPv4-mapped address in an IPv6 header (would alias IPv4 flows)
	NumReasons                 // number of reasons, for sizing counter arrays
)

var reasonNames = [NumReasons]string{
	OK:                  "ok",
	ErrShort:            "short",
	ErrBadVersion:       "bad_version",
	ErrBadIHL:           "bad_ihl",
	ErrBadTotalLen:      "bad_total_len",
	ErrBadExtHeader:     "bad_ext_header",
	ErrUnsupportedProto: "unsupported_proto",
	ErrTruncatedL4:      "truncated_l4",
	ErrFragment:         "fragment",
	ErrBadAddr:          "bad_addr",
}

// String returns a stable snake_case label, suitable as a Prometheus label value.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}
