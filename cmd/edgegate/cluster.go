package main

import (
	"fmt"
	"reflect"

	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/flowsync"
)

// The daemon's cluster flow sync: started with the data path when the config has a cluster
// section (a node refuses to start without a readable key), stopped after it.

// clusterKey reads cluster.key_file (nil without a cluster section).
func clusterKey(cfg *config.Config) ([]byte, error) {
	if cfg.Cluster == nil {
		return nil, nil
	}
	return flowsync.LoadKey(cfg.Cluster.KeyFile)
}

// startCluster starts the flow sync over the running gateway's flow table.
func (d *daemon) startCluster(cfg *config.Config, key []byte) error {
	c := cfg.Cluster
	if c == nil {
		return nil
	}
	n, err := flowsync.Start(flowsync.Config{Index: c.NodeIndex, Listen: c.Listen, Peers: c.Peers, Key: key,
		Table: d.g.CT, Resolve: d.g.PeerLabels, Log: d.log})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	d.flows = n
	d.g.SetFlowSync(n.Event)
	d.reg.MustRegister(n)
	d.log.Info("cluster flow sync started", "node_index", c.NodeIndex, "listen", c.Listen, "peers", len(c.Peers))
	return nil
}

// stopCluster stops the flow sync.
func (d *daemon) stopCluster() {
	if d.flows == nil {
		return
	}
	d.g.SetFlowSync(nil)
	d.flows.Close()
	d.flows = nil
}

// clusterReloaded warns about cluster keys a reload cannot change (hash_seed and the port slice
// do apply: the rules are rebuilt from them).
func (d *daemon) clusterReloaded(next *config.Config) {
	cur := d.g.Config().Cluster
	same := func(a, b *config.Cluster) bool {
		if a == nil || b == nil {
			return a == b
		}
		x, y := *a, *b
		x.HashSeed, y.HashSeed = 0, 0
		return reflect.DeepEqual(x, y)
	}
	if !same(cur, next.Cluster) {
		d.log.Warn("cluster node_index, listen, peers and key_file changes take effect at the next start")
	}
}
