package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/admin"
	"github.com/edgegate/edgegate/config"
)

// adminFlags adds -socket, -admin and -c to fs and returns a function making the API client:
// the Unix socket by default (the only listener serving flows, capture and status), a TCP
// address only when -admin names one (e.g. a proxy in front of the socket).
func adminFlags(fs *flag.FlagSet) func() (*admin.Client, error) {
	sock := fs.String("socket", "", "admin API Unix socket (default: admin.socket of -c, else "+admin.DefaultSocket+")")
	addr := fs.String("admin", "", "admin API at host:port instead of the socket")
	path := fs.String("c", "", "configuration file to read admin.socket from")
	return func() (*admin.Client, error) {
		switch {
		case *sock != "":
			return admin.NewSocketClient(*sock), nil
		case *addr != "":
			return admin.NewClient(*addr), nil
		case *path != "":
			cfg, err := config.Load(*path)
			if err != nil {
				return nil, err
			}
			if !cfg.Admin.SocketEnabled() {
				return nil, fmt.Errorf("%s: admin.socket is off", *path)
			}
			return admin.NewSocketClient(cfg.Admin.Socket), nil
		}
		return admin.NewSocketClient(admin.DefaultSocket), nil
	}
}

func ctlContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if timeout <= 0 {
		return ctx, stop
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	return tctx, func() { cancel(); stop() }
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	resolve := adminFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c, err := resolve()
	if err != nil {
		fmt.Fprintln(stderr, "edgegate status:", err)
		return 1
	}
	ctx, cancel := ctlContext(10 * time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "edgegate status:", err)
		return 1
	}
	if err := admin.FormatStatus(stdout, st); err != nil {
		return 1
	}
	return 0
}

// flowFilterFlags binds the conntrack filter flags (named like conntrack(8) where it has them).
func flowFilterFlags(fs *flag.FlagSet) func() (admin.FlowFilter, error) {
	proto := fs.String("p", "", "protocol: tcp, udp, icmp, icmpv6 or a number")
	addr := fs.String("a", "", "address on either side of either direction")
	port := fs.Uint("port", 0, "port on either side of either direction")
	service := fs.String("service", "", "service name")
	backend := fs.String("backend", "", "backend address")
	state := fs.String("state", "", "state, e.g. established, syn_sent, replied")
	return func() (admin.FlowFilter, error) {
		q := map[string][]string{}
		set := func(k, v string) {
			if v != "" {
				q[k] = []string{v}
			}
		}
		set("protocol", *proto)
		set("address", *addr)
		if *port != 0 {
			set("port", fmt.Sprint(*port))
		}
		set("service", *service)
		set("backend", *backend)
		set("state", *state)
		return admin.ParseFlowFilter(q)
	}
}

func cmdConntrack(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "delete" && args[0] != "-L" && args[0] != "-D") {
		fmt.Fprintln(stderr, "usage: edgegate conntrack list|delete [-admin ADDR] [-p PROTO] [-a ADDR] [-port N] [-service NAME] [-backend ADDR] [-state STATE] [-all]")
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("conntrack "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	resolve := adminFlags(fs)
	filter := flowFilterFlags(fs)
	all := fs.Bool("all", false, "delete: allow an empty filter (every flow)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	f, err := filter()
	if err != nil {
		fmt.Fprintln(stderr, "edgegate conntrack:", err)
		return 2
	}
	c, err := resolve()
	if err != nil {
		fmt.Fprintln(stderr, "edgegate conntrack:", err)
		return 1
	}
	ctx, cancel := ctlContext(30 * time.Second)
	defer cancel()
	if verb == "delete" || verb == "-D" {
		n, err := c.DeleteFlows(ctx, f, *all)
		if err != nil {
			fmt.Fprintln(stderr, "edgegate conntrack:", err)
			return 1
		}
		fmt.Fprintf(stderr, "edgegate conntrack: %d flow entries have been deleted.\n", n)
		return 0
	}
	n := 0
	err = c.EachFlow(ctx, f, func(fl *admin.Flow) error {
		n++
		_, err := fmt.Fprintln(stdout, admin.FormatFlow(*fl))
		return err
	})
	if err != nil {
		fmt.Fprintln(stderr, "edgegate conntrack:", err)
		return 1
	}
	fmt.Fprintf(stderr, "edgegate conntrack: %d flow entries have been shown.\n", n)
	return 0
}

func cmdCapture(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("capture", flag.ContinueOnError)
	fs.SetOutput(stderr)
	resolve := adminFlags(fs)
	out := fs.String("o", "", "pcap file to write (- for stdout)")
	count := fs.Int("n", 0, "stop after this many packets")
	dur := fs.Duration("d", 0, "stop after this long (default: until -n or interrupted)")
	filter := fs.String("filter", "", `packet filter: terms joined by "and": host A, src A, dst A, port N, tcp, udp, icmp, icmpv6, before, after`)
	snap := fs.Int("s", 0, "bytes kept per packet (default 65535)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "edgegate capture: -o FILE is required")
		return 2
	}
	if _, err := admin.ParseCaptureFilter(*filter); err != nil {
		fmt.Fprintln(stderr, "edgegate capture:", err)
		return 2
	}
	c, err := resolve()
	if err != nil {
		fmt.Fprintln(stderr, "edgegate capture:", err)
		return 1
	}
	w := io.Writer(stdout)
	if *out != "-" {
		f, err := createPrivate(*out)
		if err != nil {
			fmt.Fprintln(stderr, "edgegate capture:", err)
			return 1
		}
		defer f.Close()
		w = f
	}
	ctx, cancel := ctlContext(0)
	defer cancel()
	n, err := c.Capture(ctx, admin.CaptureRequest{Count: *count, Duration: *dur, Filter: *filter, Snaplen: *snap}, w)
	if err != nil {
		fmt.Fprintln(stderr, "edgegate capture:", err)
		return 1
	}
	fmt.Fprintf(stderr, "edgegate capture: %d bytes written to %s\n", n, *out)
	return 0
}

// captureFileMode: a capture holds every packet's payload; only its owner may read it.
const captureFileMode = 0o600

// createPrivate creates (or truncates) a file readable by its owner only, also when it existed
// with a wider mode.
func createPrivate(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, captureFileMode)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(captureFileMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
