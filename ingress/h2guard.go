package ingress

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 conformance on TLS listeners. Go's HTTP/2 server diverges from RFC 9113 in two places
// that h2spec checks, and has no option for either:
//   - a request with a connection-specific header field (Connection, Keep-Alive,
//     Proxy-Connection, Transfer-Encoding, Upgrade, TE other than "trailers") is answered 400,
//     where section 8.2.2 makes it malformed: a stream error of type PROTOCOL_ERROR;
//   - a SETTINGS frame naming one setting twice ends the connection, where section 6.5.3 says
//     the values are processed in order.
//
// h2Guard sits between the TLS connection and the HTTP/2 server and reads the client's frames
// first. It keeps a copy of the server's HPACK decoder state (by decoding every header block
// itself), and when a block carries a connection-specific field it appends to the block one
// literal field, not indexed (so the dynamic tables stay as they are), whose name is not a valid
// HTTP/2 field name: the server's frame reader then refuses the request with RST_STREAM
// PROTOCOL_ERROR before any handler, so it is never translated to HTTP/1. A SETTINGS frame with
// repeated identifiers is rewritten to the last value of each, the result of processing them in
// order. Anything the guard cannot follow (a frame larger than h2MaxReadFrameSize, an HPACK
// error, an oversized block) turns it into a plain pass-through: the server then judges the
// stream, and will refuse it as it must.
const (
	h2MaxReadFrameSize = 16 << 10 // the RFC's default SETTINGS_MAX_FRAME_SIZE, also nginx's
	h2MaxGuardedBlock  = 1 << 20  // header block bytes the guard collects before giving up
	h2FrameHeaderLen   = 9
)

// Frame types and flags the guard reads (RFC 9113 section 6).
const (
	h2FrameHeaders      = 0x1
	h2FrameSettings     = 0x4
	h2FrameContinuation = 0x9
	h2FlagAck           = 0x1
	h2FlagEndHeaders    = 0x4
	h2FlagPadded        = 0x8
	h2FlagPriority      = 0x20
)

// h2InvalidField is the literal header field appended to a refused block: "literal without
// indexing, new name" (RFC 7541 6.2.2), name "X-Refused" (upper case is invalid in HTTP/2), empty
// value.
var h2InvalidField = []byte{0x00, 9, 'X', '-', 'R', 'e', 'f', 'u', 's', 'e', 'd', 0}

// configureH2 serves HTTP/2 on a TLS server through h2Guard, with frames limited to
// h2MaxReadFrameSize.
func configureH2(srv *http.Server) error {
	h2s := &http2.Server{MaxReadFrameSize: h2MaxReadFrameSize}
	if err := http2.ConfigureServer(srv, h2s); err != nil { // registers graceful shutdown
		return err
	}
	srv.TLSNextProto[http2.NextProtoTLS] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		ctx := context.Background()
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		// h is net/http's wrapper that sets Request.TLS from c.
		h2s.ServeConn(newH2Guard(c), &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs})
	}
	return nil
}

// h2Guard is the client side of a server HTTP/2 connection, filtered as described above.
type h2Guard struct {
	net.Conn
	in      []byte // read from the connection, not yet a whole frame
	out     []byte // filtered bytes for the server
	preface int    // bytes of the client preface still to pass
	off     bool   // pass-through from here on
	dec     *hpack.Decoder
	block   []byte // header block being collected
	bad     bool   // the block has a connection-specific field
	err     error  // the connection's read error, returned once out is empty
	rbuf    []byte
}

func newH2Guard(c net.Conn) *h2Guard {
	g := &h2Guard{Conn: c, preface: len(h2Preface)}
	g.dec = hpack.NewDecoder(4096, func(f hpack.HeaderField) { // 4096: the server's SETTINGS_HEADER_TABLE_SIZE
		if connectionSpecific(f.Name, f.Value) {
			g.bad = true
		}
	})
	return g
}

// connectionSpecific reports a field RFC 9113 section 8.2.2 forbids in HTTP/2.
func connectionSpecific(name, value string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	case "te":
		return value != "trailers"
	}
	return false
}

func (g *h2Guard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.off && len(g.in) == 0 {
			return g.Conn.Read(p)
		}
		if g.err != nil {
			return 0, g.err
		}
		if g.rbuf == nil {
			g.rbuf = make([]byte, 16<<10)
		}
		n, err := g.Conn.Read(g.rbuf)
		g.in = append(g.in, g.rbuf[:n]...)
		g.filter()
		if err != nil {
			// A partial frame goes to the server as it is, then the error.
			g.out, g.in, g.err = append(g.out, g.in...), nil, err
		}
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	if len(g.out) == 0 {
		g.out = nil
	}
	return n, nil
}

// filter moves every whole frame of g.in to g.out, rewriting where needed.
func (g *h2Guard) filter() {
	if g.preface > 0 {
		n := min(g.preface, len(g.in))
		if string(g.in[:n]) != h2Preface[len(h2Preface)-g.preface:][:n] {
			g.off = true
		}
		g.preface -= n
		g.out, g.in = append(g.out, g.in[:n]...), g.in[n:]
	}
	for !g.off && len(g.in) >= h2FrameHeaderLen {
		length := int(g.in[0])<<16 | int(g.in[1])<<8 | int(g.in[2])
		if length > h2MaxReadFrameSize {
			g.off = true
			break
		}
		if len(g.in) < h2FrameHeaderLen+length {
			return
		}
		frame := g.in[:h2FrameHeaderLen+length]
		g.in = g.in[len(frame):]
		g.frame(frame)
	}
	if g.off {
		g.out, g.in = append(g.out, g.in...), nil
	}
}

// frame forwards one whole frame.
func (g *h2Guard) frame(f []byte) {
	typ, flags := f[3], f[4]
	payload := f[h2FrameHeaderLen:]
	switch {
	case typ == h2FrameSettings && flags&h2FlagAck == 0:
		f = dedupSettings(f)
	case typ == h2FrameHeaders:
		frag, ok := headerFragment(flags, payload)
		if !ok || g.block != nil {
			g.off = true // malformed, or a block still open: the server will refuse it
			break
		}
		g.block = append(make([]byte, 0, len(frag)), frag...)
		if flags&h2FlagEndHeaders != 0 {
			g.out = g.endBlock(f)
			return
		}
	case typ == h2FrameContinuation && g.block != nil:
		g.block = append(g.block, payload...)
		if len(g.block) > h2MaxGuardedBlock {
			g.off = true
			break
		}
		if flags&h2FlagEndHeaders != 0 {
			g.out = g.endBlock(f)
			return
		}
	case g.block != nil:
		g.off = true // a frame inside a header block: the server will refuse it
	}
	g.out = append(g.out, f...)
}

// endBlock decodes the finished header block and returns g.out with its last frame f appended,
// plus the refusing CONTINUATION frame when the block is malformed.
func (g *h2Guard) endBlock(f []byte) []byte {
	g.bad = false
	_, err := g.dec.Write(g.block)
	if err == nil {
		err = g.dec.Close()
	}
	g.block = nil
	out := append(g.out, f...)
	if err != nil {
		g.off = true // the server's decoder fails too
		return out
	}
	if g.bad {
		out[len(out)-len(f)+4] &^= h2FlagEndHeaders
		var hdr [h2FrameHeaderLen]byte
		hdr[2] = byte(len(h2InvalidField))
		hdr[3], hdr[4] = h2FrameContinuation, h2FlagEndHeaders
		copy(hdr[5:], f[5:9]) // same stream
		out = append(append(out, hdr[:]...), h2InvalidField...)
	}
	return out
}

// headerFragment returns the header block fragment of a HEADERS frame payload.
func headerFragment(flags byte, p []byte) ([]byte, bool) {
	pad := 0
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// dedupSettings rewrites a SETTINGS frame that names a setting more than once so that each
// appears once with its last value (an invalid value, which the server must refuse, is kept
// instead); other frames are returned as they are.
func dedupSettings(f []byte) []byte {
	p := f[h2FrameHeaderLen:]
	if len(p)%6 != 0 {
		return f
	}
	n := len(p) / 6
	dup := false
	for i := 0; i < n && !dup; i++ {
		for j := i + 1; j < n; j++ {
			if p[i*6] == p[j*6] && p[i*6+1] == p[j*6+1] {
				dup = true
				break
			}
		}
	}
	if !dup {
		return f
	}
	var ids []uint16
	vals := map[uint16]uint32{}
	for i := range n {
		id, v := binary.BigEndian.Uint16(p[i*6:]), binary.BigEndian.Uint32(p[i*6+2:])
		if old, seen := vals[id]; seen {
			if !validSetting(id, old) {
				continue // keep the invalid value for the server to refuse
			}
			ids = slicesDelete(ids, id)
		}
		ids = append(ids, id)
		vals[id] = v
	}
	out := make([]byte, h2FrameHeaderLen, h2FrameHeaderLen+6*len(ids))
	copy(out, f[:h2FrameHeaderLen])
	for _, id := range ids {
		out = binary.BigEndian.AppendUint16(out, id)
		out = binary.BigEndian.AppendUint32(out, vals[id])
	}
	l := len(out) - h2FrameHeaderLen
	out[0], out[1], out[2] = byte(l>>16), byte(l>>8), byte(l)
	return out
}

func slicesDelete(ids []uint16, id uint16) []uint16 {
	for i, x := range ids {
		if x == id {
			return append(ids[:i], ids[i+1:]...)
		}
	}
	return ids
}

// validSetting applies the value checks of RFC 9113 section 6.5.2.
func validSetting(id uint16, v uint32) bool {
	switch http2.SettingID(id) {
	case http2.SettingEnablePush:
		return v <= 1
	case http2.SettingInitialWindowSize:
		return v <= 1<<31-1
	case http2.SettingMaxFrameSize:
		return v >= 1<<14 && v <= 1<<24-1
	}
	return true
}
