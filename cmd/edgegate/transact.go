package main

import (
	"errors"
	"fmt"
	"log/slog"
)

// step is one part of a reload: do switches it to the new configuration, undo back to the
// running one. atomic: a failing do changed nothing (it rolled itself back), so only a
// successful one is undone; otherwise a failing do may have changed part of its state and is
// undone too.
type step struct {
	name     string
	do, undo func() error
	atomic   bool
}

// transact runs steps in order; when one fails it undoes what ran, last first, and returns the
// failure (with the undo's failures, which leave the node in a mixed state, logged as errors).
func transact(steps []step, log *slog.Logger) error {
	var done []step
	for _, st := range steps {
		err := st.do()
		if err == nil {
			done = append(done, st)
			continue
		}
		if !st.atomic {
			done = append(done, st)
		}
		var undoErrs []error
		for i := len(done) - 1; i >= 0; i-- {
			if uerr := done[i].undo(); uerr != nil {
				undoErrs = append(undoErrs, fmt.Errorf("%s: %w", done[i].name, uerr))
			}
		}
		if uerr := errors.Join(undoErrs...); uerr != nil {
			log.Error("reload: rolling back to the running configuration failed", "err", uerr)
		}
		return fmt.Errorf("%s: %w", st.name, err)
	}
	return nil
}
