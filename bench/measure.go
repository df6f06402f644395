package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
	"github.com/edgegate/edgegate/internal/procstat"
)

const userHZ = procstat.UserHZ

// iperfResult is the part of `iperf3 -J` output the bench reads.
type iperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumSent     iperfSum `json:"sum_sent"`
		SumReceived iperfSum `json:"sum_received"`
	} `json:"end"`
}

// iperfSum is one side's totals; the packet fields are set for UDP only.
type iperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         float64 `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Packets       float64 `json:"packets"`
	LostPackets   float64 `json:"lost_packets"`
}

// parseIperf decodes iperf3 JSON output; iperf3 reports failures inside the JSON ("error").
func parseIperf(out []byte) (iperfResult, error) {
	var r iperfResult
	// iperf3 may print warnings before the JSON object.
	if i := strings.IndexByte(string(out), '{'); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("iperf3 output: %w", err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.Seconds <= 0 || r.End.SumSent.Seconds <= 0 {
		return r, errors.New("iperf3: result without sender/receiver totals")
	}
	return r, nil
}

// receivedPPS is the UDP packet rate that reached the receiver (sent minus lost).
func (r iperfResult) receivedPPS() float64 {
	s := r.End.SumReceived
	return (s.Packets - s.LostPackets) / s.Seconds
}

// runIperf runs one iperf3 client inside client against dst, bounded by the test duration plus
// a margin. A busy server (the previous test still closing) is retried once.
func runIperf(ctx context.Context, client *netns.NS, dst string, dur time.Duration, extra ...string) (iperfResult, error) {
	secs := int(dur.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	args := append([]string{"iperf3", "-c", dst, "-p", strconv.Itoa(iperfPort), "-t", strconv.Itoa(secs),
		"-J", "--connect-timeout", "3000"}, extra...)
	var lastErr error
	for attempt := range 2 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return iperfResult{}, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		rctx, cancel := context.WithTimeout(ctx, dur+20*time.Second)
		out, err := client.ExecContext(rctx, args...)
		cancel()
		r, perr := parseIperf([]byte(out))
		if perr == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		lastErr = perr
		if err != nil && !strings.Contains(perr.Error(), "iperf3:") {
			lastErr = err // no JSON at all: report the exec error with its output
		}
		if !strings.Contains(lastErr.Error(), "busy") {
			break
		}
	}
	return iperfResult{}, lastErr
}

// cpuSnapshot holds the counters the bench diffs around one run.
type cpuSnapshot struct {
	at            time.Time
	procTicks     uint64 // utime+stime of the gateway process (all threads); 0 without one
	softirq, busy uint64 // system-wide softirq ticks and all ticks, from /proc/stat
}

// parseSystemStat returns the softirq ticks and the sum of all ticks of the aggregate "cpu"
// line of /proc/stat.
func parseSystemStat(s string) (softirq, total uint64, err error) {
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] != "cpu" {
			continue
		}
		// user nice system idle iowait irq softirq steal guest guest_nice; guest time is
		// already included in user/nice, so sum only the first eight.
		for i, v := range f[1:min(len(f), 9)] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/stat: %w", err)
			}
			if total+n < total {
				return 0, 0, errors.New("/proc/stat: counter overflow")
			}
			total += n
			if i == 6 {
				softirq = n
			}
		}
		return softirq, total, nil
	}
	return 0, 0, errors.New("/proc/stat: no cpu line")
}

// snapshot reads the CPU counters; pid 0 means no gateway process (kernel paths).
func snapshot(pid int) (cpuSnapshot, error) {
	c := cpuSnapshot{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c, err
	}
	if c.softirq, c.busy, err = parseSystemStat(string(b)); err != nil {
		return c, err
	}
	if pid > 0 {
		if c.procTicks, err = procstat.Process(pid); err != nil {
			return c, fmt.Errorf("gateway process: %w", err)
		}
	}
	return c, nil
}

// cpuUse converts two snapshots into percent of one CPU: the gateway process's CPU and the
// system-wide softirq time (the kernel's forwarding work, but also the endpoints' stacks).
func cpuUse(a, b cpuSnapshot) (procPct, softirqPct float64) {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return 0, 0
	}
	procPct = float64(b.procTicks-a.procTicks) / userHZ / wall * 100
	softirqPct = float64(b.softirq-a.softirq) / userHZ / wall * 100
	return procPct, softirqPct
}

// linkStats is the part of `ip -j -s link show` the bench reads.
type linkStats []struct {
	Stats64 struct {
		TX struct {
			Packets uint64 `json:"packets"`
		} `json:"tx"`
		RX struct {
			Packets uint64 `json:"packets"`
		} `json:"rx"`
	} `json:"stats64"`
}

// txPackets returns the transmitted-packet counter of ifname inside n.
func txPackets(n *netns.NS, ifname string) (uint64, error) {
	out, err := n.Exec("ip", "-j", "-s", "link", "show", "dev", ifname)
	if err != nil {
		return 0, err
	}
	return parseTxPackets([]byte(out))
}

func parseTxPackets(out []byte) (uint64, error) {
	var ls linkStats
	if err := json.Unmarshal(out, &ls); err != nil {
		return 0, fmt.Errorf("ip -j -s link: %w", err)
	}
	if len(ls) != 1 {
		return 0, fmt.Errorf("ip -j -s link: %d interfaces", len(ls))
	}
	return ls[0].Stats64.TX.Packets, nil
}
