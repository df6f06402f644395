package takeover

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSource hands over one end of a pipe and counts what the protocol made it do.
type fakeSource struct {
	r, w                *os.File
	freezes, thaws, rel atomic.Int32
}

func (f *fakeSource) Freeze() ([]int, any, error) {
	f.freezes.Add(1)
	fd, err := unix.Dup(int(f.w.Fd()))
	return []int{fd}, map[string]int{"flows": 3}, err
}
func (f *fakeSource) Thaw() error { f.thaws.Add(1); return nil }
func (f *fakeSource) Release()    { f.rel.Add(1) }

func newFake(t *testing.T) *fakeSource {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return &fakeSource{r: r, w: w}
}

// TestHandover: a successor that aborts leaves the source thawed and the listener serving;
// the next one receives a working descriptor and the state, and once ready the source is
// released and Serve returns nil.
func TestHandover(t *testing.T) {
	path := filepath.Join(t.TempDir(), "takeover.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Listen(path); err == nil {
		t.Fatal("a second listener on a live socket")
	}
	src := newFake(t)
	served := make(chan error, 1)
	go func() { served <- ln.Serve(src, slog.New(slog.DiscardHandler)) }()

	var st map[string]int
	h, err := Request(path, &st)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range h.FDs {
		unix.Close(fd)
	}
	h.Abort() // the successor dies before ready
	waitUntil(t, func() bool { return src.thaws.Load() == 1 })

	h, err = Request(path, &st)
	if err != nil {
		t.Fatal(err)
	}
	if st["flows"] != 3 || len(h.FDs) != 1 {
		t.Fatalf("state %v, %d descriptors", st, len(h.FDs))
	}
	w := os.NewFile(uintptr(h.FDs[0]), "pipe")
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b := make([]byte, 1)
	if _, err := src.r.Read(b); err != nil || b[0] != 'x' {
		t.Fatalf("the handed-over descriptor does not reach the pipe: %q %v", b, err)
	}
	if err := h.Ready(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the hand-over")
	}
	if src.freezes.Load() != 2 || src.thaws.Load() != 1 || src.rel.Load() != 1 {
		t.Fatalf("freezes %d thaws %d releases %d", src.freezes.Load(), src.thaws.Load(), src.rel.Load())
	}
}

// TestRefusesOtherVersion: a successor speaking another protocol version gets no descriptors
// and the source is not frozen.
func TestRefusesOtherVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "takeover.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src := newFake(t)
	go ln.Serve(src, slog.New(slog.DiscardHandler))
	c, err := dialRaw(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := send(c, Message{Op: "takeover", Version: Version + 1}, nil); err != nil {
		t.Fatal(err)
	}
	m, fds, err := recv(c, time.Now().Add(5*time.Second))
	if err != nil || m.Op != "refused" || len(fds) != 0 {
		t.Fatalf("answer %+v, %d fds, %v", m, len(fds), err)
	}
	if src.freezes.Load() != 0 {
		t.Fatal("frozen for a successor of another version")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(errors.New("condition not met within 5 s"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dialRaw(path string) (*net.UnixConn, error) {
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
}

// FuzzRecv feeds arbitrary bytes to the frame reader: it must return a message or an error,
// never panic or allocate beyond MaxFrame.
func FuzzRecv(f *testing.F) {
	f.Add([]byte("EGTO\x00\x00\x00\x02{}"))
	f.Add([]byte("EGTO\x00\x00\x00\x10{\"op\":\"ready\"}  "))
	f.Add([]byte("EGTO\xff\xff\xff\xff"))
	f.Add([]byte("nope"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Skip(err)
		}
		a, z := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "z")
		defer a.Close()
		ca, err := net.FileConn(a)
		if err != nil {
			t.Fatal(err)
		}
		defer ca.Close()
		go func() { z.Write(b); z.Close() }()
		recv(ca.(*net.UnixConn), time.Now().Add(2*time.Second))
	})
}

// TestQuery: an info request is answered with what SetInfo set, without freezing the source,
// and the listener goes on serving hand-overs.
func TestQuery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "takeover.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := Info{PID: 42, Executable: "/usr/bin/edgegate", Args: []string{"run", "-c", "x.yaml"}, NotifySocket: "/run/systemd/notify"}
	ln.SetInfo(want)
	src := newFake(t)
	go ln.Serve(src, slog.New(slog.DiscardHandler))
	got, err := Query(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != want.PID || got.Executable != want.Executable || len(got.Args) != 3 || got.Args[2] != "x.yaml" || got.NotifySocket != want.NotifySocket {
		t.Fatalf("Query: %+v, want %+v", got, want)
	}
	var st map[string]int
	h, err := Request(path, &st)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(h.FDs)
	h.Abort()
	waitUntil(t, func() bool { return src.thaws.Load() == 1 })
	if src.freezes.Load() != 1 {
		t.Fatalf("%d freezes, want 1 (the hand-over, not the query)", src.freezes.Load())
	}
}
