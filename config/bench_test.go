package config

import (
	"fmt"
	"strings"
	"testing"
)

// bigConfig is a file with n services of 8 backends each.
func bigConfig(n int) []byte {
	var b strings.Builder
	b.WriteString("nat:\n  masquerade_addresses: [198.18.250.1]\nservices:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: svc-%d\n    addresses: [198.18.%d.%d]\n    scheduler: maglev\n    ports: [{name: http, port: 80, target_port: 8080}, {name: dns, protocol: udp, port: 53}]\n    backends:\n", i, 100+i/250, 1+i%250)
		for j := range 8 {
			fmt.Fprintf(&b, "      - address: 198.19.%d.%d\n", i%250, 10+j)
		}
	}
	return []byte(b.String())
}

// BenchmarkParse measures load time for a large file (reloads parse the whole file).
func BenchmarkParse(b *testing.B) {
	for _, n := range []int{10, 1000} {
		data := bigConfig(n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Parse(data, "bench.yaml"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkServiceByName shows the lookup the data path and API use is a map read without
// allocation.
func BenchmarkServiceByName(b *testing.B) {
	c, err := Parse(bigConfig(1000), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if c.ServiceByName("svc-999") == nil {
			b.Fatal("not found")
		}
	}
}

func TestServiceByNameAllocs(t *testing.T) {
	c, err := Parse(bigConfig(3), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = c.ServiceByName("svc-2") }); n != 0 {
		t.Errorf("ServiceByName allocates %v times", n)
	}
	if s := c.ServiceByName("svc-2"); s == nil || s.Name != "svc-2" || len(s.Backends) != 8 {
		t.Errorf("ServiceByName(svc-2) = %+v", s)
	}
}

func TestServiceByNameOnLiteral(t *testing.T) {
	c := &Config{Services: []Service{{Name: "a"}, {Name: "b"}}}
	if s := c.ServiceByName("b"); s != &c.Services[1] {
		t.Errorf("ServiceByName(b) = %p, want %p", s, &c.Services[1])
	}
	if c.ServiceByName("c") != nil {
		t.Error("ServiceByName(c) found something")
	}
}
