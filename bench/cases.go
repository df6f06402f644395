package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// runEnv is what a case needs to run once against a prepared target.
type runEnv struct {
	topo *topology
	dst  netip.Addr
	dur  time.Duration
}

// benchCase is one measurement; run returns the primary value (in unit) and fills the rest of
// the sample it is given.
type benchCase struct {
	name, desc, unit string
	udp              bool // needs a target that forwards UDP
	run              func(ctx context.Context, e runEnv, s *sample) error
}

func tcpCase(name, desc string, extra ...string) benchCase {
	return benchCase{
		name: name, desc: desc, unit: "Gbit/s",
		run: func(ctx context.Context, e runEnv, s *sample) error {
			r, err := runIperf(ctx, e.topo.client, e.dst.String(), e.dur, extra...)
			if err != nil {
				return err
			}
			// The receiver's count: what actually made it through the gateway.
			s.Value = r.End.SumReceived.BitsPerSecond / 1e9
			return nil
		},
	}
}

// udpPayload is the UDP payload size: with 8 bytes UDP and 20 bytes IPv4 header the packets
// are 64 bytes at the IP layer, a per-packet-cost test rather than a bandwidth test.
const udpPayload = 36

func allCases() []benchCase {
	return []benchCase{
		tcpCase("tcp1-fwd", "TCP, 1 stream, client to server", "-P", "1"),
		tcpCase("tcp1-rev", "TCP, 1 stream, server to client (iperf3 -R)", "-P", "1", "-R"),
		tcpCase("tcp4-fwd", "TCP, 4 streams, client to server", "-P", "4"),
		tcpCase("tcp4-rev", "TCP, 4 streams, server to client (iperf3 -R)", "-P", "4", "-R"),
		{
			name: "udp64", desc: "UDP, 64-byte IP packets, unlimited rate, client to server",
			unit: "kpps", udp: true,
			run: func(ctx context.Context, e runEnv, s *sample) error {
				before, err := txPackets(e.topo.gw, ifGWServer)
				if err != nil {
					return err
				}
				r, err := runIperf(ctx, e.topo.client, e.dst.String(), e.dur,
					"-u", "-b", "0", "-l", fmt.Sprint(udpPayload))
				if err != nil {
					return err
				}
				after, err := txPackets(e.topo.gw, ifGWServer)
				if err != nil {
					return err
				}
				secs := r.End.SumSent.Seconds
				s.SentKpps = r.End.SumSent.Packets / secs / 1e3
				s.ForwardedKpps = float64(after-before) / secs / 1e3
				s.Value = r.receivedPPS() / 1e3
				return nil
			},
		},
		{
			name: "connrate", desc: fmt.Sprintf("new TCP connections per second (%d workers: connect, server closes, close)", connRateWorkers),
			unit: "conn/s",
			run: func(ctx context.Context, e runEnv, s *sample) error {
				r, err := runConnRate(ctx, e.topo.client, netip.AddrPortFrom(e.dst, connRatePort), e.dur)
				if err != nil {
					return err
				}
				s.Value = float64(r.Conns) / r.Seconds
				s.Errors = r.Errors
				if r.FirstErr != nil {
					s.FirstError = r.FirstErr.Error()
				}
				return nil
			},
		},
	}
}
