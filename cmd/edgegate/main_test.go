package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "usage"},
		{[]string{"frob"}, 2, "unknown command"},
		{[]string{"conntrack"}, 2, "usage: edgegate conntrack"},
		{[]string{"conntrack", "list", "-p", "sctp"}, 2, "protocol"},
		{[]string{"capture"}, 2, "-o FILE is required"},
		{[]string{"capture", "-o", "x", "-filter", "frob"}, 2, "unknown term"},
		{[]string{"status", "-c", "/nonexistent.yaml"}, 1, "nonexistent"},
	} {
		var out, errw bytes.Buffer
		if code := run(tc.args, &out, &errw); code != tc.code || !strings.Contains(errw.String(), tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d containing %q", tc.args, code, errw.String(), tc.code, tc.msg)
		}
	}
}

// TestConntrackList: the CLI sends the filter as query parameters and prints conntrack -L rows.
func TestConntrackList(t *testing.T) {
	var query string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		json.NewEncoder(w).Encode([]map[string]any{{
			"protocol": "tcp", "state": "established", "timeout_seconds": 300, "assured": true, "seen_reply": true,
			"original": map[string]any{"src": "198.18.1.2", "dst": "198.18.200.10", "sport": 40000, "dport": 80},
			"reply":    map[string]any{"src": "198.19.1.2", "dst": "198.18.250.1", "sport": 8080, "dport": 31000},
			"kind":     "service", "service": "web", "backend": "198.19.1.2",
		}})
	}))
	defer ts.Close()
	var out, errw bytes.Buffer
	addr := strings.TrimPrefix(ts.URL, "http://")
	if code := run([]string{"conntrack", "list", "-admin", addr, "-p", "tcp", "-service", "web", "-state", "established"}, &out, &errw); code != 0 {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	want := "tcp      6 300 ESTABLISHED src=198.18.1.2 dst=198.18.200.10 sport=40000 dport=80 src=198.19.1.2 dst=198.18.250.1 sport=8080 dport=31000 [ASSURED] service=web\n"
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
	for _, p := range []string{"protocol=6", "service=web", "state=established"} {
		if !strings.Contains(query, p) {
			t.Errorf("query %q lacks %s", query, p)
		}
	}
	if !strings.Contains(errw.String(), "1 flow entries have been shown") {
		t.Errorf("stderr %q", errw.String())
	}
}

func TestWatchFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := watchFile(ctx, path, 10*time.Millisecond)
	select {
	case <-ch:
		t.Fatal("change reported for an untouched file")
	case <-time.After(50 * time.Millisecond):
	}
	if err := os.WriteFile(path, []byte("a: 12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("change not reported")
	}
}

func TestLookupRunUser(t *testing.T) {
	for _, tc := range []struct {
		name    string
		uid     int
		wantErr bool
	}{
		{"root", -1, false},
		{"", -1, false},
		{"nobody", 65534, false},
		{"no-such-user-edgegate", 0, true},
	} {
		ru, err := lookupRunUser(tc.name)
		if (err != nil) != tc.wantErr || (err == nil && ru.uid != tc.uid) {
			t.Errorf("lookupRunUser(%q) = %+v, %v; want uid %d, error %v", tc.name, ru, err, tc.uid, tc.wantErr)
		}
	}
}
