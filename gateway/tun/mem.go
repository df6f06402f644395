package tun

import "sync"

// MemDevice is an in-memory Device: Read replays the packets it was loaded with, in a loop, and
// Write only counts. It lets benchmarks drive the worker loop without a kernel.
type MemDevice struct {
	mu      sync.Mutex
	pkts    [][]byte // each includes the virtio-net header when vnet
	next    int
	vnet    bool
	Written int // packets written
	WBytes  int
	Last    []byte // copy of the last packet written (without header)
	closed  bool
	budget  int // packets left to read; <0 unlimited
	// UDPSeg makes the device claim UDP segmentation offload (see USO).
	UDPSeg bool
	// Keep makes Write keep a copy of every packet written (with its virtio-net header when
	// vnet) in Kept, for tests.
	Keep bool
	Kept [][]byte
}

// NewMem returns a device that yields pkts (raw IP packets, or header+packet when vnet) round robin.
// budget bounds the number of packets read before Read returns ErrClosed (<0: unlimited).
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
		hl = VnetHdrLen
	}
	n := 0
	for n < len(bufs) && m.budget != 0 {
		p := m.pkts[m.next]
		m.next = (m.next + 1) % len(m.pkts)
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
	hl := 0
	if m.vnet {
		hl = VnetHdrLen
	}
	for _, b := range bufs {
		m.WBytes += len(b) - Offset
		if m.Keep {
			m.Kept = append(m.Kept, append([]byte(nil), b[Offset-hl:]...))
		}
	}
	if len(bufs) > 0 {
		last := bufs[len(bufs)-1][Offset:]
		m.Last = append(m.Last[:0], last...)
	}
	m.Written += len(bufs)
	return len(bufs), nil
}

func (m *MemDevice) VnetHdr() bool { return m.vnet }

// USO reports whether the device takes UDP super-packets (UDPSeg).
func (m *MemDevice) USO() bool    { return m.vnet && m.UDPSeg }
func (m *MemDevice) Name() string { return "mem0" }
func (m *MemDevice) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}
