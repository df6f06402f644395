package admin

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/packet"
)

// CaptureFilter selects captured packets. Expressions are terms joined by "and": "host A",
// "src A", "dst A", "port N", "tcp", "udp", "icmp", "icmpv6", "before" / "after" (the stage:
// as read from the TUN, or as written back after translation). Empty matches everything.
type CaptureFilter struct {
	terms []term
}

type term struct {
	kind string // host, src, dst, port, proto, stage
	addr netip.Addr
	num  int
}

// ParseCaptureFilter parses a filter expression.
func ParseCaptureFilter(s string) (CaptureFilter, error) {
	var f CaptureFilter
	toks := strings.Fields(s)
	for i := 0; i < len(toks); i++ {
		t := strings.ToLower(toks[i])
		switch t {
		case "and", "&&":
			continue
		case "tcp", "udp", "icmp", "icmpv6":
			p, _ := ParseProtocol(t)
			f.terms = append(f.terms, term{kind: "proto", num: int(p)})
		case "before", "after":
			st := int(gateway.BeforeNAT)
			if t == "after" {
				st = int(gateway.AfterNAT)
			}
			f.terms = append(f.terms, term{kind: "stage", num: st})
		case "host", "src", "dst", "port":
			if i+1 >= len(toks) {
				return f, fmt.Errorf("capture filter: %q needs a value", t)
			}
			i++
			v := toks[i]
			if t == "port" {
				n, err := strconv.ParseUint(v, 10, 16)
				if err != nil {
					return f, fmt.Errorf("capture filter: port %q: %w", v, err)
				}
				f.terms = append(f.terms, term{kind: "port", num: int(n)})
				continue
			}
			a, err := netip.ParseAddr(v)
			if err != nil {
				return f, fmt.Errorf("capture filter: %s: %w", t, err)
			}
			f.terms = append(f.terms, term{kind: t, addr: a.Unmap()})
		default:
			return f, fmt.Errorf("capture filter: unknown term %q (want host, src, dst, port, tcp, udp, icmp, icmpv6, before, after)", toks[i])
		}
	}
	return f, nil
}

// match reports whether a parsed packet seen at stage passes every term. Unparseable packets
// pass only a filter without address, port or protocol terms.
func (f *CaptureFilter) match(stage gateway.Stage, p *packet.Packet, parsed bool) bool {
	for _, t := range f.terms {
		if t.kind == "stage" {
			if int(stage) != t.num {
				return false
			}
			continue
		}
		if !parsed {
			return false
		}
		switch t.kind {
		case "proto":
			if int(p.Proto) != t.num {
				return false
			}
		case "host":
			if p.Src != t.addr && p.Dst != t.addr {
				return false
			}
		case "src":
			if p.Src != t.addr {
				return false
			}
		case "dst":
			if p.Dst != t.addr {
				return false
			}
		case "port":
			if int(p.SrcPort) != t.num && int(p.DstPort) != t.num {
				return false
			}
		}
	}
	return true
}

// capBuf is one preallocated capture slot.
type capBuf struct {
	b     []byte
	n     int // bytes copied
	orig  int // original length
	stage gateway.Stage
}

// tap is the gateway.Tap of one capture: a fixed pool of buffers handed between the workers and
// the writer through channels, so the packet path copies into memory allocated up front, never
// blocks and drops (counted) when the writer falls behind.
type tap struct {
	free    chan *capBuf
	full    chan *capBuf
	dropped atomic.Uint64
}

const capSlots = 128

func newTap(snaplen int) *tap {
	t := &tap{free: make(chan *capBuf, capSlots), full: make(chan *capBuf, capSlots)}
	for range capSlots {
		t.free <- &capBuf{b: make([]byte, snaplen)}
	}
	return t
}

// Packet copies b into a free slot (called by the workers).
func (t *tap) Packet(stage gateway.Stage, b []byte) {
	select {
	case buf := <-t.free:
		buf.n = copy(buf.b, b)
		buf.orig = len(b)
		buf.stage = stage
		t.full <- buf // cannot block: there are as many slots as channel capacity
	default:
		t.dropped.Add(1)
	}
}

// CaptureRequest says what to capture.
type CaptureRequest struct {
	Count    int           // stop after this many packets written (0: until Duration or cancel)
	Duration time.Duration // stop after this long (0: until Count or cancel)
	Filter   string
	Snaplen  int // bytes kept per packet (0: 65535)
}

// errCaptureBusy: a capture is already running (the gateway has one tap).
var errCaptureBusy = errors.New("a capture is already running")

// runCapture installs a tap on src and writes matching packets as pcap (LINKTYPE_RAW: IPv4 and
// IPv6 without a link header) to w until the request is satisfied or done is closed. flush is
// called after the header and every 100 ms. It returns the packets written and those the tap dropped.
func runCapture(src Source, busy *atomic.Bool, req CaptureRequest, w io.Writer, flush func(), done <-chan struct{}) (written int, dropped uint64, err error) {
	f, err := ParseCaptureFilter(req.Filter)
	if err != nil {
		return 0, 0, err
	}
	if !busy.CompareAndSwap(false, true) {
		return 0, 0, errCaptureBusy
	}
	defer busy.Store(false)
	snap := req.Snaplen
	if snap <= 0 || snap > 65535 {
		snap = 65535
	}
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(uint32(snap), layers.LinkTypeRaw); err != nil {
		return 0, 0, fmt.Errorf("pcap header: %w", err)
	}
	flush()
	t := newTap(snap)
	src.SetTap(t)
	defer src.SetTap(nil)
	var timeout <-chan time.Time
	if req.Duration > 0 {
		tm := time.NewTimer(req.Duration)
		defer tm.Stop()
		timeout = tm.C
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var p packet.Packet
	for {
		select {
		case buf := <-t.full:
			parsed := p.Parse(buf.b[:buf.n]) == packet.OK
			if f.match(buf.stage, &p, parsed) {
				// Stamped when the writer takes the packet, microseconds after the worker saw
				// it, so the packet path pays for no clock read.
				ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: buf.n, Length: buf.orig}
				err = pw.WritePacket(ci, buf.b[:buf.n])
				written++
			}
			t.free <- buf
			if err != nil {
				return written, t.dropped.Load(), fmt.Errorf("write pcap: %w", err)
			}
			if req.Count > 0 && written >= req.Count {
				flush()
				return written, t.dropped.Load(), nil
			}
		case <-tick.C:
			flush() // also when nothing is pending: the flush keeps the write deadline ahead
		case <-timeout:
			flush()
			return written, t.dropped.Load(), nil
		case <-done:
			return written, t.dropped.Load(), nil
		}
	}
}
