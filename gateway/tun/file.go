package tun

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileDevice batches reads and writes over a non-blocking TUN file descriptor through the runtime
// poller: one Read parks until the fd is readable, then drains it until EAGAIN or the batch is full.
type fileDevice struct {
	f      *os.File
	rc     syscall.RawConn
	name   string
	vnet   bool
	owned  bool // Close also closes f
	closed atomic.Bool
	uso    bool // UDP segmentation offload accepted: writes may carry GSO_UDP_L4 super-packets
	co     coalescer
}

func newFileDevice(f *os.File, name string, vnet bool) (*fileDevice, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("tun %s: raw conn: %w", name, err)
	}
	return &fileDevice{f: f, rc: rc, name: name, vnet: vnet, owned: true}, nil
}

func (d *fileDevice) hdr() int {
	if d.vnet {
		return vnetHdrLen
	}
	return 0
}

func (d *fileDevice) Read(bufs [][]byte, sizes []int) (int, error) {
	n, hl := 0, d.hdr()
	var rerr error
	err := d.rc.Read(func(fd uintptr) bool {
		for n < len(bufs) {
			m, err := unix.Read(int(fd), bufs[n][Offset-hl:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				if err != unix.EAGAIN {
					rerr = err
				}
				break
			}
			if m < hl {
				continue // runt read: nothing usable
			}
			if hl == 0 {
				clear(hdrOf(bufs[n])) // no offload state
			}
			sizes[n] = m - hl
			n++
		}
		return n > 0 || rerr != nil
	})
	if n > 0 {
		return n, nil
	}
	if rerr != nil {
		err = rerr
	}
	if d.closed.Load() || errors.Is(err, os.ErrClosed) {
		return 0, ErrClosed
	}
	if err != nil {
		return 0, fmt.Errorf("tun %s: read: %w", d.name, err)
	}
	return 0, nil
}

func (d *fileDevice) Write(bufs [][]byte) (int, error) {
	frames, counts := bufs, []int(nil)
	if d.uso {
		frames = d.co.coalesce(bufs)
		counts = d.co.counts
	}
	n, hl := 0, d.hdr()
	sent, failed := 0, 0 // packets (datagrams of a super-packet counted each)
	var werr error
	err := d.rc.Write(func(fd uintptr) bool {
		for n < len(frames) {
			_, err := unix.Write(int(fd), frames[n][Offset-hl:])
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return false // wait for room
			}
			if err != nil {
				// A packet the kernel refuses (EINVAL for a bad GSO header, EIO) must not stall the
				// batch: remember the first error and go on.
				if werr == nil {
					werr = err
				}
				failed += packetsIn(counts, n)
			}
			sent += packetsIn(counts, n)
			n++
		}
		return true
	})
	n = sent - failed
	if d.closed.Load() || errors.Is(err, os.ErrClosed) {
		return n, ErrClosed
	}
	if err != nil {
		return n, fmt.Errorf("tun %s: write: %w", d.name, err)
	}
	if werr != nil {
		return n, fmt.Errorf("tun %s: write: %w", d.name, werr)
	}
	return n, nil
}

// packetsIn is the number of packets in frame i: counts[i], or 1 without coalescing.
func packetsIn(counts []int, i int) int {
	if counts == nil {
		return 1
	}
	return counts[i]
}

func (d *fileDevice) VnetHdr() bool { return d.vnet }

// USO reports whether the kernel takes UDP super-packets (GSOUDPL4) on write.
func (d *fileDevice) USO() bool { return d.uso }

// Coalesced is the number of datagrams written inside super-packets so far.
func (d *fileDevice) Coalesced() uint64 { return d.co.merged }

func (d *fileDevice) Name() string { return d.name }
func (d *fileDevice) Close() error {
	d.closed.Store(true)
	if d.owned {
		return d.f.Close()
	}
	return nil
}
