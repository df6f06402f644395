package procstat

import (
	"fmt"
	"os"
	"testing"
)

func TestTicks(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"1234 (edgegate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 99 0", 325, false},
		// A command name with spaces and parentheses: fields count from the last ')'.
		{"77 (a) b (c)) R 1 77 77 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0", 7, false},
		{"77 edgegate S 1", 0, true},
		{"77 (x) S 1 2 3", 0, true},
		{"77 (x) S 1 77 77 0 -1 0 0 0 0 0 abc 4 0", 0, true},
		{"77 (x) S z 77 77 0 -1 0 0 0 0 0 3 4 0", 0, true},
	}
	for _, tt := range tests {
		got, err := Ticks(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Ticks(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestTree: a process's tree includes at least its own time, and the test process has burnt some.
func TestTree(t *testing.T) {
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	self, err := Process(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	tree, err := Tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree < self {
		t.Errorf("Tree = %d < Process = %d", tree, self)
	}
	if _, err := Process(-1); err == nil {
		t.Error("Process(-1): want error")
	}
	_ = x
}

// FuzzTicks: whatever the command name (the kernel allows spaces and parentheses in it), the
// parsed CPU time is utime+stime; arbitrary input never panics.
func FuzzTicks(f *testing.F) {
	f.Add("edgegate", uint32(250), uint32(75), "")
	f.Add("a) b (c", uint32(0), uint32(1), "")
	f.Add("", uint32(1), uint32(2), "12 (x) R 1")
	f.Fuzz(func(t *testing.T, comm string, utime, stime uint32, raw string) {
		Ticks(raw) // must not panic
		line := fmt.Sprintf("4242 (%s) S 1 4242 4242 0 -1 4194560 10 0 0 0 %d %d 0 0 20 0 3 0 100 0", comm, utime, stime)
		got, err := Ticks(line)
		if err != nil {
			t.Fatalf("Ticks(%q): %v", line, err)
		}
		if want := uint64(utime) + uint64(stime); got != want {
			t.Fatalf("Ticks(%q) = %d, want %d", line, got, want)
		}
	})
}
