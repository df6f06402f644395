// Command edgegate is the gateway binary: flags and subcommands only; the pieces live in their
// packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/edgegate/edgegate/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage: edgegate <command> [flags]

commands:
  run -c FILE [-watch] [-user NAME] [-drop-privileges=false]
                     run the gateway with the configuration FILE (SIGHUP or -watch: reload;
                     SIGTERM: graceful shutdown); after setup it runs as -user (default nobody;
                     root: stay uid 0) with only CAP_NET_ADMIN (and what reloads need)
  run ... --takeover take over from the edgegate running with this configuration (its TUN,
                     flows and ingress sockets) instead of starting afresh: the hand-over upgrade
  upgrade [-c FILE] [-wait DURATION]
                     start the binary on disk with the running edgegate's arguments and
                     --takeover; exit 0 once the old process handed over and exited, 1 if the
                     new one failed (the old one serves on). SIGUSR2 to a process that kept its
                     privileges (-drop-privileges=false) does the same
  validate -c FILE   check FILE; exit 0, or print one line per problem (file:line:col: message)
  status             services and backends with health and active flows
  conntrack list|delete [filters]
                     list (like conntrack -L) or delete flows; filters: -p PROTO -a ADDR
                     -port N -service NAME -backend ADDR -state STATE
  capture -o FILE [-n COUNT] [-d DURATION] [-filter EXPR]
                     write a pcap of packets before and after translation
  version            print the version

The admin commands use the admin Unix socket: -socket PATH, else admin.socket of -c FILE if
given, else /run/edgegate/admin.sock (-admin HOST:PORT: a TCP address instead, e.g. a proxy).
`)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(args, stderr)
	case "upgrade":
		return cmdUpgrade(args, stdout, stderr)
	case "validate":
		return cmdValidate(args, stdout, stderr)
	case "status":
		return cmdStatus(args, stdout, stderr)
	case "conntrack":
		return cmdConntrack(args, stdout, stderr)
	case "capture":
		return cmdCapture(args, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "edgegate", versionString())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "edgegate: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
}

func versionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return "dev-" + s.Value
			}
		}
		return "dev (" + bi.GoVersion + ")"
	}
	return version
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/edgegate/edgegate.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	return *path, true
}

// printConfigErrors prints one line per problem.
func printConfigErrors(w io.Writer, err error) {
	var es config.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("validate", args, stderr)
	if !ok {
		return 2
	}
	if _, err := config.Load(path); err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
