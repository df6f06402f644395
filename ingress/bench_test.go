package ingress

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
)

// BenchmarkProxy measures one keep-alive request through the ingress to a 64-byte backend,
// including the client and the backend (all in this process), with allocations.
func BenchmarkProxy(b *testing.B) { benchProxy(b, false) }

func benchProxy(b *testing.B, direct bool) {
	body := []byte(strings.Repeat("x", 64))
	var conns atomic.Int64
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bsrv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go bsrv.Serve(bln)
	defer bsrv.Close()
	ing := &config.Ingress{Listeners: plainListener(),
		Routes: []config.HTTPRoute{{Name: "b", Rules: []config.Rule{{Backends: []config.BackendRef{ref("b", 80, 1)}}}}}}
	s, err := New(&config.Config{Ingress: ing}, newFixed().add("b", 80, mustAddrPort(bln.Addr())), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(b.Context())
	url := "http://" + s.Addrs()[0].String() + "/"
	if direct {
		url = "http://" + bln.Addr().String() + "/"
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.StopTimer()
	// Process CPU time per request (client, proxy and backend together): unlike ns/op it does not
	// depend on how much of the machine other processes take.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(conns.Load()), "backend-conns")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDirect is BenchmarkProxy without the proxy (client straight to the backend): the
// difference of the two cpu-us/op is the ingress's own cost per request.
func BenchmarkDirect(b *testing.B) { benchProxy(b, true) }
