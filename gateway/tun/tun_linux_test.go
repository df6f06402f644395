//go:build linux

package tun_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/edgegate/edgegate/gateway/tun"
	"github.com/edgegate/edgegate/internal/netns"
	"github.com/edgegate/edgegate/internal/pkttest"
	"github.com/edgegate/edgegate/packet"
)

// A datagram routed into the TUN is read back whole, with a virtio-net header when offloads are
// on; a packet written to the TUN is delivered by the kernel; Close ends a blocked Read.
func TestOpenReadWriteClose(t *testing.T) {
	for _, offload := range []bool{false, true} {
		ns := netns.ForTest(t, "tun")
		var devs []tun.Device
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(ns.Do(func() (err error) {
			devs, err = tun.Open(tun.Config{Name: "egt0", MTU: 1500, Queues: 2, Offload: offload, TxQueueLen: 1000})
			return err
		}))
		if len(devs) != 2 || devs[0].VnetHdr() != offload || devs[0].Name() != "egt0" {
			t.Fatalf("offload=%v: %d devices, vnet %v, name %q", offload, len(devs), devs[0].VnetHdr(), devs[0].Name())
		}
		must(ns.Addr("egt0", "198.18.9.1/24"))
		var conn net.Conn
		must(ns.Do(func() (err error) { conn, err = net.Dial("udp", "198.18.9.2:7000"); return }))
		conn.Write([]byte("through the tun"))
		got := make(chan error, 2)
		for _, d := range devs { // the flow hashes to one of the queues
			go func() {
				b := [][]byte{make([]byte, tun.BufSize)}
				s := []int{0}
				for {
					n, err := d.Read(b, s)
					if err != nil {
						got <- err
						return
					}
					var p packet.Packet
					if n == 1 && p.Parse(b[0][tun.Offset:tun.Offset+s[0]]) == packet.OK && p.Proto == packet.ProtoUDP && p.DstPort == 7000 {
						if string(p.B[p.L4Off+8:]) != "through the tun" {
							got <- errors.New("payload changed")
							return
						}
						got <- nil
						return
					}
				}
			}()
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("offload=%v: %v", offload, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("offload=%v: datagram not read from the TUN", offload)
		}
		// Written to the TUN, a datagram to the namespace's own address reaches a socket.
		var pc net.PacketConn
		must(ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", "198.18.9.1:7001"); return }))
		defer pc.Close()
		pkt := pkttest.P{Proto: 17, Src: netip.MustParseAddr("198.18.9.2"), Dst: netip.MustParseAddr("198.18.9.1"), Sport: 7000, Dport: 7001, Payload: "back in"}.Build(t)
		wb := make([]byte, tun.Offset+len(pkt))
		copy(wb[tun.Offset:], pkt)
		if n, err := devs[0].Write([][]byte{wb}); n != 1 || err != nil {
			t.Fatalf("offload=%v: write %d, %v", offload, n, err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		rb := make([]byte, 64)
		if n, _, err := pc.ReadFrom(rb); err != nil || string(rb[:n]) != "back in" {
			t.Fatalf("offload=%v: datagram written to the TUN: %q, %v", offload, rb[:n], err)
		}
		// Close wakes the reader still blocked on the other queue.
		for _, d := range devs {
			must(d.Close())
		}
		select {
		case err := <-got:
			if !errors.Is(err, tun.ErrClosed) {
				t.Fatalf("offload=%v: blocked Read returned %v after Close, want ErrClosed", offload, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("offload=%v: Close did not end a blocked Read", offload)
		}
		conn.Close()
	}
}
