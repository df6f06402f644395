// Package procstat reads a process's CPU time from /proc, for the benchmarks that report what a
// gateway or proxy process costs per packet or per request.
package procstat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// UserHZ is the unit of the tick counters in /proc/stat and /proc/PID/stat (USER_HZ, fixed at
// 100 by the kernel ABI regardless of CONFIG_HZ).
const UserHZ = 100

// Ticks returns utime+stime from the contents of /proc/PID/stat.
func Ticks(stat string) (uint64, error) {
	_, ticks, err := parse(stat)
	return ticks, err
}

// parse returns the parent PID and utime+stime of a /proc/PID/stat line.
func parse(s string) (ppid int, ticks uint64, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, errors.New("proc stat: no command field")
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(0) ppid(1) pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime(11) stime(12).
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("proc stat: %d fields", len(f))
	}
	p, err0 := strconv.Atoi(f[1])
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s2, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err0, err1, err2); err != nil {
		return 0, 0, fmt.Errorf("proc stat: %w", err)
	}
	return p, u + s2, nil
}

// Process returns the CPU ticks of one process (all its threads).
func Process(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return Ticks(string(b))
}

// Tree returns the CPU ticks of a process and its live children (an nginx master and its
// workers: a running child's time is not yet in the parent's counters).
func Tree(pid int) (uint64, error) {
	total, err := Process(pid)
	if err != nil {
		return 0, err
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		if ppid, t, err := parse(string(b)); err == nil && ppid == pid {
			total += t
		}
	}
	return total, nil
}
