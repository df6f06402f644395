//go:build linux

package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/edgegate/edgegate/config"
)

// Limits of conntrack.checkpoint.
const (
	// MaxCheckpointBytes bounds the checkpoint file read at start (about 300 bytes a flow: the
	// largest table, config's 16 Mi entries at most, is not expected; a bigger file is refused).
	MaxCheckpointBytes = 1 << 30
	// checkpointIdlePoll is how often the writer looks for a checkpoint a reload enabled.
	checkpointIdlePoll = time.Second
)

// checkpointLoop writes the checkpoint every conntrack.checkpoint.interval (read again after
// each write: a reload may change, enable or disable it) until the gateway stops. It pauses
// while the gateway is frozen for a hand-over: the successor writes from then on.
func (g *Gateway) checkpointLoop() {
	defer g.wg.Done()
	for {
		cp := g.cfg.Load().Conntrack.Checkpoint
		wait := checkpointIdlePoll
		if cp != nil {
			wait = time.Duration(cp.Interval)
		}
		t := time.NewTimer(wait)
		select {
		case <-g.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if cp = g.cfg.Load().Conntrack.Checkpoint; cp == nil || g.paused.Load() {
			continue
		}
		start := time.Now()
		if err := writeCheckpoint(cp.Path, g.snapshot()); err != nil {
			g.log.Warn("conntrack checkpoint not written", "path", cp.Path, "err", err)
			continue
		}
		g.log.Debug("conntrack checkpoint written", "path", cp.Path, "took", time.Since(start))
	}
}

// snapshot is the state a checkpoint holds: the hand-over snapshot without descriptors.
func (g *Gateway) snapshot() *Handover {
	now := time.Now().UnixNano()
	return &Handover{Version: HandoverVersion, Flows: g.saveFlows(), Services: g.saveServices(now)}
}

// writeCheckpoint writes h to path atomically: a temporary file in the same directory (mode
// 0600), synced, renamed over path, and the directory synced, so a crash leaves the old file or
// the new one, never a part.
func writeCheckpoint(path string, h *Handover) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if err = json.NewEncoder(f).Encode(h); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// readCheckpoint reads a checkpoint; a missing file is (nil, nil).
func readCheckpoint(path string) (*Handover, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > MaxCheckpointBytes {
		return nil, fmt.Errorf("checkpoint %s: %d bytes, at most %d", path, fi.Size(), MaxCheckpointBytes)
	}
	var h Handover
	if err := json.NewDecoder(f).Decode(&h); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if h.Version < MinHandoverVersion || h.Version > HandoverVersion {
		return nil, fmt.Errorf("checkpoint %s: version %d, this build reads %d to %d", path, h.Version, MinHandoverVersion, HandoverVersion)
	}
	return &h, nil
}

// loadCheckpoint restores the flows of the checkpoint, if configured and present (a start that
// is not a hand-over, before the workers run). A checkpoint that cannot be read is reported and
// the start goes on without it.
func (g *Gateway) loadCheckpoint(cfg *config.Config) {
	cp := cfg.Conntrack.Checkpoint
	if cp == nil {
		return
	}
	h, err := readCheckpoint(cp.Path)
	if err != nil {
		g.log.Warn("conntrack checkpoint not restored", "err", err)
		return
	}
	if h == nil {
		return
	}
	if err := g.restoreState(h, "flows restored from the checkpoint"); err != nil {
		g.log.Warn("restoring the checkpoint", "err", err)
	}
}

// removeCheckpoint deletes the checkpoint at a clean exit: the flows end with the TUN, and a
// later start must not restore them.
func (g *Gateway) removeCheckpoint() {
	if cp := g.cfg.Load().Conntrack.Checkpoint; cp != nil {
		if err := os.Remove(cp.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			g.log.Warn("removing the conntrack checkpoint", "err", err)
		}
	}
}
