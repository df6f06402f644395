//go:build linux

package tun

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// The SYN prefilter (TUNSETFILTEREBPF): a socket-filter program the kernel runs on every packet
// it hands the device, before the packet takes a place in a queue's ring; a packet for which the
// program returns 0 is dropped there, at the cost of the program run.
//
// Why: a spoofed SYN the SYN proxy answers still costs the new-flow worker a read, a cookie and a
// write (about a CPU for a 100k SYN/s flood on a small node), and that CPU is taken from the
// established flows. Most of a random-source flood never repeats a connection attempt, while a
// real client whose SYN got no answer sends it again after its retransmission timeout (1 s on
// Linux, 3 s on older stacks), from the same address and port. So the program lets connection
// attempts through up to SYNFilterRate per second; beyond that it drops an attempt it has not
// seen recently and remembers it in a bitmap, and lets the repetition through (up to
// SYNFilterRetryRate per second), which the SYN proxy then answers. A flood costs the program
// run per SYN and the workers see at most the two rates; a real client pays one retransmission
// timeout while the flood lasts. (Mitigation appliances call this "first-SYN drop"; the kernel
// has no such knob, its SYN cookies answer every SYN.)
//
// The bitmap has three slots of synMarkBits bits indexed by a keyed hash of the addresses and
// ports; the slot in use changes every synEpoch (2^30 ns, about 1.07 s): an attempt is "seen" if
// its bit is set in the current or the previous slot, so a repetition 1 to 2 epochs later still
// passes; userspace clears the third slot before it comes into use. A set bit of another attempt
// (a hash collision) lets a flood SYN through as a repetition: at 100k dropped SYNs per epoch,
// about 2 % do, within SYNFilterRetryRate.

// tunSetFilterEBPF is TUNSETFILTEREBPF, _IOR('T', 225, int) (include/uapi/linux/if_tun.h).
const tunSetFilterEBPF = 0x800454e1

const (
	// SYNFilterRate is the rate of connection attempts (SYN without ACK) the prefilter passes
	// before it drops attempts it has not seen: above what the gateway opens per second (about
	// 8k connections/s on 2 CPUs, the kernel's NAT 14k/s: issue 14's aim), a fifth of what the
	// SYN proxy answers (about 100k/s on one CPU).
	SYNFilterRate = 20000
	// SYNFilterRetryRate bounds the repeated attempts passed while the prefilter drops: real
	// clients' retransmissions and hash collisions of flood SYNs; a flood that repeats each
	// spoofed SYN is held to this rate as well.
	SYNFilterRetryRate = 10000
	// synWindowShift: the rates are counted per window of 2^27 ns (134 ms).
	synWindowShift = 27
	// synEpochShift: the bitmap slot changes every 2^30 ns (1.07 s).
	synEpochShift = 30
	// synMarkBits is the bitmap's size per slot (2^23 bits, 1 MiB; three slots).
	synMarkBits = 1 << 23
	// synMarkWords is the number of map elements: one per 64 bits, each holding that word of the
	// three slots (24 bytes), so one lookup reads the current and previous slot.
	synMarkWords = synMarkBits / 64
	// synClearInterval is how often userspace checks whether an epoch began (and clears the slot
	// that comes next); far below an epoch.
	synClearInterval = 100 * time.Millisecond
)

// Offsets of the prefilter's state, one array element of 64-bit words, in bytes.
const (
	synStWindow = 8 * iota
	synStFresh
	synStRetry
	synStPassed
	synStFirstDropped
	synStRetryPassed
	synStRetryDropped
	synStSize
)

// SYNFilterStats counts the prefilter's verdicts on connection attempts since it was attached.
type SYNFilterStats struct {
	Passed       uint64 // within SYNFilterRate
	FirstDropped uint64 // dropped and remembered: not seen recently, over the rate
	RetryPassed  uint64 // seen recently, within SYNFilterRetryRate
	RetryDropped uint64 // seen recently, over SYNFilterRetryRate
}

// synFilterParams are the program's constants (tests use small rates and long windows).
type synFilterParams struct {
	freshPerWindow, retryPerWindow int32
	windowShift, epochShift        int32
	seed                           int64
}

func defaultSYNFilterParams() (synFilterParams, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return synFilterParams{}, err
	}
	perWindow := func(rate int) int32 { return int32(rate * (1 << synWindowShift) / int(time.Second)) }
	return synFilterParams{
		freshPerWindow: perWindow(SYNFilterRate), retryPerWindow: perWindow(SYNFilterRetryRate),
		windowShift: synWindowShift, epochShift: synEpochShift, seed: int64(binary.LittleEndian.Uint64(b[:])),
	}, nil
}

// SYNFilter is an attached prefilter: its maps and the goroutine that clears the bitmap's next
// slot. Stats may be called from any goroutine.
type SYNFilter struct {
	prog         *ebpf.Program
	state, marks *ebpf.Map
	mem          *ebpf.Memory
	epochShift   int32
	stop         chan struct{}
	done         sync.WaitGroup
}

// loadSYNFilter creates the maps and loads the program.
func loadSYNFilter(p synFilterParams) (*SYNFilter, error) {
	state, err := ebpf.NewMap(&ebpf.MapSpec{Name: "edgegate_synst", Type: ebpf.Array, KeySize: 4, ValueSize: synStSize, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("SYN prefilter state map: %w", err)
	}
	marks, err := ebpf.NewMap(&ebpf.MapSpec{Name: "edgegate_synmk", Type: ebpf.Array, KeySize: 4, ValueSize: 24,
		MaxEntries: synMarkWords, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		state.Close()
		return nil, fmt.Errorf("SYN prefilter bitmap: %w", err)
	}
	f := &SYNFilter{state: state, marks: marks, epochShift: p.epochShift, stop: make(chan struct{})}
	if f.mem, err = marks.Memory(); err == nil {
		f.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "edgegate_synflt", Type: ebpf.SocketFilter,
			Instructions: synFilterProgram(p, state.FD(), marks.FD()), License: "Apache-2.0"})
	}
	if err != nil {
		f.closeMaps()
		return nil, fmt.Errorf("load SYN prefilter: %w", err)
	}
	return f, nil
}

func (f *SYNFilter) closeMaps() {
	f.state.Close()
	f.marks.Close()
}

// FilterSYNs loads the prefilter and attaches it to the device d belongs to (replacing a program
// an earlier process left on a persistent device), and starts clearing its bitmap. Close stops
// that; the device keeps the program until Unfilter or its removal.
func FilterSYNs(d Device) (*SYNFilter, error) {
	p, err := defaultSYNFilterParams()
	if err != nil {
		return nil, err
	}
	f, err := loadSYNFilter(p)
	if err != nil {
		return nil, err
	}
	if err := setFilter(d, int32(f.prog.FD())); err != nil {
		f.prog.Close()
		f.closeMaps()
		return nil, err
	}
	f.done.Add(1)
	go f.clearLoop()
	return f, nil
}

// Unfilter detaches any prefilter from the device d belongs to.
func Unfilter(d Device) error { return setFilter(d, -1) }

func setFilter(d Device, progFD int32) error {
	fd, ok := d.(*fileDevice)
	if !ok {
		return fmt.Errorf("tun: %T cannot be filtered", d)
	}
	var serr error
	err := fd.rc.Control(func(f uintptr) {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f, tunSetFilterEBPF, uintptr(unsafe.Pointer(&progFD))); e != 0 {
			serr = e
		}
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("tun %s: TUNSETFILTEREBPF: %w", fd.name, err)
	}
	return nil
}

// Close stops clearing the bitmap and releases this process's references.
func (f *SYNFilter) Close() {
	close(f.stop)
	f.done.Wait()
	f.prog.Close()
	f.closeMaps()
}

// Stats reads the prefilter's counters.
func (f *SYNFilter) Stats() SYNFilterStats {
	var v [synStSize]byte
	if err := f.state.Lookup(uint32(0), &v); err != nil {
		return SYNFilterStats{}
	}
	w := func(off int) uint64 { return binary.NativeEndian.Uint64(v[off:]) }
	return SYNFilterStats{Passed: w(synStPassed), FirstDropped: w(synStFirstDropped),
		RetryPassed: w(synStRetryPassed), RetryDropped: w(synStRetryDropped)}
}

// clearLoop clears, once per epoch, the slot the next epoch writes (the one two epochs old).
func (f *SYNFilter) clearLoop() {
	defer f.done.Done()
	t := time.NewTicker(synClearInterval)
	defer t.Stop()
	last := int64(-1)
	for {
		if e := monotonicNs() >> f.epochShift; e != last {
			f.clearSlot(int((e + 1) % 3))
			last = e
		}
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

// clearSlot zeroes one slot of every bitmap word (8 bytes at slot*8 of each 24-byte element).
func (f *SYNFilter) clearSlot(slot int) {
	var zero [8]byte
	for i := int64(0); i < synMarkWords; i++ {
		f.mem.WriteAt(zero[:], i*24+int64(slot)*8)
	}
}

// monotonicNs is CLOCK_MONOTONIC, the clock of the program's bpf_ktime_get_ns.
func monotonicNs() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// synFilterProgram builds the prefilter for the maps stateFD and marksFD. Register use: R6 the
// context (LD_ABS/LD_IND need it), R7 the IPv4 header length then the time, R8 the hash then
// the state's address, R9 the hash multiplier then the attempt's hash (R6-R9 survive helper
// calls). A packet that is not a connection attempt, or a map lookup that fails, passes.
func synFilterProgram(p synFilterParams, stateFD, marksFD int) asm.Instructions {
	const mul = -7046029254386353131 // 0x9e3779b97f4a7c15, the 64-bit golden ratio
	mix := func(load asm.Instruction) asm.Instructions {
		return asm.Instructions{load, asm.Xor.Reg(asm.R8, asm.R0), asm.Mul.Reg(asm.R8, asm.R9)}
	}
	p4 := append(asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}, synClassifier("pass", "syn4", "syn6")...)
	p4 = append(p4, asm.LoadImm(asm.R8, p.seed, asm.DWord).WithSymbol("syn4"), asm.LoadImm(asm.R9, mul, asm.DWord))
	p4 = append(p4, mix(asm.LoadAbs(12, asm.Word))...)
	p4 = append(p4, mix(asm.LoadAbs(16, asm.Word))...)
	p4 = append(p4, mix(asm.LoadInd(asm.R0, asm.R7, 0, asm.Word))...) // the ports
	p4 = append(p4, asm.Ja.Label("hash"))
	p6 := asm.Instructions{asm.LoadImm(asm.R8, p.seed, asm.DWord).WithSymbol("syn6"), asm.LoadImm(asm.R9, mul, asm.DWord)}
	for off := int32(8); off <= 40; off += 4 { // the addresses, then the ports
		p6 = append(p6, mix(asm.LoadAbs(off, asm.Word))...)
	}
	prog := slices.Concat(p4, p6, asm.Instructions{
		asm.Mov.Reg(asm.R0, asm.R8).WithSymbol("hash"),
		asm.RSh.Imm(asm.R0, 32),
		asm.Xor.Reg(asm.R8, asm.R0),
		asm.Mul.Reg(asm.R8, asm.R9),
		asm.Mov.Reg(asm.R0, asm.R8),
		asm.RSh.Imm(asm.R0, 29),
		asm.Xor.Reg(asm.R8, asm.R0),
		asm.Mov.Reg(asm.R9, asm.R8),
		asm.FnKtimeGetNs.Call(),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, stateFD),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Reg(asm.R8, asm.R0),
		// A new window restarts both counts (two CPUs may both restart it: harmless).
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.RSh.Imm(asm.R1, p.windowShift),
		asm.LoadMem(asm.R2, asm.R8, synStWindow, asm.DWord),
		asm.JEq.Reg(asm.R1, asm.R2, "fresh"),
		asm.StoreMem(asm.R8, synStWindow, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.R8, synStFresh, asm.R1, asm.DWord),
		asm.StoreMem(asm.R8, synStRetry, asm.R1, asm.DWord),
	},
		synCountAbove("fresh", synStFresh, p.freshPerWindow, "over"),
		synCount("", synStPassed),
		asm.Instructions{asm.Ja.Label("pass")},
		synMarkProgram(p, marksFD),
		synCountAbove("retry", synStRetry, p.retryPerWindow, "retrydrop"),
		synCount("", synStRetryPassed),
		asm.Instructions{asm.Ja.Label("pass")},
		synCount("retrydrop", synStRetryDropped),
		asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
			asm.LoadMem(asm.R0, asm.R6, 0, asm.Word).WithSymbol("pass"), // __sk_buff.len: keep it all
			asm.Return(),
		},
	)
	return prog
}

// synMarkProgram continues the prefilter at "over" (R7 the time, R8 the state, R9 the hash): it
// looks the attempt's bit up in the current and previous slot; seen, it jumps to "retry";
// otherwise it sets the bit in the current slot and drops the packet.
func synMarkProgram(p synFilterParams, marksFD int) asm.Instructions {
	return slices.Concat(asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R9).WithSymbol("over"),
		asm.And.Imm(asm.R1, synMarkBits-1),
		asm.RSh.Imm(asm.R1, 6),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.LoadMapPtr(asm.R1, marksFD),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Reg(asm.R3, asm.R9),
		asm.And.Imm(asm.R3, 63),
		asm.Mov.Imm(asm.R4, 1),
		asm.LSh.Reg(asm.R4, asm.R3), // the attempt's bit in its word
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.RSh.Imm(asm.R1, p.epochShift),
		asm.Mod.Imm(asm.R1, 3),
		asm.JGT.Imm(asm.R1, 2, "pass"), // bounds the offset for the verifier
		asm.LSh.Imm(asm.R1, 3),         // the current slot's word
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.Add.Imm(asm.R2, 16),
		asm.Mod.Imm(asm.R2, 24), // the previous slot's word
		asm.JGT.Imm(asm.R2, 16, "pass"),
		asm.Mov.Reg(asm.R5, asm.R0),
		asm.Add.Reg(asm.R5, asm.R1),
		asm.Add.Reg(asm.R0, asm.R2),
		asm.LoadMem(asm.R3, asm.R0, 0, asm.DWord),
		asm.LoadMem(asm.R2, asm.R5, 0, asm.DWord),
		asm.Or.Reg(asm.R3, asm.R2),
		asm.And.Reg(asm.R3, asm.R4),
		asm.JNE.Imm(asm.R3, 0, "retry"),
		// Set the bit: adding it is OR-ing it, as it was clear (only the same attempt racing on
		// another CPU could carry into the next bit; see synCountAbove for the atomics used).
		asm.AddAtomic.Mem(asm.R5, asm.R4, asm.DWord, 0),
	}, synCount("", synStFirstDropped), asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()})
}

// synCountAbove adds one to the state's counter at off (R8 the state), labelled sym, and jumps
// to above when the count then exceeds limit. The add is atomic, the read that follows is not
// (two CPUs may both read the count past the limit: one more attempt counted as over it). Only
// the plain atomic add is used: cilium/ebpf v0.22.0 encodes the immediate of the other atomic
// operations (fetch, or) as 0, which the kernel runs as a plain add.
func synCountAbove(sym string, off int16, limit int32, above string) asm.Instructions {
	return append(synCount(sym, off),
		asm.LoadMem(asm.R1, asm.R8, off, asm.DWord),
		asm.JGT.Imm(asm.R1, limit, above))
}

// synCount adds one to the state's counter at off (R8 the state), labelled sym if not empty.
func synCount(sym string, off int16) asm.Instructions {
	first := asm.Mov.Imm(asm.R1, 1)
	if sym != "" {
		first = first.WithSymbol(sym)
	}
	return asm.Instructions{first, asm.AddAtomic.Mem(asm.R8, asm.R1, asm.DWord, off)}
}
