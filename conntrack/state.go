package conntrack

import (
	"time"

	"github.com/edgegate/edgegate/packet"
)

// State is a flow's protocol state: netfilter's TCP states (same names and order as
// nf_conntrack_proto_tcp) and, for UDP and ICMP echo, whether a reply was seen.
type State uint8

// States. The TCP values mirror enum tcp_conntrack so they read the same in both tools.
const (
	StateNone        State = iota // not initialised (never seen on a live entry)
	StateSynSent                  // TCP: SYN seen from the client
	StateSynRecv                  // TCP: SYN-ACK seen from the server
	StateEstablished              // TCP: handshake completed
	StateFinWait                  // TCP: FIN seen from one side
	StateCloseWait                // TCP: that FIN acknowledged
	StateLastAck                  // TCP: FIN seen from both sides
	StateTimeWait                 // TCP: last ACK seen
	StateClose                    // TCP: RST seen
	StateSynSent2                 // TCP: simultaneous open (SYN from both sides)
	StateUnreplied                // UDP, ICMP echo: no reply seen yet
	StateReplied                  // UDP, ICMP echo: traffic seen both ways
	numStates
)

var stateNames = [numStates]string{
	"none", "syn_sent", "syn_recv", "established", "fin_wait", "close_wait", "last_ack",
	"time_wait", "close", "syn_sent2", "unreplied", "replied",
}

// String is a stable snake_case label for metrics and the API, e.g. "syn_sent".
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "invalid"
}

// Closing reports a TCP connection past its end (TIME_WAIT or CLOSE): a new SYN may reopen its
// tuple (Reopens), and under port pressure its port goes first.
func (s State) Closing() bool { return s == StateTimeWait || s == StateClose }

// Timeouts are the idle timeouts per state; a zero field takes netfilter's default (see
// DefaultTimeouts). SYN_SENT2 (simultaneous open) uses TCPSynSent, as in netfilter.
type Timeouts struct {
	TCPSynSent     time.Duration // 120 s
	TCPSynRecv     time.Duration // 60 s
	TCPEstablished time.Duration // 432000 s (5 days)
	TCPFinWait     time.Duration // 120 s
	TCPCloseWait   time.Duration // 60 s
	TCPLastAck     time.Duration // 30 s
	TCPTimeWait    time.Duration // 120 s
	TCPClose       time.Duration // 10 s
	UDP            time.Duration // 30 s: until a reply is seen
	UDPStream      time.Duration // 120 s: once traffic was seen both ways
	ICMP           time.Duration // 30 s
}

// DefaultTimeouts are netfilter's defaults (net.netfilter.nf_conntrack_*_timeout*).
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPSynSent:     120 * time.Second,
		TCPSynRecv:     60 * time.Second,
		TCPEstablished: 432000 * time.Second,
		TCPFinWait:     120 * time.Second,
		TCPCloseWait:   60 * time.Second,
		TCPLastAck:     30 * time.Second,
		TCPTimeWait:    120 * time.Second,
		TCPClose:       10 * time.Second,
		UDP:            30 * time.Second,
		UDPStream:      120 * time.Second,
		ICMP:           30 * time.Second,
	}
}

// withDefaults fills zero (or negative) fields from DefaultTimeouts.
func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.TCPSynSent, &d.TCPSynSent}, {&t.TCPSynRecv, &d.TCPSynRecv},
		{&t.TCPEstablished, &d.TCPEstablished}, {&t.TCPFinWait, &d.TCPFinWait},
		{&t.TCPCloseWait, &d.TCPCloseWait}, {&t.TCPLastAck, &d.TCPLastAck},
		{&t.TCPTimeWait, &d.TCPTimeWait}, {&t.TCPClose, &d.TCPClose}, {&t.UDP, &d.UDP},
		{&t.UDPStream, &d.UDPStream}, {&t.ICMP, &d.ICMP},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// shared is what entries of one table reference: resolved timeouts in nanoseconds and the
// INVALID counter, so Entry.Update needs no table argument.
type shared struct {
	tcp       [numStates]int64 // by TCP state
	udp       int64
	udpStream int64
	icmp      int64
	invalid   paddedCounter
	// invalidWindow counts TCP segments outside their flow's window (dropped RSTs included).
	invalidWindow paddedCounter
	onEvent       func(*Entry, Event) // Config.OnEvent
}

func newShared(t Timeouts) *shared {
	t = t.withDefaults()
	s := &shared{udp: int64(t.UDP), udpStream: int64(t.UDPStream), icmp: int64(t.ICMP)}
	s.tcp[StateSynSent] = int64(t.TCPSynSent)
	s.tcp[StateSynSent2] = int64(t.TCPSynSent)
	s.tcp[StateSynRecv] = int64(t.TCPSynRecv)
	s.tcp[StateEstablished] = int64(t.TCPEstablished)
	s.tcp[StateFinWait] = int64(t.TCPFinWait)
	s.tcp[StateCloseWait] = int64(t.TCPCloseWait)
	s.tcp[StateLastAck] = int64(t.TCPLastAck)
	s.tcp[StateTimeWait] = int64(t.TCPTimeWait)
	s.tcp[StateClose] = int64(t.TCPClose)
	return s
}

// defaultShared serves entries not (yet) inserted in a table.
var defaultShared = newShared(Timeouts{})

// Packet kinds, the rows of the transition table (netfilter's enum tcp_bit_set).
const (
	kindSYN = iota
	kindSYNACK
	kindFIN
	kindACK
	kindRST
	kindInvalid // a flag combination netfilter's tcp_error refuses
	numKinds
)

// tcpValidFlags is netfilter's tcp_valid_flags: the combinations of FIN, SYN, RST, ACK and URG
// a real stack sends (PSH, ECE and CWR are ignored). Anything else (SYN+FIN, no flags, a FIN
// without ACK, ...) is INVALID.
var tcpValidFlags = [64]bool{
	packet.TCPSyn:                                 true,
	packet.TCPSyn | packet.TCPUrg:                 true,
	packet.TCPSyn | packet.TCPAck:                 true,
	packet.TCPRst:                                 true,
	packet.TCPRst | packet.TCPAck:                 true,
	packet.TCPFin | packet.TCPAck:                 true,
	packet.TCPFin | packet.TCPAck | packet.TCPUrg: true,
	packet.TCPAck:                                 true,
	packet.TCPAck | packet.TCPUrg:                 true,
}

// tcpKind classifies a segment's flags like netfilter's tcp_error + get_conntrack_index.
func tcpKind(flags packet.TCPFlags) int {
	f := flags &^ (packet.TCPPsh | packet.TCPEce | packet.TCPCwr)
	if !tcpValidFlags[f&0x3f] {
		return kindInvalid
	}
	switch {
	case f&packet.TCPRst != 0:
		return kindRST
	case f&packet.TCPSyn != 0:
		if f&packet.TCPAck != 0 {
			return kindSYNACK
		}
		return kindSYN
	case f&packet.TCPFin != 0:
		return kindFIN
	}
	return kindACK // tcpValidFlags leaves only ACK (+URG) here
}

// Pseudo-states of the transition table.
const (
	sIV = numStates     // INVALID: drop the packet, state unchanged
	sIG = numStates + 1 // IGNORE: accept the packet, state and timeout unchanged
)

// tcpTransitions is netfilter's tcp_conntracks[dir][kind][state] (Linux
// net/netfilter/nf_conntrack_proto_tcp.c), with our extra "invalid flags" row. Columns are
// NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE,
// SYN_SENT2. One change: a reply-direction SYN on TIME_WAIT is INVALID here (netfilter
// re-opens the flow with the roles switched, which a NAT mapping cannot follow).
var tcpTransitions = func() (t [2][numKinds][numStates]State) {
	const (
		sNO = StateNone
		sSS = StateSynSent
		sSR = StateSynRecv
		sES = StateEstablished
		sFW = StateFinWait
		sCW = StateCloseWait
		sLA = StateLastAck
		sTW = StateTimeWait
		sCL = StateClose
		sS2 = StateSynSent2
	)
	_ = sNO
	rows := [2][numKinds][10]State{
		{ // ORIGINAL
			//          sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
			kindSYN:     {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
			kindSYNACK:  {sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR},
			kindFIN:     {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
			kindACK:     {sIV, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV}, // sNO: no loose pick-up
			kindRST:     {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
			kindInvalid: {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
		},
		{ // REPLY
			//          sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
			kindSYN:     {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sS2}, // sTW: see above
			kindSYNACK:  {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
			kindFIN:     {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
			kindACK:     {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
			kindRST:     {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
			kindInvalid: {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
		},
	}
	for d := range rows {
		for k := range rows[d] {
			for s := range t[d][k] {
				t[d][k][s] = sIV // UDP/ICMP pseudo-states are never TCP states
			}
			copy(t[d][k][:], rows[d][k][:])
		}
	}
	return t
}()

// NewFlowOK says whether a packet with no entry may create one: TCP only for a SYN without
// ACK/RST/FIN (netfilter without loose pick-up), UDP always, ICMP only an echo request (an
// ICMP error belongs to the flow it quotes). Everything else is INVALID.
func NewFlowOK(p *packet.Packet) bool {
	switch p.Proto {
	case packet.ProtoTCP:
		return tcpKind(p.TCPFlags) == kindSYN
	case packet.ProtoUDP:
		return true
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return !p.IsICMPError && p.IsEchoRequest()
	}
	return false
}

// PickUpOK says whether a packet of no known flow may start one by loose pick-up (netfilter's
// nf_conntrack_tcp_loose): a TCP segment carrying ACK without SYN, FIN or RST, i.e. the middle of
// a connection whose entry was lost (a restart). FIN and RST segments of lost flows are not
// picked up: they end the connection anyway, as in netfilter.
func PickUpOK(p *packet.Packet) bool {
	return p.Proto == packet.ProtoTCP && tcpKind(p.TCPFlags) == kindACK
}

// Reopens reports whether p, a packet of this flow in direction d, is a SYN opening a new
// connection on the tuple of a closed one (TIME_WAIT or CLOSE): port reuse (RFC 1122 4.2.2.13),
// which netfilter lets start over. Track then restarts the entry unassured; the NAT deletes it
// instead so the new connection picks its backend afresh.
func (e *Entry) Reopens(d Dir, p *packet.Packet) bool {
	return p.Proto == packet.ProtoTCP && reopens(d, p.TCPFlags, e.State())
}

func reopens(d Dir, flags packet.TCPFlags, old State) bool {
	return d == Original && flags.Attempt() && old.Closing()
}
