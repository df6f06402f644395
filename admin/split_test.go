package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgegate/edgegate/conntrack"
	"github.com/edgegate/edgegate/gateway"
)

// startSplit starts a server with a loopback TCP listener and a socket in a test directory.
func startSplit(t *testing.T, src Source, group string, lim limits) (*Server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "admin.sock")
	s := newServer(Options{Listen: "127.0.0.1:0", Socket: sock, SocketGroup: group, Pprof: true, Source: src,
		Registry: NewRegistry(NewCollector(src), "test")}, lim)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, sock
}

// TestSplit: the TCP listener serves metrics and probes only; the socket serves everything and
// is private to its owner.
func TestSplit(t *testing.T) {
	src := newFakeSource(t)
	src.open(t, 40000)
	s, sock := startSplit(t, src, "", defaultLimits)
	tcp := &Client{Base: "http://" + s.Addr().String(), HTTP: &http.Client{Timeout: 5 * time.Second}}
	unix := NewSocketClient(sock)
	do := func(c *Client, method, path string) (int, string) {
		req, _ := http.NewRequest(method, c.Base+path, nil)
		resp, err := c.HTTP.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		method, path string
		public       bool
	}{
		{"GET", "/metrics", true},
		{"GET", "/healthz", true},
		{"GET", "/readyz", true},
		{"GET", "/config", false},
		{"GET", "/status", false},
		{"GET", "/conntrack", false},
		{"GET", "/capture?count=1&duration=10ms", false},
		{"GET", "/debug/pprof/", false},
		{"DELETE", "/conntrack?port=40000", false},
	} {
		code, body := do(tcp, tc.method, tc.path)
		if tc.public && code != http.StatusOK {
			t.Errorf("TCP %s %s: %d, want 200", tc.method, tc.path, code)
		}
		if !tc.public && (code != http.StatusNotFound || !strings.Contains(body, "admin.socket")) {
			t.Errorf("TCP %s %s: %d %q, want 404 naming admin.socket", tc.method, tc.path, code, body)
		}
		if code, body := do(unix, tc.method, tc.path); code != http.StatusOK {
			t.Errorf("socket %s %s: %d %q, want 200", tc.method, tc.path, code, body)
		}
	}
	if src.ct.Len() != 0 {
		t.Errorf("the socket's DELETE left %d flows (the TCP one must not have run)", src.ct.Len())
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v: want a socket with mode 0600", fi, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() {
		t.Errorf("socket owner %d, want %d", st.Uid, os.Getuid())
	}
	s.Shutdown(context.Background())
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Shutdown: %v", err)
	}
}

// TestSocketGroup: socket_group makes the socket 0660 and group-owned.
func TestSocketGroup(t *testing.T) {
	gid := os.Getgid()
	_, sock := startSplit(t, newFakeSource(t), strconv.Itoa(gid), defaultLimits)
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("socket %v, %v: want mode 0660 group %d", fi, err, gid)
	}
	if _, err := listenUnix(filepath.Join(t.TempDir(), "s"), "no-such-group-edgegate", nil); err == nil {
		t.Error("an unknown group was accepted")
	}
}

// TestSocketStale: a stale socket is replaced, a live one or a file that is not a socket is not,
// and exit removes only the socket this process made.
func TestSocketStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnix(path, "", nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("live socket: %v, want refused", err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close() // now stale
	us, err := listenUnix(path, "", nil)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	// Someone replaced our socket: closing must not remove theirs.
	os.Remove(path)
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	us.close(discardLogger())
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("close removed a socket it did not make: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := listenUnix(file, "", nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: %v, want refused", err)
	}
}

// TestCaptureStalledReader: a capture whose client stops reading ends once its writes have been
// blocked for the stall timeout, and frees the tap for the next capture.
func TestCaptureStalledReader(t *testing.T) {
	src := newFakeSource(t)
	lim := defaultLimits
	lim.stall = 300 * time.Millisecond
	_, sock := startSplit(t, src, "", lim)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /capture HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	pkt := make([]byte, 1400)
	pkt[0] = 0x45
	deadline := time.Now().Add(10 * time.Second)
	for src.tap.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for {
		tp := src.tap.Load()
		if tp == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the capture of a client that reads nothing still runs after 10 s")
		}
		for range 64 {
			(*tp).Packet(gateway.BeforeNAT, pkt)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIdleTimeout: a keep-alive connection with no request is closed after the idle timeout.
func TestIdleTimeout(t *testing.T) {
	lim := defaultLimits
	lim.idle = 200 * time.Millisecond
	s, _ := startSplit(t, newFakeSource(t), "", lim)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle keep-alive connection: %v, want EOF (closed by the server)", err)
	}
}

// deletingWriter is a ResponseWriter that empties the table when the first byte of the body
// arrives: a listing built before writing still shows every flow, a streamed one does not.
type deletingWriter struct {
	h   http.Header
	ct  *conntrack.Table
	buf strings.Builder
}

func (w *deletingWriter) Header() http.Header { return w.h }
func (w *deletingWriter) WriteHeader(int)     {}
func (w *deletingWriter) Write(b []byte) (int, error) {
	if w.buf.Len() == 0 {
		w.ct.DeleteMatching(conntrack.Filter{})
	}
	return w.buf.Write(b)
}

// TestConntrackStreams: /conntrack writes rows as the table walk finds them.
func TestConntrackStreams(t *testing.T) {
	src := newFakeSource(t)
	for i := range 500 {
		src.open(t, uint16(40000+i))
	}
	w := &deletingWriter{h: http.Header{}, ct: src.ct}
	req, _ := http.NewRequest(http.MethodGet, "/conntrack", nil)
	NewServer(Options{Source: src}).Handler().ServeHTTP(w, req)
	rows := strings.Count(w.buf.String(), `"protocol"`)
	if rows == 0 || rows >= 500 {
		t.Fatalf("%d rows after the table was emptied at the first byte, want a few (streamed), not 0 or all 500", rows)
	}
	var out []Flow
	if err := jsonUnmarshal(w.buf.String(), &out); err != nil || len(out) != rows {
		t.Errorf("streamed listing is not a JSON array of %d rows: %v", rows, err)
	}
}

func TestLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9469": true, "[::1]:9469": true, "localhost:9469": true, "127.8.0.1:1": true,
		":9469": false, "0.0.0.0:9469": false, "198.18.0.1:9469": false, "[::]:9469": false, "bad": false,
	} {
		if got := loopbackListen(addr); got != want {
			t.Errorf("loopbackListen(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestSocketDirClaim: the socket's directory goes to the user the process will switch to when it
// holds nothing else (new, or left by an earlier run with a stale socket), never otherwise.
func TestSocketDirClaim(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chown needs root")
	}
	owner := &[2]int{65534, 65534}
	for _, tc := range []struct {
		name        string
		setup       func(dir string)
		wantClaimed bool
	}{
		{"new", func(string) {}, true},
		{"stale socket", func(dir string) {
			os.Mkdir(dir, 0o755)
			l, _ := net.Listen("unix", filepath.Join(dir, "admin.sock"))
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		}, true},
		{"shared", func(dir string) {
			os.Mkdir(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "other"), nil, 0o600)
		}, false},
	} {
		dir := filepath.Join(t.TempDir(), "run")
		tc.setup(dir)
		us, err := listenUnix(filepath.Join(dir, "admin.sock"), "", owner)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		fi, _ := os.Stat(dir)
		if claimed := fi.Sys().(*syscall.Stat_t).Uid == 65534; claimed != tc.wantClaimed {
			t.Errorf("%s: directory given to the user: %v, want %v", tc.name, claimed, tc.wantClaimed)
		}
		us.close(discardLogger())
	}
}
