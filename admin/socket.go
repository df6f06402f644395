package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// Socket modes: owner (root) only, or owner and socket_group. Connecting to a Unix socket needs
// write permission on it.
const (
	socketMode      fs.FileMode = 0o600
	socketGroupMode fs.FileMode = 0o660
	socketDirMode   fs.FileMode = 0o755 // a directory Start creates: the group must reach the socket
	// staleProbeTimeout bounds the connect that tells a live socket from a stale one at start.
	staleProbeTimeout = 500 * time.Millisecond
)

// unixSocket is the private listener and the file it made, so that exit removes that file and
// not one a later process put in its place.
type unixSocket struct {
	path string
	ln   *net.UnixListener
	fi   fs.FileInfo
}

// listenUnix creates the admin socket at path: its directory if missing (given to dirOwner, when
// set, if it holds nothing else, so the socket can be removed after a switch to that user), a
// stale socket replaced, mode 0600, or 0660 with group.
func listenUnix(path, group string, dirOwner *[2]int) (*unixSocket, error) {
	gid := -1
	if group != "" {
		var err error
		if gid, err = lookupGroup(group); err != nil {
			return nil, fmt.Errorf("admin.socket_group: %w", err)
		}
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, socketDirMode); err != nil {
			return nil, fmt.Errorf("admin socket directory: %w", err)
		}
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	if dirOwner != nil {
		if err := claimDir(dir, dirOwner); err != nil {
			return nil, err
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // close removes the file only if it is still ours
	us := &unixSocket{path: path, ln: ln}
	mode := socketMode
	if gid >= 0 {
		mode = socketGroupMode
		err = os.Chown(path, -1, gid)
	}
	if err == nil {
		err = os.Chmod(path, mode)
	}
	if err == nil {
		us.fi, err = os.Lstat(path)
	}
	if err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return us, nil
}

// claimDir gives the socket's directory to owner, as systemd's RuntimeDirectory= does, when it
// is edgegate's own: empty once a stale socket is gone (created now, or by an earlier run).
// A directory holding anything else (/run, /tmp) is left alone; the socket may then outlive the
// process, and the next start replaces it.
func claimDir(dir string, owner *[2]int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("admin socket directory: %w", err)
	}
	if len(ents) > 0 {
		return nil
	}
	if err := os.Chown(dir, owner[0], owner[1]); err != nil {
		return fmt.Errorf("admin socket directory: %w", err)
	}
	return nil
}

// removeStale removes a socket left at path by a process that is gone, and refuses to touch
// anything that is not a socket or a socket that still answers.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin socket: %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, staleProbeTimeout); err == nil {
		c.Close()
		return fmt.Errorf("admin socket: %s is in use by a running process (another edgegate?)", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("admin socket: remove stale %s: %w", path, err)
	}
	return nil
}

func lookupGroup(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil && id >= 0 {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}

// close stops listening and removes the socket file if it is still the one listenUnix made.
func (u *unixSocket) close(log *slog.Logger) {
	u.ln.Close()
	cur, err := os.Lstat(u.path)
	if err != nil || !os.SameFile(cur, u.fi) {
		return
	}
	if err := os.Remove(u.path); err != nil {
		log.Warn("admin socket not removed", "path", u.path, "err", err)
	}
}
