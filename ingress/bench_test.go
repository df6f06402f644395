package ingress

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgegate/edgegate/config"
)

// BenchmarkProxy measures one keep-alive request through the ingress to a 64-byte backend,
// including the client and the backend (all in this process), with allocations.
func BenchmarkProxy(b *testing.B) {
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
	off := false
	ing := &config.Ingress{AccessLog: &off, Listeners: plainListener(),
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
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	b.ReportAllocs()
	b.ResetTimer()
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
	b.ReportMetric(float64(conns.Load()), "backend-conns")
}
