package gateway

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/nat"
	"github.com/edgegate/edgegate/packet"
)

// BatchSize is how many packets a worker reads and writes per device call.
const BatchSize = 64

// Worker runs the packet path for one device queue. It owns its buffers and counters: nothing per
// packet is allocated, locked or logged.
type Worker struct {
	dev   tun.Device
	tr    *nat.Translator
	rules *atomic.Pointer[nat.Rules]
	tap   *atomic.Pointer[Tap]
	C     Counters

	bufs  [][]byte
	sizes []int
	out   [][]byte
	meta  []udpMeta // per out packet, for UDP coalescing
	pkt   packet.Packet
	uso   bool // the device takes UDP super-packets: coalesce datagrams
}

// Stage says where in the path a tapped packet was seen.
type Stage uint8

const (
	// BeforeNAT: as read from the TUN.
	BeforeNAT Stage = iota
	// AfterNAT: as written back (translated or answered).
	AfterNAT
)

// Tap receives packets for capture. It is called on the packet path only while a capture runs and
// must copy b before returning.
type Tap interface {
	Packet(stage Stage, b []byte)
}

// NewWorker allocates the worker's buffers once. tap may be nil.
func NewWorker(dev tun.Device, tr *nat.Translator, rules *atomic.Pointer[nat.Rules], tap *atomic.Pointer[Tap]) *Worker {
	if tap == nil {
		tap = new(atomic.Pointer[Tap])
	}
	w := &Worker{dev: dev, tr: tr, rules: rules, tap: tap, sizes: make([]int, BatchSize), out: make([][]byte, 0, BatchSize), meta: make([]udpMeta, 0, BatchSize)}
	if u, ok := dev.(tun.USODevice); ok {
		w.uso = u.USO()
	}
	size := tun.BufSize
	if !dev.VnetHdr() {
		size = tun.Offset + 65535 // a plain TUN still returns up to the MTU; keep room for jumbo MTUs
	}
	w.bufs = make([][]byte, BatchSize)
	for i := range w.bufs {
		w.bufs[i] = make([]byte, size)
	}
	return w
}

// appendExtra queues the second packet of a SYN proxy splice, which Translate built at
// nat.ExtraOff behind the first in the same buffer.
func (w *Worker) appendExtra(buf []byte, out [][]byte, meta []udpMeta, vnet bool) ([][]byte, []udpMeta) {
	x := buf[nat.ExtraOff:]
	pkt := x[tun.Offset:]
	n := int(binary.BigEndian.Uint16(pkt[2:])) // IPv4 total length
	if pkt[0]>>4 == 6 {
		n = packet.IPv6Len + int(binary.BigEndian.Uint16(pkt[4:]))
	}
	if vnet {
		clear(x[tun.Offset-tun.VnetHdrLen : tun.Offset])
	}
	w.C.TxBytes.add(uint64(n))
	return append(out, x[:tun.Offset+n]), append(meta, udpMeta{})
}

// Run processes batches until the device is closed.
func (w *Worker) Run(log *slog.Logger) error {
	for {
		if err := w.Step(); err != nil {
			if errors.Is(err, tun.ErrClosed) {
				return nil
			}
			log.Error("worker stopped", "dev", w.dev.Name(), "err", err)
			return err
		}
	}
}

// Step reads one batch, translates it and writes back what is to be forwarded.
func (w *Worker) Step() error {
	n, err := w.dev.Read(w.bufs, w.sizes)
	if err != nil {
		return err
	}
	rules := w.rules.Load()
	now := time.Now().UnixNano() // once per batch
	vnet := w.dev.VnetHdr()
	var tap Tap
	if t := w.tap.Load(); t != nil {
		tap = *t
	}
	out, meta := w.out[:0], w.meta[:0]
	for i := 0; i < n; i++ {
		buf := w.bufs[i]
		size := w.sizes[i]
		w.C.RxPackets.add(1)
		w.C.RxBytes.add(uint64(size))
		partial := false
		if vnet {
			partial = tun.VnetHdr(buf[tun.Offset-tun.VnetHdrLen : tun.Offset]).PartialCsum()
		}
		p := &w.pkt
		if tap != nil {
			tap.Packet(BeforeNAT, buf[tun.Offset:tun.Offset+size])
		}
		if r := p.Parse(buf[tun.Offset : tun.Offset+size]); r != packet.OK {
			w.C.Malformed[r].add(1)
			continue
		}
		v, why := w.tr.Translate(p, rules, now, partial)
		switch {
		case v == nat.Forward:
			w.C.Forwarded.add(1)
		case v.Built():
			if v == nat.Local {
				w.C.Local.add(1)
			} else {
				w.C.Forwarded.add(1)
				w.C.SYNProxy.count(v)
			}
			if why != nat.OK {
				w.C.Dropped[why].add(1) // answered with a refusal
			}
			if vnet {
				// A packet built here carries complete checksums and no GSO: clear the header
				// the request came with (it may ask the kernel to finish a partial checksum).
				clear(buf[tun.Offset-tun.VnetHdrLen : tun.Offset])
			}
		default:
			w.C.Dropped[why].add(1)
			continue
		}
		if tap != nil {
			tap.Packet(AfterNAT, p.B)
		}
		w.C.TxBytes.add(uint64(len(p.B)))
		out = append(out, buf[:tun.Offset+len(p.B)])
		var m udpMeta
		if w.uso && v == nat.Forward && coalescable(p, tun.VnetHdr(buf[tun.Offset-tun.VnetHdrLen:tun.Offset])) {
			m.l4 = p.L4Off
		}
		meta = append(meta, m)
		if v == nat.ProxySplice {
			out, meta = w.appendExtra(buf, out, meta, vnet)
		}
	}
	if len(out) == 0 {
		return nil
	}
	sent := len(out)
	if w.uso {
		out = coalesceUDP(out, meta)
		if merged := sent - len(out); merged > 0 {
			w.C.Coalesced.add(uint64(merged + countSupers(out)))
		}
	}
	m, err := w.dev.Write(out)
	if m == len(out) {
		w.C.TxPackets.add(uint64(sent)) // datagrams, not super-packets
	} else {
		w.C.TxPackets.add(uint64(m))
		w.C.WriteErrors.add(uint64(len(out) - m))
	}
	if errors.Is(err, tun.ErrClosed) {
		return err
	}
	return nil
}
