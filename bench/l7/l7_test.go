package l7

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 1s test @ http://127.0.0.1:1234/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.51ms  520.11us  12.00ms   80.00%
    Req/Sec    21.10k     1.20k   23.00k    70.00%
  Latency Distribution
     50%    1.40ms
     75%    1.70ms
     90%    2.10ms
     99%  850.00us
  42000 requests in 1.00s, 8.00MB read
  Socket errors: connect 0, read 3, write 1, timeout 0
  Non-2xx or 3xx responses: 2
Requests/sec:  41998.50
Transfer/sec:      8.00MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS != 41998.50 || r.Requests != 42000 || r.P50 != 1400*time.Microsecond || r.P99 != 850*time.Microsecond || r.Errors != 6 {
		t.Fatalf("parsed %+v", r)
	}
	if _, err := parseWrk("garbage"); err == nil {
		t.Fatal("parsed garbage")
	}
}

// TestRun runs the whole benchmark briefly (1 s per run). It needs wrk, nginx and haproxy: in CI
// their absence fails the test, elsewhere it skips.
func TestRun(t *testing.T) {
	for _, tool := range []string{"wrk", "nginx", "haproxy"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed (required in CI)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{Duration: time.Second, Repeats: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{Direct, Edgegate, Nginx, HAProxy} {
		for _, m := range []string{KeepAlive, NewConn} {
			s, ok := rep.Lookup(p, m)
			if !ok {
				t.Errorf("no result for %s %s", p, m)
				continue
			}
			if s.RPS <= 0 || s.P99 <= 0 {
				t.Errorf("%s %s: %+v", p, m, s)
			}
			if s.Errors > 0 {
				t.Errorf("%s %s: %d errors", p, m, s.Errors)
			}
		}
	}
	md := rep.Markdown()
	if !strings.Contains(md, "| edgegate | keepalive |") || !strings.Contains(md, "x nginx") {
		t.Errorf("markdown lacks the edgegate row or ratios:\n%s", md)
	}
	t.Log("\n" + md)
}

// FuzzParseWrk: the wrk output parser never panics and never reports a result without a p99.
func FuzzParseWrk(f *testing.F) {
	f.Add("Requests/sec: 1.0\n     99%  1.00ms\n")
	f.Add("  1 requests in 1s\n  Socket errors: connect 1, read 2, write 3, timeout 4\nRequests/sec: 5\n     50%  2us\n     99%  3s\n")
	f.Fuzz(func(t *testing.T, out string) {
		r, err := parseWrk(out)
		if err == nil && r.P99 <= 0 {
			t.Fatalf("no error but p99 %v", r.P99)
		}
	})
}
