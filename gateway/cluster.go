package gateway

import (
	"sync/atomic"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/nat"
)

// FlowSync receives the flow table's events (conntrack.Config.OnEvent) for a cluster's flow
// sync (flowsync.Node.Event): it runs on the packet path and must not block.
type FlowSync func(*conntrack.Entry, conntrack.Event)

// SetFlowSync installs (nil: removes) the receiver of flow events.
func (g *Gateway) SetFlowSync(f FlowSync) {
	if f == nil {
		g.sync.Store(nil)
		return
	}
	g.sync.Store(&f)
}

func (g *Gateway) flowEvent(e *conntrack.Entry, ev conntrack.Event) {
	if f := g.sync.Load(); f != nil {
		(*f)(e, ev)
	}
}

// PeerLabels gives a flow received from a cluster peer this node's labels: for a service flow
// the service id and the backend's live-flow counter, found by the service address and port
// the client opened (ok false: no such service here, e.g. a node port on the peer's own
// address); egress flows have none.
func (g *Gateway) PeerLabels(kind uint8, t *[2]conntrack.Tuple) (service uint32, load *atomic.Int64, ok bool) {
	switch kind {
	case nat.KindEgress:
		return 0, nil, true
	case nat.KindService:
	default:
		return 0, nil, false
	}
	r := g.rules.Load()
	if r == nil {
		return 0, nil, false
	}
	o := &t[conntrack.Original]
	tg, ok := r.ServiceAt(o.Proto, o.DstAddr(), o.DstPort)
	if !ok {
		return 0, nil, false
	}
	id, load, _ := g.builder.restoreLabels(tg.Svc.Name, t[conntrack.Reply].SrcAddr())
	return id, load, true
}
