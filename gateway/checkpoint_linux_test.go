package gateway

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckpointFile: a checkpoint is written with mode 0600 and no temporary file left, read
// back equal, replaced whole by the next write; a missing file is no checkpoint, and a file of
// another version or not JSON is an error (the start goes on without it).
func TestCheckpointFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flows.json")
	if h, err := readCheckpoint(path); h != nil || err != nil {
		t.Fatalf("missing file: %v %v", h, err)
	}
	exp := time.Now().Add(time.Hour).UnixNano()
	h := &Handover{Version: HandoverVersion, Flows: []SavedFlow{{Kind: 1, Service: "rr", Proto: 6,
		OrigSrc: netip.MustParseAddrPort("198.18.1.2:40000"), OrigDst: netip.MustParseAddrPort("198.18.200.70:80"),
		ReplySrc: netip.MustParseAddrPort("198.19.1.2:8080"), ReplyDst: netip.MustParseAddrPort("198.18.250.1:40000"),
		State: "established", Assured: true, SeenReply: true, Expires: exp}}}
	for i := range 2 {
		h.Flows[0].OrigSrc = netip.AddrPortFrom(h.Flows[0].OrigSrc.Addr(), uint16(40000+i))
		if err := writeCheckpoint(path, h); err != nil {
			t.Fatal(err)
		}
		got, err := readCheckpoint(path)
		if err != nil || len(got.Flows) != 1 || got.Flows[0] != h.Flows[0] {
			t.Fatalf("write %d: read back %+v %v", i, got, err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v, want 0600", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want the checkpoint alone", len(ents))
	}
	for _, bad := range []struct{ body, want string }{
		{`{"version": 99, "flows": []}`, "version 99"},
		{`{"version": `, "checkpoint"},
	} {
		os.WriteFile(path, []byte(bad.body), 0o600)
		if _, err := readCheckpoint(path); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want an error with %q", bad.body, err, bad.want)
		}
	}
	if err := writeCheckpoint(filepath.Join(dir, "missing", "flows.json"), h); err == nil {
		t.Error("a checkpoint in a missing directory was written")
	}
}
