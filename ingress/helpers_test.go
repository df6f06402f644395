package ingress

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgegate/edgegate/config"
)

// counterValue reads one child of a counter vector.
func counterValue(t *testing.T, v *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := v.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// histogramCount returns the sample count of the histogram series with the given route label,
// summed over their status codes.
func histogramCount(t *testing.T, g prometheus.Gatherer, name, route string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && l.GetValue() == route {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return n
}

// histogramCountFor returns the sample count of the series with exactly these route and code labels.
func histogramCountFor(t *testing.T, g prometheus.Gatherer, name, route, code string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// fixedUpstreams is a test Upstreams: round robin over fixed addresses per service port.
type fixedUpstreams struct {
	m map[string][]netip.AddrPort
	n atomic.Uint64
}

func newFixed() *fixedUpstreams { return &fixedUpstreams{m: map[string][]netip.AddrPort{}} }

func (f *fixedUpstreams) add(service string, port uint16, addrs ...netip.AddrPort) *fixedUpstreams {
	k := fmt.Sprintf("%s/%d", service, port)
	f.m[k] = append(f.m[k], addrs...)
	return f
}

func (f *fixedUpstreams) Pick(service string, port uint16, _ netip.Addr) (netip.AddrPort, bool) {
	as := f.m[fmt.Sprintf("%s/%d", service, port)]
	if len(as) == 0 {
		return netip.AddrPort{}, false
	}
	return as[f.n.Add(1)%uint64(len(as))], true
}

// backend is a real HTTP server on loopback that answers with its name and echoes what it saw.
type backend struct {
	name string
	srv  *http.Server
	addr netip.AddrPort
	hits atomic.Int64
}

// startBackend serves h (nil: the echo handler) on 127.0.0.1:0 until the test ends.
func startBackend(t *testing.T, name string, h http.Handler) *backend {
	t.Helper()
	b := &backend{name: name}
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			w.Header().Set("X-Seen-Path", r.URL.RequestURI())
			w.Header().Set("X-Seen-Host", r.Host)
			w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
			w.Header().Set("X-Seen-XFP", r.Header.Get("X-Forwarded-Proto"))
			w.Header().Set("X-Seen-XFH", r.Header.Get("X-Forwarded-Host"))
			w.Header().Set("X-Seen-Hop", r.Header.Get("X-Hop")+"|"+r.Header.Get("Keep-Alive"))
			w.Header().Set("X-Seen-Req", r.Header.Get("X-Req"))
			w.Header().Set("X-Seen-Removed", r.Header.Get("X-Remove-Me"))
			w.Header().Set("X-Resp-Remove", "present")
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %d", name, r.Method, len(body))
		})
	}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { b.hits.Add(1); h.ServeHTTP(w, r) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = netip.MustParseAddrPort(ln.Addr().String())
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	b.srv = &http.Server{Handler: counted, Protocols: &p, ReadHeaderTimeout: 5 * time.Second}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// refusedAddr returns a loopback address nobody listens on (connections are refused).
func refusedAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return a
}

// logBuffer collects JSON log lines safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startIngress builds and starts a Server for ing, shutting it down when the test ends.
func startIngress(t *testing.T, ing *config.Ingress, ups Upstreams, opt Options) *Server {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(&config.Config{Ingress: ing}, ups, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func addrOf(t *testing.T, s *Server, name string) string {
	t.Helper()
	a, ok := s.Addr(name)
	if !ok {
		t.Fatalf("listener %q not listening", name)
	}
	return a.String()
}

// noRedirectClient returns the response of the first hop, never following redirects.
var noRedirectClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableKeepAlives: false, MaxIdleConnsPerHost: 16},
}

func get(t *testing.T, method, url, host string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := noRedirectClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// testPKI is a CA and leaf certificates written to PEM files in a temp directory.
type testPKI struct {
	dir    string
	caKey  *ecdsa.PrivateKey
	caCert *x509.Certificate
	caFile string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edgegate test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), caKey: key, caCert: ca}
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	return p
}

var serial atomic.Int64

// leaf issues a certificate for names and returns its config entry.
func (p *testPKI) leaf(t *testing.T, cn string, names ...string) config.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := config.Certificate{Hostnames: names,
		CertFile: filepath.Join(p.dir, fmt.Sprintf("%s-%d.crt", cn, serial.Load())),
		KeyFile:  filepath.Join(p.dir, fmt.Sprintf("%s-%d.key", cn, serial.Load()))}
	writePEM(t, c.CertFile, "CERTIFICATE", der)
	writePEM(t, c.KeyFile, "EC PRIVATE KEY", kder)
	return c
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustAddrPort(a net.Addr) netip.AddrPort { return netip.MustParseAddrPort(a.String()) }
