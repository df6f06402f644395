package main

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// TestTransact: a reload's steps (gateway, health checks, bgp, ingress) with a failure injected
// in each: every step that ran is switched back, last first, so each part runs the running
// configuration again; an atomic step that failed is not undone (it rolled itself back), a
// non-atomic one is; the steps after the failure do not run.
func TestTransact(t *testing.T) {
	names := []string{"gateway", "health checks", "bgp", "ingress"}
	for fail := range len(names) + 1 {
		var log []string
		state := map[string]string{}
		var steps []step
		for i, n := range names {
			steps = append(steps, step{
				name: n, atomic: n == "gateway",
				do: func() error {
					log = append(log, "do "+n)
					if i == fail {
						if n != "gateway" {
							state[n] = "half" // a non-atomic step may fail half-way
						}
						return errors.New("injected")
					}
					state[n] = "next"
					return nil
				},
				undo: func() error { log = append(log, "undo "+n); state[n] = "prev"; return nil },
			})
		}
		err := transact(steps, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if fail == len(names) {
			if err != nil || len(state) != len(names) || slices.ContainsFunc(names, func(n string) bool { return state[n] != "next" }) {
				t.Fatalf("no failure: err %v, state %v", err, state)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), names[fail]+": ") {
			t.Fatalf("failure in %s: err %v", names[fail], err)
		}
		for i, n := range names {
			want := "prev"
			switch {
			case i > fail || i == fail && n == "gateway":
				want = "" // never ran, or rolled itself back
			}
			if state[n] != want {
				t.Errorf("failure in %s: %s is %q, want %q (log %v)", names[fail], n, state[n], want, log)
			}
		}
		// Undone in reverse order.
		var undone []string
		for _, l := range log {
			if n, ok := strings.CutPrefix(l, "undo "); ok {
				undone = append(undone, n)
			}
		}
		if !slices.IsSortedFunc(undone, func(a, b string) int { return slices.Index(names, b) - slices.Index(names, a) }) {
			t.Errorf("undo order %v", undone)
		}
	}
}
