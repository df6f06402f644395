package ingress

import (
	"bytes"
	"io"
	"net"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// readerConn is a net.Conn whose reads come from r (the guard only reads).
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// guarded runs the client byte stream in through an h2Guard and returns what the server reads.
func guarded(t testing.TB, in []byte) []byte {
	g := newH2Guard(readerConn{r: bytes.NewReader(in)})
	out, err := io.ReadAll(g)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// clientFrames builds a client stream: preface, then what build writes with a framer and an
// HPACK encoder.
func clientFrames(t *testing.T, build func(fr *http2.Framer, enc func(...string) []byte)) []byte {
	var buf bytes.Buffer
	buf.WriteString(h2Preface)
	fr := http2.NewFramer(&buf, nil)
	var hb bytes.Buffer
	e := hpack.NewEncoder(&hb)
	enc := func(kv ...string) []byte {
		hb.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			e.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return bytes.Clone(hb.Bytes())
	}
	build(fr, enc)
	return buf.Bytes()
}

// serverView parses what the server would read: settings of the first SETTINGS frame, and per
// header block the decoded fields (the server's own decoder).
func serverView(t *testing.T, b []byte) (settings []http2.Setting, blocks [][]hpack.HeaderField) {
	fr := http2.NewFramer(nil, bytes.NewReader(b[len(h2Preface):]))
	dec := hpack.NewDecoder(4096, nil)
	var block []byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			f.ForeachSetting(func(s http2.Setting) error { settings = append(settings, s); return nil })
		case *http2.HeadersFrame:
			block = append([]byte(nil), f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				fs, _ := dec.DecodeFull(block)
				blocks = append(blocks, fs)
			}
		case *http2.ContinuationFrame:
			block = append(block, f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				fs, _ := dec.DecodeFull(block)
				blocks = append(blocks, fs)
			}
		}
	}
}

func TestH2Guard(t *testing.T) {
	req := []string{":method", "GET", ":scheme", "https", ":path", "/", ":authority", "a.test"}
	in := clientFrames(t, func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
			http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 15}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(append(req, "x-ok", "1")...), EndStream: true, EndHeaders: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(append(req, "connection", "keep-alive")...), EndStream: true, EndHeaders: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: enc(append(req, "te", "trailers")...), EndStream: true, EndHeaders: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: enc(append(req, "te", "gzip")...), EndStream: true, EndHeaders: true})
	})
	settings, blocks := serverView(t, guarded(t, in))
	if want := []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 1 << 15}, {ID: http2.SettingInitialWindowSize, Val: 1}}; !equalSettings(settings, want) {
		t.Errorf("settings %v, want %v", settings, want)
	}
	if len(blocks) != 4 {
		t.Fatalf("%d header blocks, want 4", len(blocks))
	}
	for i, refused := range []bool{false, true, false, true} {
		last := blocks[i][len(blocks[i])-1]
		if got := last.Name == "X-Refused"; got != refused {
			t.Errorf("block %d: refused %v, want %v (%v)", i, got, refused, blocks[i])
		}
	}
}

func equalSettings(a, b []http2.Setting) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzH2Guard: any client byte stream passes the guard without a panic, and a stream the guard
// does not rewrite (no SETTINGS, no header block) reaches the server unchanged.
func FuzzH2Guard(f *testing.F) {
	f.Add([]byte(h2Preface + "\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x01"))
	f.Add([]byte(h2Preface + "\x00\x00\x05\x01\x2d\x00\x00\x00\x01\x04\x82\x84\x86\x41"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := guarded(t, in)
		if len(out) < len(in)-h2MaxGuardedBlock {
			t.Fatalf("guard lost bytes: %d in, %d out", len(in), len(out))
		}
		if !bytes.Contains(in, []byte{0x04}) && !bytes.Contains(in, []byte{0x01}) && !bytes.Contains(in, []byte{0x09}) && !bytes.Equal(in, out) {
			t.Fatalf("stream without settings or headers changed")
		}
	})
}
