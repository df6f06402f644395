package tun

import "sync"

// MemDevice is an in-memory Device: Read replays the packets it was loaded with, in a loop, and
// Write only counts. It lets benchmarks drive the worker loop without a kernel.
type MemDevice struct {
	mu      sync.Mutex
	pkts    [][]byte // each includes the virtio-net header when vnet (see MemFrame)
	next    int
	vnet    bool
	Written int // frames written (a UDP super-packet counts once)
	WBytes  int
	Last    []byte // copy of the last frame written (without header)
	closed  bool
	budget  int // packets left to read; <0 unlimited
	// UDPSeg makes the device claim UDP segmentation offload (see USO): Write coalesces.
	UDPSeg bool
	// Keep makes Write keep a copy of every frame written (with its virtio-net header when
	// vnet) in Kept, for tests; MemSegments turns one into what the kernel would forward.
	Keep bool
	Kept [][]byte
	co   coalescer
}

// NewMem returns a device that yields pkts (raw IP packets, or, when vnet, frames as MemFrame
// makes them) round robin. budget bounds the number of packets read before Read returns
// ErrClosed (<0: unlimited).
func NewMem(pkts [][]byte, vnet bool, budget int) *MemDevice {
	return &MemDevice{pkts: pkts, vnet: vnet, budget: budget}
}

func (m *MemDevice) Read(bufs [][]byte, sizes []int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.budget == 0 || len(m.pkts) == 0 {
		return 0, ErrClosed
	}
	hl := 0
	if m.vnet {
		hl = vnetHdrLen
	}
	n := 0
	for n < len(bufs) && m.budget != 0 {
		p := m.pkts[m.next]
		m.next = (m.next + 1) % len(m.pkts)
		if hl == 0 {
			clear(hdrOf(bufs[n]))
		}
		sizes[n] = copy(bufs[n][Offset-hl:], p) - hl
		n++
		if m.budget > 0 {
			m.budget--
		}
	}
	return n, nil
}

func (m *MemDevice) Write(bufs [][]byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	frames := bufs
	if m.USO() {
		frames = m.co.coalesce(bufs)
	}
	hl := 0
	if m.vnet {
		hl = vnetHdrLen
	}
	for _, b := range frames {
		m.WBytes += len(b) - Offset
		if m.Keep {
			m.Kept = append(m.Kept, append([]byte(nil), b[Offset-hl:]...))
		}
	}
	if len(frames) > 0 {
		last := frames[len(frames)-1][Offset:]
		m.Last = append(m.Last[:0], last...)
	}
	m.Written += len(frames)
	return len(bufs), nil
}

func (m *MemDevice) VnetHdr() bool { return m.vnet }

// USO reports whether the device takes UDP super-packets (UDPSeg).
func (m *MemDevice) USO() bool { return m.vnet && m.UDPSeg }

// Coalesced is the number of datagrams written inside super-packets so far.
func (m *MemDevice) Coalesced() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.co.merged
}

func (m *MemDevice) Name() string { return "mem0" }

func (m *MemDevice) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}
