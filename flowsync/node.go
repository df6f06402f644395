package flowsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgegate/edgegate/conntrack"
)

// Timing and bounds of the sender and the receiver.
const (
	// FlushInterval is how often the sender drains the event queue into datagrams: a flow
	// reaches the peers about this long after its first packet (plus the path's delay).
	FlushInterval = 2 * time.Millisecond
	// MaxDatagramsPerSec bounds what a node sends (all peers together, walks included) and,
	// per peer, what it accepts: MaxRecords × this many flow events per second.
	MaxDatagramsPerSec = 20000
	// RefreshInterval is how often a node sends its live flows again to every peer, so their
	// copies, which see no traffic while the flow runs elsewhere, do not time out, and a lost
	// datagram is repaired. Timeouts shorter than twice this are not covered.
	RefreshInterval = 10 * time.Second
	// HelloInterval is how often a node with nothing to send sends an empty datagram, so its
	// peers learn of its (re)start, and dump their flows to it, within this time.
	HelloInterval = time.Second
	// PeerShareDiv bounds the flows one peer may install: at most the table's capacity divided
	// by this, so a peer can never fill the table alone.
	PeerShareDiv = 2
	// MaxNodes is the highest node index + 1 (config.MaxClusterNodes).
	MaxNodes = 64
)

// Resolver gives the local labels of a received flow: the service id and the backend's
// live-flow counter for a service flow (ok false: this node has no such service, the record is
// dropped), nothing for other kinds.
type Resolver func(kind uint8, t *[2]conntrack.Tuple) (service uint32, load *atomic.Int64, ok bool)

// Config configures a Node.
type Config struct {
	Index   int            // this node's index (0..MaxNodes-1)
	Listen  netip.AddrPort // UDP address to receive on
	Peers   []netip.AddrPort
	Key     []byte // at least MinKeyLen bytes
	Table   *conntrack.Table
	Resolve Resolver
	Log     *slog.Logger
}

// Node sends this node's flows to its peers and installs theirs.
type Node struct {
	cfg   Config
	log   *slog.Logger
	conn  *net.UDPConn
	q     *queue
	peers map[netip.Addr]bool
	seq   atomic.Uint64
	epoch uint64
	send  limiter // MaxDatagramsPerSec, shared by the flusher and the walks
	stats stats

	installed [MaxNodes]atomic.Int64 // live flows installed per origin
	dumping   [MaxNodes]atomic.Bool  // a dump to that peer is running
	done      chan struct{}
	wg        sync.WaitGroup
}

// LoadKey reads the pre-shared key file: at least MinKeyLen bytes (surrounding whitespace, e.g.
// a final newline, is not part of the key).
func LoadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cluster key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyLen+1))
	if err != nil {
		return nil, fmt.Errorf("cluster key: %w", err)
	}
	if len(b) > MaxKeyLen {
		return nil, fmt.Errorf("cluster key %s: larger than %d bytes", path, MaxKeyLen)
	}
	b = []byte(string(trimSpace(b)))
	if len(b) < MinKeyLen {
		return nil, fmt.Errorf("cluster key %s: %d bytes, want at least %d (e.g. head -c 32 /dev/urandom | base64)", path, len(b), MinKeyLen)
	}
	return b, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// Start binds the listen address and starts sending and receiving.
func Start(cfg Config) (*Node, error) {
	if len(cfg.Key) < MinKeyLen {
		return nil, fmt.Errorf("flowsync: key of %d bytes, want at least %d", len(cfg.Key), MinKeyLen)
	}
	if cfg.Index < 0 || cfg.Index >= MaxNodes {
		return nil, fmt.Errorf("flowsync: node index %d not in 0..%d", cfg.Index, MaxNodes-1)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	// SO_REUSEPORT: a hand-over successor (run --takeover) binds the address while its
	// predecessor still holds it; the peers dump their flows to the successor's new epoch.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", cfg.Listen.String())
	if err != nil {
		return nil, fmt.Errorf("flowsync: listen %s: %w", cfg.Listen, err)
	}
	conn := pc.(*net.UDPConn)
	n := &Node{cfg: cfg, log: cfg.Log, conn: conn, q: newQueue(), peers: map[netip.Addr]bool{},
		epoch: uint64(time.Now().UnixNano()), done: make(chan struct{})}
	n.send.init(MaxDatagramsPerSec)
	for _, p := range cfg.Peers {
		n.peers[p.Addr().Unmap()] = true
	}
	n.wg.Add(3)
	go n.sendLoop()
	go n.recvLoop()
	go n.refreshLoop()
	return n, nil
}

// Close stops the node (queued events are dropped) and waits for its goroutines.
func (n *Node) Close() error {
	select {
	case <-n.done:
		return nil
	default:
	}
	close(n.done)
	err := n.conn.Close()
	n.wg.Wait()
	return err
}

// Addr is the bound UDP address.
func (n *Node) Addr() netip.AddrPort { return n.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Event is the conntrack table's OnEvent hook: it queues this node's flows for the peers and
// counts removed peer flows. Lock-free, allocation-free; a full queue drops the event (counted).
func (n *Node) Event(e *conntrack.Entry, ev conntrack.Event) {
	if e.Origin != 0 {
		if ev == conntrack.EventDeleted || ev == conntrack.EventGone {
			n.installed[(e.Origin-1)%MaxNodes].Add(-1)
		}
		return
	}
	if e.Kind == 0 || ev == conntrack.EventGone {
		return // expiry and eviction happen on every node by themselves
	}
	if !n.q.push(e, ev) {
		n.stats.queueDrops.Add(1)
	}
}
