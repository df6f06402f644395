package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

// requireTools is netns.Require for the programs a test runs: fatal under CI, a skip elsewhere.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	netns.Require(t)
	if miss := missingTools(names...); len(miss) > 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("missing tools under CI: %s", strings.Join(miss, ", "))
		}
		t.Skipf("skipping: missing tools %s", strings.Join(miss, ", "))
	}
}

// TestQuickTopology is the CI check of the harness: the topology comes up, a 1 s kernel-routing
// iperf3 run and a 1 s connection-rate run through the gateway namespace produce non-zero
// results, and closing removes every namespace.
func TestQuickTopology(t *testing.T) {
	requireTools(t, "iperf3", "ss")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := newTopology(1500)
	if err != nil {
		t.Fatal(err)
	}
	names := topo.names()
	t.Cleanup(func() { topo.Close() })
	if len(names) != 3 || len(leftoverNamespaces(names)) != 3 {
		t.Fatalf("namespaces %v: want 3 existing, %v exist", names, leftoverNamespaces(names))
	}

	if _, err := topo.server.Start(ctx, "iperf3", "-s", "-p", "5201"); err != nil {
		t.Fatal(err)
	}
	if err := waitListening(ctx, topo.server, iperfPort, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cs, err := startConnServer(topo.server, connRatePort)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	env := runEnv{topo: topo, dst: netip.MustParseAddr(serverAddr), dur: time.Second}
	s, err := measure(ctx, tcpCase("tcp1-fwd", "", "-P", "1"), env, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Value <= 0 {
		t.Errorf("kernel-route tcp1-fwd = %v Gbit/s, want > 0", s.Value)
	}
	if s.GatewayCPUPct != nil {
		t.Errorf("kernel path reported a gateway process CPU %v", *s.GatewayCPUPct)
	}

	// The traffic crossed the gateway: its server-side veth transmitted packets.
	if n, err := txPackets(topo.gw, ifGWServer); err != nil || n == 0 {
		t.Errorf("gateway %s tx packets = %d, %v; want > 0", ifGWServer, n, err)
	}

	cr, err := runConnRate(ctx, topo.client, netip.AddrPortFrom(env.dst, connRatePort), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Conns == 0 {
		t.Errorf("connection rate: no connections (%d errors)", cr.Errors)
	}

	if err := topo.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := leftoverNamespaces(names); len(left) > 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
}

// TestKernelNATTarget checks the nftables baseline translates: the virtual address reaches the
// server only once the rules are loaded.
func TestKernelNATTarget(t *testing.T) {
	requireTools(t, "nft")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := newTopology(1500)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Close() })
	cs, err := startConnServer(topo.server, connRatePort)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	vip := netip.AddrPortFrom(netip.MustParseAddr(vipAddr), connRatePort)
	if err := waitReachable(ctx, topo.client, vip, 300*time.Millisecond, nil); err == nil {
		t.Fatal("virtual address reachable without NAT rules")
	}
	if _, err := setupKernelNAT(ctx, topo, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := waitReachable(ctx, topo.client, vip, 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	out, err := topo.gw.Exec("cat", "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait")
	if err != nil || strings.TrimSpace(out) != "2" {
		t.Errorf("conntrack time_wait timeout = %q, %v; want 2", out, err)
	}
}

// TestHAProxyConfigValid runs HAProxy's own checker on the generated config.
func TestHAProxyConfigValid(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy not installed under CI")
		}
		t.Skip("haproxy not installed")
	}
	file := t.TempDir() + "/haproxy.cfg"
	if err := os.WriteFile(file, []byte(haproxyConfig()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// TestRemoveStale deletes namespaces of a dead bench process only.
func TestRemoveStale(t *testing.T) {
	netns.Require(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid
	names := map[string]bool{ // name -> should survive
		fmt.Sprintf("egbg%d-1", deadPID):      false,
		fmt.Sprintf("egbc%d-77", os.Getpid()): true, // this process is alive
		netns.UniqueName("egbx"):              true, // not a bench topology name
	}
	for name := range names {
		n, err := netns.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
	}
	var log bytes.Buffer
	removeStale(context.Background(), &log)
	for name, survive := range names {
		_, err := os.Stat("/run/netns/" + name)
		if exists := err == nil; exists != survive {
			t.Errorf("%s exists=%v after removeStale, want %v (log: %s)", name, exists, survive, log.String())
		}
	}
}
