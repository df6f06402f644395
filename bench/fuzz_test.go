package main

import (
	"testing"
)

// FuzzParseSystemStat: never panics, and softirq is part of the total it reports.
func FuzzParseSystemStat(f *testing.F) {
	f.Add("cpu  100 5 50 800 10 3 30 2 7 1\ncpu0 50 2 25 400 5 1 15 1 0 0\n")
	f.Add("cpu 1 2 3 4 5 6 7\n")
	f.Add("intr 1\ncpu 18446744073709551615 0 0 0 0 0 1 0\n")
	f.Fuzz(func(t *testing.T, s string) {
		soft, total, err := parseSystemStat(s)
		if err == nil && soft > total {
			t.Fatalf("softirq %d > total %d", soft, total)
		}
	})
}

// FuzzParseIperf: never panics; an accepted result has both sides' durations.
func FuzzParseIperf(f *testing.F) {
	f.Add([]byte(`{"end":{"sum_sent":{"seconds":1,"packets":10},"sum_received":{"seconds":1,"packets":9,"lost_packets":1}}}`))
	f.Add([]byte(`{"error":"the server is busy"}`))
	f.Add([]byte("warning\n{\"end\":{}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseIperf(b)
		if err == nil && (r.End.SumReceived.Seconds <= 0 || r.End.SumSent.Seconds <= 0) {
			t.Fatalf("accepted %q without durations", b)
		}
	})
}

// FuzzParseTxPackets: never panics on arbitrary `ip -j` output.
func FuzzParseTxPackets(f *testing.F) {
	f.Add([]byte(`[{"ifname":"g1","stats64":{"tx":{"packets":10}}}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseTxPackets(b)
	})
}
