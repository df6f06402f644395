// Command demo shows edgegate end to end on one machine: it builds the binary, creates network
// namespaces (a client, the gateway node, three backends), starts edgegate with examples/demo.yaml,
// pushes curl and iperf3 traffic through a service address, prints the backend spread, the
// throughput and the flow table, and removes everything again. Run as root: go run ./examples/demo
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/internal/netns"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type cleanup []func()

func (c *cleanup) add(f func()) { *c = append(*c, f) }
func (c cleanup) run() {
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run() error {
	if why := netns.Missing(); why != "" {
		return fmt.Errorf("cannot run: %s", why)
	}
	var cl cleanup
	defer func() { cl.run() }() // cl grows below: run what it holds at return
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; fmt.Println("interrupted: cleaning up"); cl.run(); os.Exit(130) }()

	dir, err := os.MkdirTemp("", "edgegate-demo")
	if err != nil {
		return err
	}
	cl.add(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "edgegate")
	step("building edgegate")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/edgegate").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}

	step("creating namespaces: client, gateway, three backends")
	mk := func(prefix string) (*netns.NS, error) {
		n, err := netns.Create(netns.UniqueName(prefix))
		if err == nil {
			cl.add(func() {
				if err := n.Close(); err != nil {
					fmt.Fprintln(os.Stderr, "cleanup:", err)
				}
			})
		}
		return n, err
	}
	gw, err := mk("demo-gw")
	if err != nil {
		return err
	}
	client, err := mk("demo-cl")
	if err != nil {
		return err
	}
	var backends [3]*netns.NS
	for i := range backends {
		if backends[i], err = mk(fmt.Sprintf("demo-b%d", i+1)); err != nil {
			return err
		}
	}
	steps := []func() error{
		func() error { return gw.Sysctl("net.ipv4.ip_forward", "1") },
		func() error { return netns.Link(gw, "gw-cl", client, "eth0", 1500) },
		func() error { return gw.Addr("gw-cl", "198.18.1.1/24") },
		func() error { return client.Addr("eth0", "198.18.1.2/24") },
		func() error { return client.Route("default", "via", "198.18.1.1") },
	}
	for i, b := range backends {
		steps = append(steps,
			func() error { return netns.Link(gw, fmt.Sprintf("gw-b%d", i+1), b, "eth0", 1500) },
			func() error { return gw.Addr(fmt.Sprintf("gw-b%d", i+1), fmt.Sprintf("198.19.%d.1/24", i+1)) },
			func() error { return b.Addr("eth0", fmt.Sprintf("198.19.%d.2/24", i+1)) },
			func() error { return b.Route("default", "via", fmt.Sprintf("198.19.%d.1", i+1)) },
		)
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}

	step("starting backends: HTTP on :8080 answering their name, iperf3 servers")
	for i, b := range backends {
		name := fmt.Sprintf("backend-%d", i+1)
		var ln net.Listener
		if err := b.Do(func() (err error) { ln, err = net.Listen("tcp", ":8080"); return }); err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name+"\n") }), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		cl.add(func() { srv.Close() })
		if _, err := b.Start(context.Background(), "iperf3", "-s", "-p", "5201"); err != nil {
			return err
		}
	}

	step("starting edgegate with examples/demo.yaml in the gateway namespace")
	logf, err := os.Create(filepath.Join(dir, "edgegate.log"))
	if err != nil {
		return err
	}
	eg := gw.Command(context.Background(), bin, "run", "-c", "examples/demo.yaml")
	eg.Stdout, eg.Stderr = logf, logf
	if err := gw.StartCmd(eg); err != nil {
		return err
	}
	if err := waitFor(10*time.Second, func() bool {
		out, err := gw.Exec("ip", "route", "show", "proto", "201")
		return err == nil && strings.Contains(out, "198.18.200.10")
	}); err != nil {
		b, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("edgegate did not come up: %v\n%s", err, b)
	}
	routes, _ := gw.Exec("ip", "route", "show", "proto", "201")
	fmt.Print(indent(routes))

	const n = 100
	step("curl: %d requests to http://198.18.200.10/ (service web, maglev)", n)
	out, err := client.Exec("sh", "-c", fmt.Sprintf("for i in $(seq %d); do curl -sS --max-time 5 http://198.18.200.10/; done", n))
	if err != nil {
		return fmt.Errorf("curl: %v", err)
	}
	spread := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			spread[l]++
		}
	}
	names := make([]string, 0, len(spread))
	for k := range spread {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Printf("    %-10s %3d  %s\n", k, spread[k], strings.Repeat("#", spread[k]/2))
	}

	step("iperf3: 3 s TCP through 198.18.200.11:5201 (service iperf)")
	if err := waitFor(5*time.Second, func() bool {
		for _, b := range backends {
			if o, _ := b.Exec("ss", "-ltn", "sport = :5201"); !strings.Contains(o, "5201") {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("iperf3 servers: %v", err)
	}
	js, err := client.Exec("iperf3", "-c", "198.18.200.11", "-t", "3", "-J")
	if err != nil {
		return fmt.Errorf("iperf3: %v", err)
	}
	if m := regexp.MustCompile(`"sum_received":\s*\{[^}]*"bits_per_second":\s*([0-9.e+]+)`).FindStringSubmatch(js); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		fmt.Printf("    throughput: %.2f Gbit/s\n", v/1e9)
	}

	step("flow table (edgegate conntrack list)")
	if ct, err := gw.Exec(bin, "conntrack", "list"); err == nil {
		lines := strings.Split(strings.TrimSpace(ct), "\n")
		for i, l := range lines {
			if i == 12 {
				fmt.Printf("    ... %d more\n", len(lines)-12)
				break
			}
			fmt.Println("    " + l)
		}
	} else {
		fmt.Printf("    (not available: %v)\n", err)
	}

	step("stopping edgegate (SIGTERM)")
	eg.Process.Signal(syscall.SIGTERM)
	select {
	case <-gw.Exited(eg):
	case <-time.After(10 * time.Second):
		return fmt.Errorf("edgegate did not stop")
	}
	left, _ := gw.Exec("ip", "route", "show", "proto", "201")
	fmt.Printf("    exit code %d; routes left behind: %d\n", eg.ProcessState.ExitCode(), len(strings.Fields(left)))
	step("cleaning up namespaces")
	return nil
}

func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
