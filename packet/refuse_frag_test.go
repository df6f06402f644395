package packet

import "testing"

// An answer built from a first fragment is a whole packet: MF and the fragment offset cleared
// (it would otherwise wait forever for the rest of a datagram that does not exist).
func TestRefusalFromFirstFragment(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto Proto
		make  func(*Packet) bool
	}{
		{"tcp reset", ProtoTCP, (*Packet).MakeTCPReset},
		{"port unreachable", ProtoUDP, (*Packet).MakePortUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, 0, 2048)
			b = append(b, build(t, pk{src: c4, dst: s4, proto: tc.proto, sport: 40000, dport: 80, flags: TCPSyn, fragMF: true, payload: []byte("first part")})...)
			var p Packet
			if r := p.Parse(b); r != OK || !p.IsFragment {
				t.Fatalf("parse: %v, first fragment %v", r, p.IsFragment)
			}
			if !tc.make(&p) {
				t.Fatal("answer refused")
			}
			h := p.IPv4()
			if h.MoreFragments() || h.FragmentOffset() != 0 || p.IsFragment || !h.HeaderChecksumOK() {
				t.Fatalf("answer: MF %v offset %d IsFragment %v checksum ok %v", h.MoreFragments(), h.FragmentOffset(), p.IsFragment, h.HeaderChecksumOK())
			}
			var again Packet
			if r := again.Parse(p.B); r != OK || again.IsFragment {
				t.Fatalf("answer parses as %v, fragment %v", r, again.IsFragment)
			}
		})
	}
}
