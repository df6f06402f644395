// Package flowsync shares the flows a cluster node creates with its peers over UDP, so that a
// packet of a flow that ECMP moves to another node is translated there exactly as on the node
// that created it (docs/cluster.md).
//
// A node sends each flow it creates, and the state changes that matter (established, closing,
// deleted by Delete), to every peer in batched, authenticated datagrams; a node installs what it
// receives in its conntrack table (conntrack.Table.Install) marked with the creator's index.
//
// Wire format, version 1 (all integers big-endian):
//
//	header  (32 bytes)  magic "EGFS", version, sender node index, record count (uint16),
//	                    sender epoch (uint64), sequence (uint64), 8 zero bytes
//	records (count × 80) op, proto, state, flags, kind, origin node index, 2 zero bytes,
//	                    original tuple (src, dst as 16-byte addresses, sport, dport),
//	                    reply tuple (likewise)
//	trailer (32 bytes)  HMAC-SHA256 (pre-shared key) over header and records
//
// Replay protection: the epoch is the sender's start time (unix ns), the sequence counts its
// datagrams from 1 within the epoch. A receiver keeps per peer the newest epoch and a sliding
// window of ReplayWindow sequence numbers (RFC 4303's anti-replay window): a datagram of an older
// epoch, older than the window or already seen is dropped; one of a newer epoch (the peer
// restarted) resets the window. Authentication comes first, so a forged datagram never moves a
// window. Nodes need clocks that do not step back across a restart.
package flowsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/packet"
)

// Sizes and bounds of the wire format.
const (
	headerLen = 32
	recordLen = 80
	macLen    = sha256.Size
	// MaxRecords bounds the records of one datagram: 16 × 80 bytes + header and MAC is 1344
	// bytes, under a 1500-byte MTU for IPv4 and IPv6 without fragmentation.
	MaxRecords = 16
	// MaxDatagram is the largest valid datagram.
	MaxDatagram = headerLen + MaxRecords*recordLen + macLen
	// MinKeyLen is the least length of the pre-shared key (bytes): HMAC-SHA256's block of
	// security, 256 bits.
	MinKeyLen = 32
	// MaxKeyLen bounds the key file read.
	MaxKeyLen = 4096
	version   = 1
)

var magic = [4]byte{'E', 'G', 'F', 'S'}

// Op is what a record asks of the receiver.
type Op uint8

// Record operations.
const (
	OpUpsert Op = 1 // install the flow or move it to the record's state
	OpDelete Op = 2 // the creator deleted the flow
)

// Record is one flow in a datagram.
type Record struct {
	Op     Op
	Kind   uint8
	Origin uint8 // node index of the flow's creator
	Saved  conntrack.Saved
	Tuple  [2]conntrack.Tuple
}

// Header is a datagram's header.
type Header struct {
	Node  uint8
	Count int
	Epoch uint64
	Seq   uint64
}

// Reasons a datagram is refused, each a counted drop.
var (
	ErrLength  = errors.New("flowsync: bad length")
	ErrMagic   = errors.New("flowsync: bad magic or version")
	ErrMAC     = errors.New("flowsync: authentication failed")
	ErrRecord  = errors.New("flowsync: malformed record")
	ErrReplay  = errors.New("flowsync: replayed or stale datagram")
	ErrUnknown = errors.New("flowsync: unknown sender")
)

// flag bits of a record.
const (
	fAssured   = 1
	fSeenReply = 2
	fNoOrig    = 4
)

// Encoder builds datagrams; not safe for concurrent use.
type Encoder struct {
	mac hash.Hash
	buf [MaxDatagram]byte
	sum [macLen]byte
}

// NewEncoder makes an encoder with the pre-shared key.
func NewEncoder(key []byte) *Encoder { return &Encoder{mac: hmac.New(sha256.New, key)} }

// Encode writes the datagram of h and recs (at most MaxRecords) and returns it (valid until the
// next Encode).
func (c *Encoder) Encode(h Header, recs []Record) []byte {
	b := c.buf[:headerLen+len(recs)*recordLen]
	copy(b, magic[:])
	b[4], b[5] = version, h.Node
	binary.BigEndian.PutUint16(b[6:], uint16(len(recs)))
	binary.BigEndian.PutUint64(b[8:], h.Epoch)
	binary.BigEndian.PutUint64(b[16:], h.Seq)
	clear(b[24:32])
	for i := range recs {
		putRecord(b[headerLen+i*recordLen:], &recs[i])
	}
	c.mac.Reset()
	c.mac.Write(b)
	return c.mac.Sum(b)
}

func putRecord(b []byte, r *Record) {
	var f byte
	if r.Saved.Assured {
		f |= fAssured
	}
	if r.Saved.SeenReply {
		f |= fSeenReply
	}
	if r.Saved.NoOrig {
		f |= fNoOrig
	}
	b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7] = byte(r.Op), byte(r.Tuple[0].Proto), byte(r.Saved.State), f, r.Kind, r.Origin, 0, 0
	for d, t := range r.Tuple {
		o := b[8+d*36:]
		copy(o, t.Src[:])
		copy(o[16:], t.Dst[:])
		binary.BigEndian.PutUint16(o[32:], t.SrcPort)
		binary.BigEndian.PutUint16(o[34:], t.DstPort)
	}
}

// Decoder checks and reads datagrams; not safe for concurrent use.
type Decoder struct {
	mac hash.Hash
	sum [macLen]byte
}

// NewDecoder makes a decoder with the pre-shared key.
func NewDecoder(key []byte) *Decoder { return &Decoder{mac: hmac.New(sha256.New, key)} }

// Decode authenticates b and reads its header and records into recs (len(recs) >= MaxRecords).
// It allocates nothing and never panics on any input: errors are ErrLength, ErrMagic, ErrMAC or
// ErrRecord (replay is the caller's check, on the returned header).
func (c *Decoder) Decode(b []byte, recs []Record) (Header, error) {
	if len(b) < headerLen+macLen || len(b) > MaxDatagram || (len(b)-headerLen-macLen)%recordLen != 0 {
		return Header{}, ErrLength
	}
	if [4]byte(b[:4]) != magic || b[4] != version {
		return Header{}, ErrMagic
	}
	h := Header{Node: b[5], Count: int(binary.BigEndian.Uint16(b[6:])), Epoch: binary.BigEndian.Uint64(b[8:]), Seq: binary.BigEndian.Uint64(b[16:])}
	body := b[:len(b)-macLen]
	if h.Count != (len(body)-headerLen)/recordLen {
		return Header{}, ErrLength
	}
	c.mac.Reset()
	c.mac.Write(body)
	if !hmac.Equal(c.mac.Sum(c.sum[:0]), b[len(body):]) {
		return Header{}, ErrMAC
	}
	if h.Seq == 0 || h.Epoch == 0 || [8]byte(b[24:32]) != [8]byte{} {
		return Header{}, ErrRecord
	}
	for i := range h.Count {
		if !getRecord(body[headerLen+i*recordLen:], &recs[i]) {
			return Header{}, ErrRecord
		}
	}
	return h, nil
}

func getRecord(b []byte, r *Record) bool {
	r.Op, r.Kind, r.Origin = Op(b[0]), b[4], b[5]
	proto, st, f := packet.Proto(b[1]), conntrack.State(b[2]), b[3]
	if (r.Op != OpUpsert && r.Op != OpDelete) || f&^(fAssured|fSeenReply|fNoOrig) != 0 || b[6] != 0 || b[7] != 0 || r.Kind == 0 {
		return false
	}
	switch proto {
	case packet.ProtoTCP:
		if st == conntrack.StateNone || st > conntrack.StateClose {
			return false
		}
	case packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6:
		if st != conntrack.StateUnreplied && st != conntrack.StateReplied {
			return false
		}
	default:
		return false
	}
	r.Saved = conntrack.Saved{State: st, Assured: f&fAssured != 0, SeenReply: f&fSeenReply != 0, NoOrig: f&fNoOrig != 0}
	for d := range r.Tuple {
		o := b[8+d*36:]
		t := &r.Tuple[d]
		t.Src, t.Dst = [16]byte(o[:16]), [16]byte(o[16:32])
		t.SrcPort, t.DstPort = binary.BigEndian.Uint16(o[32:]), binary.BigEndian.Uint16(o[34:])
		t.Proto = proto
		if t.SrcAddr().Is4() != t.DstAddr().Is4() || !t.SrcAddr().IsGlobalUnicast() || !t.DstAddr().IsGlobalUnicast() {
			return false
		}
	}
	return r.Tuple[0].SrcAddr().Is4() == r.Tuple[1].SrcAddr().Is4()
}
