package l7

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestZZProf(t *testing.T) {
	if os.Getenv("L7PROF") == "" {
		t.Skip()
	}
	rep, err := Run(context.Background(), Options{Duration: 3 * time.Second, Repeats: 3,
		Proxies: strings.Split(os.Getenv("L7PROXIES"), ","), Modes: strings.Split(os.Getenv("L7MODES"), ","), CPUProfile: os.Getenv("L7PROF")})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.Markdown())
}
