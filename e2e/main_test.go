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
		args = append(args, "-race")
	}
	// Built as the README says (CGO_ENABLED as the machine has it: with a C compiler, a cgo
	// binary); ops_privileges_test also runs a CGO_ENABLED=0 build as the Dockerfile makes.
	cmd := exec.Command("go", append(args, "../cmd/edgegate")...)
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
