package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgegate/edgegate/admin"
	"github.com/edgegate/edgegate/bgp"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/flowsync"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/health"
	"github.com/edgegate/edgegate/ingress"
	"github.com/edgegate/edgegate/takeover"
)

// daemon is one running edgegate: the data path and what operates it.
type daemon struct {
	path    string
	log     *slog.Logger
	g       *gateway.Gateway
	coll    *admin.Collector
	api     *admin.Server
	checker *health.Checker
	ing     *ingress.Server
	reg     *prometheus.Registry
	// sockOwner receives the admin socket's directory when start creates it (the -user the
	// process switches to, so that it can remove the socket at exit); nil: root keeps it.
	sockOwner *[2]int
	// started is set once the whole start is done (listeners, hand-over socket, privilege drop)
	// and signals reach the reload loop: /readyz and edgegate_ready wait for it (startedSource).
	started atomic.Bool
	// mu serialises reloads and the shutdown with the hand-over's Freeze, Thaw and Release,
	// which run on the takeover goroutine and read or replace ing.
	mu    sync.Mutex
	bgpMu sync.Mutex // guards bgp, which reloads start and stop (bgp.go)
	bgp   *bgp.Speaker
	flows *flowsync.Node // cluster flow sync (cluster.go); nil: none

	// Hand-over upgrade (takeover.go).
	dropped    bool                         // privileges dropped: SIGUSR2 cannot start a successor
	takingOver bool                         // run --takeover
	handover   *takeover.Handover           // run --takeover: in progress until start finishes it
	inherit    func(*gateway.Gateway) error // run --takeover: gives the gateway what it inherits
	takeoverLn *takeover.Listener
	handedOver chan struct{} // closed when a successor took over
	ingDrained chan error    // the predecessor's ingress drain, started by Release
	// ingressFiles are the ingress listening sockets a predecessor passed (listenersPassed:
	// it passes them, from snapshot version 2), for startIngress; passed are the duplicates
	// this process sent.
	ingressFiles    map[string]*os.File
	listenersPassed bool
	passed          []*os.File
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/edgegate/edgegate.yaml", "configuration file")
	watch := fs.Bool("watch", false, "reload when the configuration file changes (besides SIGHUP)")
	userName := fs.String("user", DefaultUser, `after setup, run as this user ("root": stay uid 0; capabilities are narrowed either way)`)
	drop := fs.Bool("drop-privileges", true, "after setup, switch to -user and keep only CAP_NET_ADMIN (plus CAP_NET_BIND_SERVICE / CAP_DAC_READ_SEARCH when needed); false keeps every privilege")
	takeOver := fs.Bool("takeover", false, "take over from the edgegate running with this configuration: its TUN, flows and sockets (hand-over upgrade)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	// Signals are taken from here on: a SIGHUP (or SIGTERM) that arrives while the data path is
	// set up or privileges are dropped waits for the loop below instead of killing the process
	// (SIGHUP's default action) before a reload is possible.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	ru, err := runUserFor(*userName, flagSet(fs, "user"))
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	d := &daemon{path: *path, log: log}
	if *drop && ru.uid >= 0 {
		d.sockOwner = &[2]int{ru.uid, ru.gid}
	}
	if *takeOver {
		d.takeOver(cfg)
	}
	if err := d.start(cfg); err != nil {
		if d.takingOver {
			log.Error("takeover failed: the running edgegate keeps serving", "err", err)
			d.abandon()
			return 1
		}
		log.Error("start failed", "err", err)
		d.stop()
		return 1
	}
	if err := d.serveHandovers(cfg); err != nil { // before the privilege drop: it creates a socket
		log.Error("start failed", "err", err)
		d.stop()
		return 1
	}
	if err := prepareCheckpointDir(cfg, d.sockOwner); err != nil { // before the drop, too
		log.Warn("conntrack checkpoint directory", "err", err)
	}
	if *drop {
		if err := dropPrivileges(ru, *path, cfg, log); err != nil {
			log.Error("dropping privileges failed", "err", err)
			d.stop()
			return 1
		}
		d.dropped = true
	} else {
		log.Warn("privileges kept (-drop-privileges=false): the gateway runs with every capability it was started with")
	}
	d.started.Store(true)
	if err := sdNotify(readyState(d.takingOver)); err != nil {
		log.Warn("telling the service manager", "err", err)
	}
	var changed <-chan struct{}
	if *watch {
		changed = watchFile(ctx, *path, time.Second)
	}
	for {
		select {
		case <-hup:
			d.reload("SIGHUP")
		case <-usr2:
			d.upgradeSelf()
		case <-changed:
			d.reload("file changed")
		case <-d.handedOver:
			log.Info("handed over to the successor: draining and exiting")
			if err := d.retire(); err != nil {
				log.Error("retiring", "err", err)
			}
			log.Info("stopped")
			return 0
		case <-ctx.Done():
			log.Info("shutting down")
			sdNotify("STOPPING=1")
			if err := d.stop(); err != nil {
				log.Error("shutdown", "err", err)
				return 1
			}
			log.Info("stopped")
			return 0
		}
	}
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// runUserFor resolves -user; a process started as a non-root user (with capabilities given by
// its supervisor) stays that user unless -user names another.
func runUserFor(name string, explicit bool) (runUser, error) {
	if !explicit && os.Geteuid() != 0 {
		return runUser{name: strconv.Itoa(os.Geteuid()), uid: -1, gid: -1}, nil
	}
	return lookupRunUser(name)
}

// start brings up the data path, the health checks, the admin API, the ingress and the BGP
// speaker, in that order.
func (d *daemon) start(cfg *config.Config) error {
	g, err := gateway.New(cfg, d.log)
	if err != nil {
		return err
	}
	d.g = g
	if d.inherit != nil {
		if err := d.inherit(g); err != nil {
			return err
		}
	}
	src := startedSource{Gateway: g, started: &d.started}
	d.coll = admin.NewCollector(src)
	reg := admin.NewRegistry(d.coll, versionString())
	d.reg = reg
	d.checker = health.New(d.log, func() {
		if err := g.SetHealth(d.checker.Healthy); err != nil {
			d.log.Error("rebuilding rules after a health change", "err", err)
		}
		d.announce()
	})
	reg.MustRegister(d.checker)
	if err := g.SetHealth(d.checker.Healthy); err != nil {
		return err
	}
	key, err := clusterKey(cfg) // before touching the system: no cluster without its key
	if err != nil {
		return err
	}
	if err := g.Start(); err != nil {
		d.g = nil
		return err
	}
	d.checker.Update(cfg)
	// The ingress serves before a predecessor is told ready when it passed its listening
	// sockets (or there is none): no connection waits, and a failing ingress fails the takeover.
	early := cfg.Ingress != nil && (!d.takingOver || d.listenersPassed)
	if early {
		if err := d.startIngress(cfg, reg); err != nil {
			return err
		}
	}
	if err := d.finishHandover(); err != nil {
		return err
	}
	if err := d.startCluster(cfg, key); err != nil {
		return err
	}
	if cfg.Admin.Enabled() || cfg.Admin.SocketEnabled() {
		d.api = admin.NewServer(admin.Options{Listen: cfg.Admin.Listen, Socket: cfg.Admin.Socket, SocketGroup: cfg.Admin.SocketGroup,
			SocketDirOwner: d.sockOwner, Pprof: cfg.Admin.Pprof, Source: src, Registry: reg, Logger: d.log, Version: versionString()})
		d.api.SetHealth(d.checker)
		d.api.SetBGP(d.bgpStatus)
		if err := d.api.Start(); err != nil {
			return err
		}
	}
	if cfg.Ingress != nil && !early {
		if err := d.startIngress(cfg, reg); err != nil {
			return err
		}
	}
	d.closeAdopted()
	return d.startBGP(cfg) // last: announce only a node that is fully up
}

// startedSource is the gateway as the admin API and metrics see it: ready (/readyz 200,
// edgegate_ready 1) only once the data path is ready and the start is complete, privilege drop
// included. The admin listener opens earlier, so a probe or a supervisor that reloads on
// readiness met a process still dropping privileges (a SIGHUP there used to end it).
type startedSource struct {
	*gateway.Gateway
	started *atomic.Bool
}

func (s startedSource) Ready() bool { return s.started.Load() && s.Gateway.Ready() }

func (d *daemon) startIngress(cfg *config.Config, reg prometheus.Registerer) error {
	ing, err := ingress.New(cfg, d.g, ingress.Options{Logger: d.log, Registerer: reg})
	if err != nil {
		return err
	}
	if d.ingressFiles != nil {
		ing.Adopt(d.ingressFiles) // the ingress owns them now
		d.ingressFiles = nil
	}
	if err := d.startIngressListeners(ing); err != nil {
		return err
	}
	d.ing = ing
	return nil
}

// reload reads and validates the file completely, then applies it (apply); a bad file changes
// nothing.
func (d *daemon) reload(why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	next, err := config.Load(d.path)
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				d.log.Error("reload rejected: running configuration kept", "trigger", why, "problem", e.Error())
			}
		} else {
			d.log.Error("reload rejected: running configuration kept", "trigger", why, "err", err)
		}
		d.coll.RecordReload(err)
		return
	}
	d.clusterReloaded(next)
	if err := d.apply(next); err != nil {
		d.log.Error("reload failed: running configuration kept", "trigger", why, "err", err)
		d.coll.RecordReload(err)
		return
	}
	d.coll.RecordReload(nil)
	d.log.Info("configuration reloaded", "trigger", why, "file", d.path, "services", len(next.Services))
}

// apply makes next the running configuration as one transaction across L4 and L7, as Caddy's
// config load does: the ingress routes are compiled and checked first, then the data path (rules,
// routes, guard), health checks, BGP and the ingress are switched in that order, and when a step
// fails the ones before it (and what the failing one did) are switched back to the running
// configuration, in reverse order: the running configuration keeps serving.
func (d *daemon) apply(next *config.Config) error {
	prev := d.g.Config()
	if next.Ingress != nil && d.ing != nil {
		if err := d.ing.Check(next, d.g); err != nil {
			return err
		}
	}
	return transact([]step{
		{name: "gateway", do: func() error { return d.g.Reload(next) }, undo: func() error { return d.g.Reload(prev) }, atomic: true},
		{name: "health checks", do: func() error { d.checker.Update(next); return nil }, undo: func() error { d.checker.Update(prev); return nil }},
		{name: "bgp", do: func() error { return d.reloadBGP(next) }, undo: func() error { return d.reloadBGP(prev) }},
		{name: "ingress", do: func() error { return d.reloadIngress(next) }, undo: func() error { return d.reloadIngress(prev) }},
	}, d.log)
}

// reloadIngress starts, reloads or stops the ingress to match cfg.
func (d *daemon) reloadIngress(cfg *config.Config) error {
	switch {
	case cfg.Ingress != nil && d.ing != nil:
		return d.ing.Reload(cfg, d.g)
	case cfg.Ingress != nil:
		return d.startIngress(cfg, d.reg)
	case d.ing != nil:
		return d.stopIngress()
	}
	return nil
}

func (d *daemon) stopIngress() error {
	ctx, cancel := context.WithTimeout(context.Background(), d.ing.DrainTimeout())
	defer cancel()
	err := d.ing.Shutdown(ctx)
	d.ing = nil
	return err
}

// stop is the graceful shutdown: BGP prefixes withdrawn (and bgp.withdraw_delay waited), no
// new flows, L7 drained within its bound, checks and API stopped, then routes, rules and the
// TUN removed, BGP sessions closed.
func (d *daemon) stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if err := d.withdrawBGP(); err != nil {
		errs = append(errs, err)
	}
	if d.checker != nil {
		d.checker.Close() // first: a health flip would rebuild the rules StopNewFlows empties
	}
	if d.g != nil {
		d.g.StopNewFlows()
	}
	if d.ing != nil {
		if err := d.stopIngress(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := d.api.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if d.g != nil {
		if err := d.g.Close(); err != nil {
			errs = append(errs, err)
		}
		d.stopCluster()
	}
	d.stopBGP()
	return errors.Join(errs...)
}

// watchFile signals when path's modification time or size changes (polling: works for editors
// that replace the file and for ConfigMap symlink swaps alike).
func watchFile(ctx context.Context, path string, every time.Duration) <-chan struct{} {
	ch := make(chan struct{}, 1)
	stat := func() (time.Time, int64) {
		fi, err := os.Stat(path)
		if err != nil {
			return time.Time{}, -1
		}
		return fi.ModTime(), fi.Size()
	}
	mt, sz := stat()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			m, s := stat()
			if s >= 0 && (!m.Equal(mt) || s != sz) {
				mt, sz = m, s
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch
}
