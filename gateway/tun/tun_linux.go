//go:build linux

package tun

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config says how to open the device.
type Config struct {
	Name       string
	MTU        int
	Queues     int  // >1 opens a multi-queue device: one Device per queue
	Offload    bool // IFF_VNET_HDR + TSO/USO/checksum offloads
	TxQueueLen int
	// Persist marks the device IFF_PERSIST: it outlives the process (a crash, kill -9) with
	// its routes, and the next Open of the same name reattaches to it. Close leaves it in place;
	// Remove deletes it.
	Persist bool
}

// TUN offload bits (include/uapi/linux/if_tun.h).
const (
	tunFCsum = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04
	tunFUSO4 = 0x20
	tunFUSO6 = 0x40
)

// Open creates the TUN device with cfg.Queues queues, or attaches them to the persistent device of
// that name left by an earlier process, configures the link (MTU, txqueuelen, up) and returns one
// Device per queue. Attaching needs the same queue mode (single or multi-queue) and offload
// setting as the device was created with; the kernel refuses a mismatch (EINVAL).
func Open(cfg Config) ([]Device, error) {
	if cfg.Queues < 1 {
		cfg.Queues = 1
	}
	devs := make([]Device, 0, cfg.Queues)
	closeAll := func() {
		for _, d := range devs {
			d.Close()
		}
	}
	name := cfg.Name
	for q := 0; q < cfg.Queues; q++ {
		var d Device
		var err error
		if cfg.Offload {
			d, err = openVnet(name, cfg.Queues > 1)
		} else {
			d, err = openWater(name, cfg.Queues > 1, cfg.Persist)
		}
		if err != nil {
			closeAll()
			return nil, err
		}
		name = d.Name()
		devs = append(devs, d)
	}
	if cfg.Persist {
		if err := SetPersist(devs[0], true); err != nil {
			closeAll()
			return nil, err
		}
	}
	if err := configureLink(name, cfg); err != nil {
		closeAll()
		return nil, err
	}
	return devs, nil
}

// Exists reports whether a network device called name exists (a persistent TUN left by an
// earlier process, before Open reattaches to it).
func Exists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// Delete deletes the TUN device name (a persistent one that cannot be reattached); it refuses
// other kinds of device.
func Delete(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tun %s: find link: %w", name, err)
	}
	if link.Type() != "tuntap" {
		return fmt.Errorf("tun %s: a %s device, not a TUN: not deleted", name, link.Type())
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("tun %s: delete: %w", name, err)
	}
	return nil
}

// SetPersist sets or clears IFF_PERSIST on the device d is a queue of (TUNSETPERSIST). A
// device that is not persistent disappears, with its routes, when its last queue is closed.
func SetPersist(d Device, on bool) error {
	fd, ok := d.(*fileDevice)
	if !ok {
		return fmt.Errorf("tun: %T cannot persist", d)
	}
	v := 0
	if on {
		v = 1
	}
	var serr error
	err := fd.rc.Control(func(f uintptr) { serr = unix.IoctlSetInt(int(f), unix.TUNSETPERSIST, v) })
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("tun %s: TUNSETPERSIST %d: %w", fd.name, v, err)
	}
	return nil
}

// Remove clears IFF_PERSIST and closes every queue, so the kernel deletes the device (and
// its routes); the clean exit.
func Remove(devs []Device) error {
	var err error
	if len(devs) > 0 {
		err = SetPersist(devs[0], false)
	}
	for _, d := range devs {
		d.Close()
	}
	return err
}

func openWater(name string, multi, persist bool) (Device, error) {
	ifce, err := water.New(water.Config{
		DeviceType:             water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name, MultiQueue: multi, Persist: persist},
	})
	if err != nil {
		return nil, fmt.Errorf("tun %s: open: %w", name, err)
	}
	f, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return nil, fmt.Errorf("tun %s: water returned %T, want *os.File", name, ifce.ReadWriteCloser)
	}
	return newFileDevice(f, ifce.Name(), false)
}

// openVnet opens /dev/net/tun itself: water cannot pass IFF_VNET_HDR, and the flag can only be set by
// the first TUNSETIFF of a device.
func openVnet(name string, multi bool) (Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("tun %s: open /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun %s: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun %s: TUNSETIFF: %w", name, err)
	}
	hdrSize := int32(vnetHdrLen)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETVNETHDRSZ, uintptr(unsafe.Pointer(&hdrSize))); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("tun %s: TUNSETVNETHDRSZ: %w", name, e)
	}
	// USO needs Linux 6.2; fall back to TCP offloads alone on older kernels.
	offloads := []int{tunFCsum | tunFTSO4 | tunFTSO6 | tunFUSO4 | tunFUSO6, tunFCsum | tunFTSO4 | tunFTSO6}
	var oerr error
	uso := false
	for i, o := range offloads {
		if oerr = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, o); oerr == nil {
			uso = i == 0
			break
		}
	}
	if oerr != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun %s: TUNSETOFFLOAD: %w", name, oerr)
	}
	got := ifr.Name()
	d, err := newFileDevice(os.NewFile(uintptr(fd), "/dev/net/tun"), got, true)
	if err != nil {
		return nil, err
	}
	d.uso = uso
	return d, nil
}

func configureLink(name string, cfg Config) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tun %s: find link: %w", name, err)
	}
	if cfg.MTU > 0 {
		if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
			return fmt.Errorf("tun %s: set mtu %d: %w", name, cfg.MTU, err)
		}
	}
	if cfg.TxQueueLen > 0 {
		if err := netlink.LinkSetTxQLen(link, cfg.TxQueueLen); err != nil {
			return fmt.Errorf("tun %s: set txqueuelen %d: %w", name, cfg.TxQueueLen, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tun %s: set up: %w", name, err)
	}
	return nil
}

// Dup returns a new descriptor (close-on-exec) for d's queue, to hand it to another process:
// the queue stays attached while any descriptor of it is open.
func Dup(d Device) (int, error) {
	fd, ok := d.(*fileDevice)
	if !ok {
		return -1, fmt.Errorf("tun: %T has no descriptor", d)
	}
	nfd, serr := -1, error(nil)
	err := fd.rc.Control(func(f uintptr) { nfd, serr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) })
	if err == nil {
		err = serr
	}
	if err != nil {
		return -1, fmt.Errorf("tun %s: dup: %w", fd.name, err)
	}
	return nfd, nil
}

// USO reports whether d accepts UDP super-packets (its offload setting, for FromFD).
func USO(d Device) bool {
	u, ok := d.(USODevice)
	return ok && u.USO()
}

// FromFD makes a Device of a queue descriptor received from another process (hand-over),
// opened with the given device name, virtio-net header and USO settings. The Device owns fd.
func FromFD(fd int, name string, vnet, uso bool) (Device, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun %s: set non-blocking: %w", name, err)
	}
	d, err := newFileDevice(os.NewFile(uintptr(fd), "/dev/net/tun"), name, vnet)
	if err != nil {
		return nil, err
	}
	d.uso = uso
	return d, nil
}
