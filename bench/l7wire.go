package main

import (
	"context"
	"time"

	"github.com/edgegate/edgegate/bench/l7"
)

// The L7 benchmark (edgegate's ingress against nginx and HAProxy as reverse proxies, wrk on
// loopback) runs after the L4 cases; -quick shortens it to one 1 s run per proxy and mode.
func init() {
	l7Hook = func(ctx context.Context, quick bool, dir string) (any, error) {
		var opt l7.Options
		if quick {
			opt.Duration, opt.Repeats = time.Second, 1
		}
		return l7.Run(ctx, opt)
	}
}
