package gateway

import (
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

	bufs      [][]byte
	sizes     []int
	out       [][]byte
	pkt       packet.Packet
	verdict   nat.Verdict   // of pkt
	uso       tun.USODevice // the device coalesces UDP datagrams (nil: it does not)
	coalesced uint64        // uso.Coalesced() as last counted
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
	w := &Worker{dev: dev, tr: tr, rules: rules, tap: tap, sizes: make([]int, BatchSize), out: make([][]byte, 0, BatchSize)}
	if u, ok := dev.(tun.USODevice); ok && u.USO() {
		w.uso = u
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
func (w *Worker) appendExtra(buf []byte, out [][]byte) [][]byte {
	x := buf[nat.ExtraOff:]
	var q packet.Packet
	if q.Parse(x[tun.Offset:]) != packet.OK {
		return out // cannot happen: Translate built it
	}
	tun.MarkBuilt(x)
	w.C.TxBytes.add(uint64(len(q.B)))
	return append(out, x[:tun.Offset+len(q.B)])
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
	var tap Tap
	if t := w.tap.Load(); t != nil {
		tap = *t
	}
	out := w.out[:0]
	for i := 0; i < n; i++ {
		buf := w.bufs[i]
		v, ok := w.process(buf, w.sizes[i], rules, now, tap)
		if !ok {
			continue
		}
		out = append(out, buf[:tun.Offset+len(w.pkt.B)])
		if v == nat.ProxySplice {
			out = w.appendExtra(buf, out)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return w.write(out)
}

// process parses and translates the packet read into buf (size bytes) and counts it; it reports
// the verdict and whether the packet, translated or answered in place in w.pkt, is to be written.
func (w *Worker) process(buf []byte, size int, rules *nat.Rules, now int64, tap Tap) (nat.Verdict, bool) {
	w.C.RxPackets.add(1)
	w.C.RxBytes.add(uint64(size))
	if tap != nil {
		tap.Packet(BeforeNAT, buf[tun.Offset:tun.Offset+size])
	}
	p := &w.pkt
	if r := tun.Parse(p, buf, size); r != packet.OK {
		w.C.Malformed[r].add(1)
		return nat.Drop, false
	}
	v, why := w.tr.Translate(p, rules, now)
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
		// Built here: complete checksums, no GSO, whatever offload the request came with.
		tun.MarkBuilt(buf)
	default:
		w.C.Dropped[why].add(1)
		return v, false
	}
	if tap != nil {
		tap.Packet(AfterNAT, p.B)
	}
	w.C.TxBytes.add(uint64(len(p.B)))
	return v, true
}

// write writes out and counts what the kernel took (datagrams, not super-packets) and what the
// device coalesced.
func (w *Worker) write(out [][]byte) error {
	m, err := w.dev.Write(out)
	w.C.TxPackets.add(uint64(m))
	w.C.WriteErrors.add(uint64(len(out) - m))
	if w.uso != nil {
		c := w.uso.Coalesced()
		w.C.Coalesced.add(c - w.coalesced)
		w.coalesced = c
	}
	if errors.Is(err, tun.ErrClosed) {
		return err
	}
	return nil
}
