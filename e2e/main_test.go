// Package e2e runs edgegate as a subprocess inside network namespaces and pushes real traffic
// (curl, iperf3, ping, Go clients) through it.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// edgegateBin is the edgegate executable built once for the package.
var edgegateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgegate-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	edgegateBin = filepath.Join(dir, "edgegate")
	args := []string{"build", "-o", edgegateBin}
	if os.Getenv("EDGEGATE_E2E_RACE") != "" {
		args = append(args, "-race") // needs cgo: such a binary keeps its privileges
	}
	cmd := exec.Command("go", append(args, "../cmd/edgegate")...)
	if os.Getenv("EDGEGATE_E2E_RACE") == "" {
		// Static, as the Dockerfile builds it: only such a binary drops its privileges after start.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build edgegate:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
