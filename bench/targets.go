package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Target names; the three baselines are what every other target is compared against.
const (
	targetRoute         = "kernel-route"
	targetNAT           = "kernel-nat"
	targetHAProxy       = "haproxy"
	targetEdge          = "edgegate"
	targetEdgeNoOffload = "edgegate-nooffload"
)

// baselines are the targets ratios are computed against, in report order.
var baselines = []string{targetRoute, targetNAT, targetHAProxy}

// target is one way of moving the client's traffic through the gateway namespace.
type target struct {
	name, desc string
	// dst is the address the client targets (the server itself, or the virtual address).
	dst string
	// udp says whether the target forwards UDP (HAProxy mode tcp does not).
	udp bool
	// needs lists the programs the target runs (checked before it starts).
	needs []string
	// setup configures the gateway namespace of a fresh topology and returns the gateway
	// process (nil for kernel paths), started with t.gw.Start so topology.Close stops it.
	setup func(ctx context.Context, t *topology, dir string) (*exec.Cmd, error)
}

func allTargets(edgegateBin string) []target {
	return []target{
		{
			name: targetRoute, desc: "kernel IPv4 forwarding, no netfilter rules",
			dst: serverAddr, udp: true,
			setup: func(context.Context, *topology, string) (*exec.Cmd, error) { return nil, nil },
		},
		{
			name: targetNAT, desc: "kernel DNAT + MASQUERADE (nftables in the gateway namespace)",
			dst: vipAddr, udp: true, needs: []string{"nft"},
			setup: setupKernelNAT,
		},
		{
			name: targetHAProxy, desc: "HAProxy mode tcp (harness-run, own config file)",
			dst: vipAddr, udp: false, needs: []string{"haproxy"},
			setup: setupHAProxy,
		},
		{
			name: targetEdge, desc: "edgegate, tun.offload: true",
			dst: vipAddr, udp: true,
			setup: func(ctx context.Context, t *topology, dir string) (*exec.Cmd, error) {
				return setupEdgegate(ctx, t, dir, edgegateBin, true)
			},
		},
		{
			name: targetEdgeNoOffload, desc: "edgegate, tun.offload: false",
			dst: vipAddr, udp: true,
			setup: func(ctx context.Context, t *topology, dir string) (*exec.Cmd, error) {
				return setupEdgegate(ctx, t, dir, edgegateBin, false)
			},
		},
	}
}

// conntrackTimeWaitSeconds shortens TIME_WAIT tracking in both stateful gateways alike, so a
// connection-rate run's closed flows do not fill the table and the client's reused ports are
// tracked as new flows (the same setting for the kernel and edgegate keeps them comparable).
const conntrackTimeWaitSeconds = 2

// nftRules is the kernel NAT baseline: DNAT the virtual address to the server and masquerade
// toward it, the same translation edgegate performs.
const nftRules = `table ip edgegate_bench {
	chain prerouting {
		type nat hook prerouting priority dstnat;
		ip daddr ` + vipAddr + ` dnat to ` + serverAddr + `
	}
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "` + ifGWServer + `" ip daddr ` + serverAddr + ` masquerade
	}
}
`

func setupKernelNAT(ctx context.Context, t *topology, dir string) (*exec.Cmd, error) {
	file := filepath.Join(dir, "nat.nft")
	if err := os.WriteFile(file, []byte(nftRules), 0o644); err != nil {
		return nil, err
	}
	if _, err := t.gw.ExecContext(ctx, "nft", "-f", file); err != nil {
		return nil, err
	}
	// The conntrack sysctls of the namespace exist once the NAT rules loaded nf_conntrack.
	if err := t.gw.Sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", strconv.Itoa(conntrackTimeWaitSeconds)); err != nil {
		return nil, err
	}
	return nil, nil
}

// haproxyConfig proxies the iperf3 control/data port and the connection-rate port from the
// virtual address to the server. maxconn stays within a 20000 open-file limit (HAProxy needs about
// two descriptors per connection). No daemon mode, no user switch, no logging: the harness owns
// the process and stops it by PID.
func haproxyConfig() string {
	var b strings.Builder
	b.WriteString(`global
	maxconn 8000

defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s
`)
	for _, port := range []int{iperfPort, connRatePort} {
		fmt.Fprintf(&b, `
listen p%d
	bind %s:%d
	server s1 %s:%d
`, port, vipAddr, port, serverAddr, port)
	}
	return b.String()
}

func setupHAProxy(ctx context.Context, t *topology, dir string) (*exec.Cmd, error) {
	// HAProxy terminates connections to the virtual address, so it is local in the gateway.
	if err := t.gw.Addr("lo", vipAddr+"/32"); err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(haproxyConfig()), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "haproxy", "-c", "-q", "-f", file).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxy config check: %w: %s", err, out)
	}
	return t.gw.Start(ctx, "haproxy", "-db", "-f", file)
}

// edgegateQueues is the -queues flag: tun.queues of the edgegate targets.
var edgegateQueues = 1

// edgegateConfig is the service edgegate balances in the bench: the virtual address with the
// iperf3 (TCP and UDP) and connection-rate ports, one backend, masquerading.
func edgegateConfig(offload bool) string {
	return fmt.Sprintf(`# generated by go run ./bench
tun:
  name: egb0
  queues: %d
  offload: %t
  manage_routes: true
nat:
  masquerade_addresses: [%s]
services:
  - name: bench
    addresses: [%s]
    ports:
      - {name: iperf-tcp, protocol: tcp, port: %d}
      - {name: iperf-udp, protocol: udp, port: %d}
      - {name: connrate, protocol: tcp, port: %d}
    backends:
      - address: %s
conntrack:
  max_entries: 1048576
  timeouts:
    tcp_time_wait: %ds
log:
  level: warn
`, edgegateQueues, offload, masqAddr, vipAddr, iperfPort, iperfPort, connRatePort, serverAddr, conntrackTimeWaitSeconds)
}

func setupEdgegate(ctx context.Context, t *topology, dir, bin string, offload bool) (*exec.Cmd, error) {
	file := filepath.Join(dir, fmt.Sprintf("edgegate-offload-%t.yaml", offload))
	// The bench's own admin socket: never the default path an edgegate of the machine may hold.
	cfg := edgegateConfig(offload) + fmt.Sprintf("admin: {socket: %q}\n", filepath.Join(dir, "admin.sock"))
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return t.gw.Start(ctx, bin, "run", "-c", file)
}

// buildEdgegate builds ./cmd/edgegate of the module containing the working directory into dir.
func buildEdgegate(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the edgegate module (go env GOMOD: %q, %v)", gomod, err)
	}
	bin := filepath.Join(dir, "edgegate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/edgegate")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/edgegate: %w: %s", err, firstLines(string(out), 5))
	}
	return bin, nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "; ")
}
