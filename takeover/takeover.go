// Package takeover hands a running edgegate's descriptors and state to its successor over a
// Unix socket (the hand-over upgrade): the successor asks, the predecessor freezes its data path
// and sends descriptors (SCM_RIGHTS) with a state blob, the successor reports ready once it
// serves, and the predecessor releases what only one process may hold and exits. A successor
// that fails before ready (it closes the connection, or does not answer within ReadyTimeout)
// leaves the predecessor serving: it thaws.
//
// A client may also ask for Info (op info) instead: the running process's PID, executable and
// arguments, what `edgegate upgrade` starts its successor from.
//
// Wire format: each message is a frame: 4 bytes "EGTO", a big-endian uint32 length, then that
// many bytes of JSON (a Message). Descriptors travel with the first byte of the frame that
// carries them.
package takeover

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Version is the protocol version; a successor and predecessor must agree on it.
const Version = 1

// Limits of the protocol.
const (
	// ReadyTimeout bounds how long the predecessor stays frozen waiting for its successor's
	// ready: the successor restores the flows and starts its workers in that time.
	ReadyTimeout = 10 * time.Second
	// MaxFrame bounds a message (the flow snapshot: about 300 bytes a flow).
	MaxFrame = 1 << 30
	// MaxFDs bounds the descriptors of one message (the kernel's SCM_MAX_FD is 253).
	MaxFDs = 253
	// ioTimeout bounds every other step of the exchange.
	ioTimeout = 30 * time.Second
)

// Message is one frame's content.
type Message struct {
	Op      string          `json:"op"` // takeover, state, ready, released, refused; info
	Version int             `json:"version"`
	State   json.RawMessage `json:"state,omitempty"`
	Error   string          `json:"error,omitempty"`
	Info    *Info           `json:"info,omitempty"`
}

// Info describes the running process, for `edgegate upgrade` (op info, answered without any
// hand-over): what to start as its successor.
type Info struct {
	PID        int      `json:"pid"`
	Executable string   `json:"executable"` // the binary's path on disk
	Args       []string `json:"args"`       // its command line after the program name
	// NotifySocket is its $NOTIFY_SOCKET (systemd), which the successor needs to report itself
	// as the service's main process.
	NotifySocket string `json:"notify_socket,omitempty"`
}

var magic = [4]byte{'E', 'G', 'T', 'O'}

func send(c *net.UnixConn, m Message, fds []int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	frame := make([]byte, 8, 8+len(b))
	copy(frame, magic[:])
	binary.BigEndian.PutUint32(frame[4:], uint32(len(b)))
	frame = append(frame, b...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	c.SetWriteDeadline(time.Now().Add(ioTimeout))
	n, _, err := c.WriteMsgUnix(frame, oob, nil)
	if err == nil && n < len(frame) {
		_, err = c.Write(frame[n:])
	}
	return err
}

// recv reads one frame and the descriptors that came with it (the caller owns them).
func recv(c *net.UnixConn, deadline time.Time) (Message, []int, error) {
	var m Message
	c.SetReadDeadline(deadline)
	head := make([]byte, 8)
	oob := make([]byte, unix.CmsgSpace(MaxFDs*4))
	n, oobn, _, _, err := c.ReadMsgUnix(head, oob)
	if err != nil {
		return m, nil, err
	}
	fds, perr := parseRights(oob[:oobn])
	fail := func(err error) (Message, []int, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return m, nil, err
	}
	if perr != nil {
		return fail(perr)
	}
	if n < 8 {
		if _, err := io.ReadFull(c, head[n:]); err != nil {
			return fail(err)
		}
	}
	if [4]byte(head[:4]) != magic {
		return fail(errors.New("takeover: not a hand-over frame"))
	}
	size := binary.BigEndian.Uint32(head[4:])
	if size > MaxFrame {
		return fail(fmt.Errorf("takeover: frame of %d bytes", size))
	}
	// Grown as bytes arrive: a forged length allocates nothing up front.
	var body bytes.Buffer
	if _, err := io.CopyN(&body, c, int64(size)); err != nil {
		return fail(err)
	}
	if err := json.Unmarshal(body.Bytes(), &m); err != nil {
		return fail(fmt.Errorf("takeover: %w", err))
	}
	return m, fds, nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("takeover: control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, r...)
	}
	return fds, nil
}
