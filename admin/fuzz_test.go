package admin

import (
	"net/url"
	"testing"

	"github.com/edgegate/edgegate/packet"
)

// FuzzParseCaptureFilter: any expression is accepted or refused without panicking, and an
// accepted one can be matched against any packet.
func FuzzParseCaptureFilter(f *testing.F) {
	for _, s := range []string{"", "tcp and port 80", "host 192.0.2.1 and after", "src 2001:db8::1 && dst ::ffff:1.2.3.4 udp before", "port", "host x", "icmpv6 port 65535"} {
		f.Add(s)
	}
	pkt := syn(f, vip, back1, 1234, 80)
	f.Fuzz(func(t *testing.T, s string) {
		cf, err := ParseCaptureFilter(s)
		if err != nil {
			return
		}
		tp := newTap(128)
		tp.Packet(0, pkt)
		buf := <-tp.full
		var p packet.Packet
		parsed := p.Parse(buf.b[:buf.n]) == packet.OK
		cf.match(0, &p, parsed)
	})
}

// FuzzParseFlowFilter: any query is accepted or refused without panicking; an accepted filter
// survives its own round trip through Values.
func FuzzParseFlowFilter(f *testing.F) {
	for _, s := range []string{"", "protocol=tcp&port=80", "address=::ffff:192.0.2.1", "backend=2001:db8::1&state=ESTABLISHED&service=web", "protocol=0", "port=70000", "state=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		ff, err := ParseFlowFilter(q)
		if err != nil {
			return
		}
		back, err := ParseFlowFilter(ff.Values())
		if err != nil || back != ff {
			t.Fatalf("%q: round trip %+v, %v; want %+v", s, back, err, ff)
		}
	})
}
