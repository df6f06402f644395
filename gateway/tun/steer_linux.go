//go:build linux

package tun

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/edgegate/edgegate/packet"
	"golang.org/x/sys/unix"
)

// Steering of a multi-queue device (TUNSETSTEERINGEBPF): the kernel runs a socket-filter program
// on every packet it hands the device and queues the packet on the queue the program returns
// (modulo the number of queues). edgegate's program sends TCP connection attempts (SYN without
// ACK, RST, FIN) to the last queue and everything else to the others by the packet's flow hash,
// so a SYN flood fills only the new-flow queue's ring and established flows never wait behind it
// or are dropped with it (the kernel's default picks queues by flow hash alone).

// tunSetSteeringEBPF is TUNSETSTEERINGEBPF, _IOR('T', 224, int) (include/uapi/linux/if_tun.h;
// not in golang.org/x/sys/unix).
const tunSetSteeringEBPF = 0x800454e0

// Protocol numbers and TCP flags as the program compares them.
const (
	protoTCP     = int32(packet.ProtoTCP)
	protoUDP     = int32(packet.ProtoUDP)
	tcpConnFlags = int32(packet.TCPConnFlags) // a connection attempt has SYN alone among them
	tcpSyn       = int32(packet.TCPSyn)
)

// SYNQueue is the queue connection attempts are steered to on a device of n queues (n >= 2).
func SYNQueue(n int) int { return n - 1 }

// steeringProgram returns the program for a device of queues queues (>= 2). It reads the packet
// with LD_ABS/LD_IND, which end the program with 0 (a flow queue) on a short packet.
func steeringProgram(queues int) asm.Instructions {
	p := append(asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}, synClassifier("flow", "syn", "syn")...)
	p = append(p, asm.Mov.Imm(asm.R0, int32(SYNQueue(queues))).WithSymbol("syn"), asm.Return())
	return append(p, flowHash(queues-1)...)
}

// synClassifier tells a TCP connection attempt (SYN without ACK, RST or FIN; not a later
// fragment; IPv6 without extension headers) from every other packet: it jumps to syn4 for an
// IPv4 attempt (R7 then holds its IPv4 header length), to syn6 for an IPv6 one, and to other
// for the rest. R6 must hold the context (LD_ABS/LD_IND; they end the program with 0 on a short
// packet). The steering program and the SYN prefilter share it.
func synClassifier(other, syn4, syn6 string) asm.Instructions {
	return asm.Instructions{
		asm.LoadAbs(0, asm.Byte),
		asm.RSh.Imm(asm.R0, 4),
		asm.JEq.Imm(asm.R0, 6, "cls_ipv6"),
		asm.JNE.Imm(asm.R0, 4, other),
		asm.LoadAbs(9, asm.Byte), // IPv4 protocol
		asm.JNE.Imm(asm.R0, protoTCP, other),
		asm.LoadAbs(6, asm.Half), // flags and fragment offset
		asm.And.Imm(asm.R0, 0x1fff),
		asm.JNE.Imm(asm.R0, 0, other), // a later fragment has no TCP header
		asm.LoadAbs(0, asm.Byte),
		asm.And.Imm(asm.R0, 0x0f),
		asm.LSh.Imm(asm.R0, 2),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadInd(asm.R0, asm.R7, 13, asm.Byte), // TCP flags after the IPv4 header
		asm.And.Imm(asm.R0, tcpConnFlags),
		asm.JNE.Imm(asm.R0, tcpSyn, other),
		asm.Ja.Label(syn4),
		asm.LoadAbs(6, asm.Byte).WithSymbol("cls_ipv6"), // next header (extension headers: other)
		asm.JNE.Imm(asm.R0, protoTCP, other),
		asm.LoadAbs(40+13, asm.Byte),
		asm.And.Imm(asm.R0, tcpConnFlags),
		asm.JNE.Imm(asm.R0, tcpSyn, other),
		asm.Ja.Label(syn6),
	}
}

// flowHash continues the program at "flow": it returns a hash of the addresses and, for TCP and
// UDP (not later fragments), the ports, modulo flowQueues, so each flow stays on one queue and
// flows spread over the queues. (skb->hash is often 0 for forwarded packets, so the program
// computes its own.) LD_ABS/LD_IND scratch R1-R5; the hash builds in R8.
func flowHash(flowQueues int) asm.Instructions {
	xorWord := func(off int32) asm.Instructions {
		return asm.Instructions{asm.LoadAbs(off, asm.Word), asm.Xor.Reg(asm.R8, asm.R0)}
	}
	p := asm.Instructions{
		asm.Mov.Imm(asm.R8, 0).WithSymbol("flow"),
		asm.LoadAbs(0, asm.Byte),
		asm.RSh.Imm(asm.R0, 4),
		asm.JEq.Imm(asm.R0, 6, "flow6"),
	}
	p = append(p, xorWord(12)...)
	p = append(p, xorWord(16)...)
	p = append(p,
		asm.LoadAbs(6, asm.Half),
		asm.And.Imm(asm.R0, 0x1fff),
		asm.JNE.Imm(asm.R0, 0, "mix"),
		asm.LoadAbs(9, asm.Byte),
		asm.JEq.Imm(asm.R0, protoTCP, "ports4"),
		asm.JNE.Imm(asm.R0, protoUDP, "mix"),
		asm.LoadAbs(0, asm.Byte).WithSymbol("ports4"),
		asm.And.Imm(asm.R0, 0x0f),
		asm.LSh.Imm(asm.R0, 2),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadInd(asm.R0, asm.R7, 0, asm.Word),
		asm.Xor.Reg(asm.R8, asm.R0),
		asm.Ja.Label("mix"),
	)
	p = append(p, asm.LoadAbs(8, asm.Word).WithSymbol("flow6"), asm.Xor.Reg(asm.R8, asm.R0))
	for off := int32(12); off < 40; off += 4 {
		p = append(p, xorWord(off)...)
	}
	p = append(p,
		asm.LoadAbs(6, asm.Byte),
		asm.JEq.Imm(asm.R0, protoTCP, "ports6"),
		asm.JNE.Imm(asm.R0, protoUDP, "mix"),
		asm.LoadAbs(40, asm.Word).WithSymbol("ports6"),
		asm.Xor.Reg(asm.R8, asm.R0),
		asm.Mov.Reg(asm.R0, asm.R8).WithSymbol("mix"),
		asm.RSh.Imm(asm.R0, 16),
		asm.Xor.Reg(asm.R8, asm.R0),
		asm.Mov.Reg(asm.R0, asm.R8),
		asm.RSh.Imm(asm.R0, 8),
		asm.Xor.Reg(asm.R0, asm.R8),
		asm.Mod.Imm(asm.R0, int32(flowQueues)),
		asm.Return(),
	)
	return p
}

// loadSteering loads the steering program for queues queues.
func loadSteering(queues int) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "edgegate_steer",
		Type:         ebpf.SocketFilter,
		Instructions: steeringProgram(queues),
		License:      "Apache-2.0",
	})
	if err != nil {
		return nil, fmt.Errorf("load TUN steering program: %w", err)
	}
	return prog, nil
}

// Steer attaches the steering program to the multi-queue device d belongs to (queues queues,
// at least 2). The device keeps its own reference to the program.
func Steer(d Device, queues int) error {
	fd, ok := d.(*fileDevice)
	if !ok {
		return fmt.Errorf("tun: %T cannot be steered", d)
	}
	prog, err := loadSteering(queues)
	if err != nil {
		return err
	}
	defer prog.Close()
	pfd := int32(prog.FD())
	var serr error
	err = fd.rc.Control(func(f uintptr) {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f, tunSetSteeringEBPF, uintptr(unsafe.Pointer(&pfd))); e != 0 {
			serr = e
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("tun %s: TUNSETSTEERINGEBPF: %w", fd.name, err)
	}
	return nil
}
