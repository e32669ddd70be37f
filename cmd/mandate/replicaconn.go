package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// A sender's connection to the writer: GET writerPath with "Connection:
// Upgrade" and "Upgrade: writerProtocol", authenticated like a request
// (the MAC of "connect", its time and id), answered 101 Switching
// Protocols; then frames over the same listener (TLS and the pinned
// certificate as for requests), strictly alternating:
//
//   - a request: 4 bytes of length (big-endian), then "TIME.ID.MAC\n" and
//     the JSON of a POST writerPath's body, authenticated the same way;
//   - its answer: 4 bytes of length, then "STATUS MAC\n" and for 200 the
//     JSON results, else the reason; any status but 200 means none of the
//     changes ran, and the writer closes the connection after it.
//
// Frames are at most writerMaxFrame long. The writer closes a connection
// idle for connIdle, sending nothing; a sender reuses one idle for less
// (connReuse), and not one the writer closed or wrote to while idle
// (peerClosed): then nothing was in flight and it opens another. A frame
// fully written may have reached the writer: if its answer is lost, its
// statements fail with 08006, as a POST request's.
const (
	writerProtocol = "mandate-writes/1"
	// writerMaxFrame bounds a frame: a request's body and its
	// authentication.
	writerMaxFrame = writerMaxBody + 256
	// frameReuse bounds the buffer the writer keeps per connection for
	// the next request's frame.
	frameReuse = 64 << 10
)

// errNoUpgrade: the writer serves no connection now (an older version, or
// at its bound): the sender posts its requests.
var errNoUpgrade = errors.New("the writer replica serves no connection")

// writerConn is a sender's connection to the writer at addr.
type writerConn struct {
	addr string
	conn net.Conn
	r    *bufio.Reader
	used time.Time // when the last answer came
}

// exchange sends one request to the writer at addr over conn, opened (or
// reopened) as needed, or as POST writerPath when the writer serves no
// connection; it returns the connection for the next request (nil: none
// open). sent: the request may have reached the writer.
func (w *replicaWriter) exchange(ctx context.Context, conn *writerConn, addr, auth string, body []byte) (*writerConn, writerReply, bool, error) {
	if conn != nil && (conn.addr != addr || time.Since(conn.used) >= w.connReuse || conn.r.Buffered() > 0 || peerClosed(conn.conn)) {
		// Idle, nothing in flight: the writer may have closed it.
		conn.conn.Close()
		conn = nil
	}
	if conn == nil && !w.posting(addr) {
		var err error
		conn, err = w.connect(ctx, addr)
		var refused *writerRefusal
		switch {
		case errors.As(err, &refused):
			return nil, writerReply{status: refused.status}, false, nil
		case errors.Is(err, errNoUpgrade):
			w.downMu.Lock()
			w.posted[addr] = time.Now().Add(writerDownFor)
			w.downMu.Unlock()
		case err != nil:
			return nil, writerReply{}, false, err
		}
	}
	if conn == nil {
		a, sent, err := w.post(ctx, addr, auth, body)
		return nil, a, sent, err
	}
	a, sent, err := conn.roundTrip(ctx, auth, body)
	if err != nil || a.status != http.StatusOK {
		conn.conn.Close()
		return nil, a, sent, err
	}
	return conn, a, sent, nil
}

// posting reports whether the writer at addr refused an upgrade lately.
func (w *replicaWriter) posting(addr string) bool {
	w.downMu.Lock()
	defer w.downMu.Unlock()
	until, ok := w.posted[addr]
	if ok && time.Now().After(until) {
		delete(w.posted, addr)
		return false
	}
	return ok
}

// writerRefusal: the writer refused to open a connection with this status
// (409: it is not the writer; 401: the authentication).
type writerRefusal struct{ status int }

func (e *writerRefusal) Error() string {
	return "the writer replica refused the connection: " + strconv.Itoa(e.status)
}

// connect opens a connection to the writer at addr. Nothing of a request
// is sent before it returns.
func (w *replicaWriter) connect(ctx context.Context, addr string) (*writerConn, error) {
	c, err := w.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		c.Close()
		return nil, err
	}
	ids, ts := hex.EncodeToString(id), strconv.FormatInt(time.Now().Unix(), 10)
	deadline := time.Now().Add(writerFrameRead)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s: %s\r\n\r\n",
		writerPath, addr, writerProtocol, writerAuthHeader, ts+"."+ids+"."+w.mac("connect", ts, ids, nil)); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), writerProtocol) {
		c.Close()
		switch resp.StatusCode {
		case http.StatusConflict, http.StatusUnauthorized:
			return nil, &writerRefusal{status: resp.StatusCode}
		}
		return nil, errNoUpgrade
	}
	_ = c.SetDeadline(time.Time{})
	return &writerConn{addr: addr, conn: c, r: r, used: time.Now()}, nil
}

// roundTrip writes a request's frame and reads its answer. sent: the
// frame was written whole (it may have reached the writer).
func (c *writerConn) roundTrip(ctx context.Context, auth string, body []byte) (writerReply, bool, error) {
	deadline := time.Now().Add(writerTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := writeFrame(c.conn, deadline, []byte(auth+"\n"), body); err != nil {
		return writerReply{}, false, err // not whole: the writer cannot have run it
	}
	p, err := readFrame(c.conn, c.r, nil, deadline, 0)
	if err != nil {
		return writerReply{}, true, err
	}
	c.used = time.Now()
	head, out, _ := bytes.Cut(p, []byte("\n"))
	st, mac, _ := bytes.Cut(head, []byte(" "))
	status, err := strconv.Atoi(string(st))
	if err != nil {
		return writerReply{}, true, errors.New("malformed answer")
	}
	return writerReply{status: status, mac: string(mac), body: out}, true, nil
}

// writeFrame writes the concatenation of parts as one frame by deadline.
func writeFrame(c net.Conn, deadline time.Time, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > writerMaxFrame {
		return errFrameTooLarge
	}
	f := binary.BigEndian.AppendUint32(make([]byte, 0, 4+n), uint32(n))
	for _, p := range parts {
		f = append(f, p...)
	}
	if err := c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := c.Write(f)
	return err
}

// errFrameTooLarge: a frame's length is over writerMaxFrame.
var errFrameTooLarge = errors.New("frame too large")

// readFrame reads a frame from r (reading c) into buf when it fits (else a
// new slice): its length must come by wait, the rest within read of the
// length (a request, on the writer; no deadline is set when it is
// already buffered), or by wait when read is 0 (an answer, by its
// request's deadline).
func readFrame(c net.Conn, r *bufio.Reader, buf []byte, wait time.Time, read time.Duration) ([]byte, error) {
	if err := c.SetReadDeadline(wait); err != nil {
		return nil, err
	}
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > writerMaxFrame {
		return nil, errFrameTooLarge
	}
	if read > 0 && r.Buffered() < int(size) {
		if err := c.SetReadDeadline(time.Now().Add(read)); err != nil {
			return nil, err
		}
	}
	p := buf[:0]
	if cap(p) < int(size) {
		p = make([]byte, size)
	}
	p = p[:size]
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	return p, nil
}

// upgrade serves GET writerPath: it opens a connection that carries
// requests, unless the request is not an authentic upgrade, or the
// writer serves writerMaxConns already (503: the sender posts).
func (w *replicaWriter) upgrade(rw http.ResponseWriter, r *http.Request, exec writerExec) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), writerProtocol) || !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		rw.Header().Set("Connection", "Upgrade")
		rw.Header().Set("Upgrade", writerProtocol)
		http.Error(rw, "upgrade required", http.StatusUpgradeRequired)
		return
	}
	if _, id, ok := w.authentic("connect", r.Header.Get(writerAuthHeader), nil); !ok || !w.firstUse(id) {
		http.Error(rw, "unauthenticated", http.StatusUnauthorized)
		return
	}
	c, brw, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		http.Error(rw, "no connection over this protocol", http.StatusHTTPVersionNotSupported)
		return
	}
	if !w.addConn(c) {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	_ = c.SetWriteDeadline(time.Now().Add(writerFrameRead))
	if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+writerProtocol+"\r\n\r\n"); err != nil {
		w.dropConn(c)
		return
	}
	// Served by its own goroutine: the request's ends here (and with it
	// its place among the listener's requests in progress). The frames
	// are read from c directly, not through the HTTP server's reader,
	// unless it holds some already (a sender writes none before the 101).
	br := brw.Reader
	if br.Buffered() == 0 {
		br = bufio.NewReader(c)
	}
	go w.serveConn(context.WithoutCancel(r.Context()), c, br, exec)
}

// serveConn runs the requests of one connection, one after the other,
// until it is idle for connIdle, broken, or a request is refused.
func (w *replicaWriter) serveConn(ctx context.Context, c net.Conn, r *bufio.Reader, exec writerExec) {
	defer w.dropConn(c)
	var buf []byte // a request's frame; reused (handle keeps nothing of it)
	for {
		p, err := readFrame(c, r, buf, time.Now().Add(w.connIdle), w.frameRead)
		if errors.Is(err, errFrameTooLarge) {
			_ = writeFrame(c, time.Now().Add(writerFrameRead), []byte(strconv.Itoa(http.StatusRequestEntityTooLarge)+" \nrequest too large"))
			return
		}
		if err != nil {
			return // idle, closed or broken: closed without a word
		}
		if cap(p) <= frameReuse {
			buf = p
		}
		auth, body, _ := bytes.Cut(p, []byte("\n"))
		a := w.handle(ctx, exec, string(auth), body)
		if err := writeFrame(c, time.Now().Add(writerFrameRead), []byte(strconv.Itoa(a.status)+" "+a.mac+"\n"), a.body); err != nil || a.status != http.StatusOK {
			return
		}
	}
}

// addConn counts a connection in, unless writerMaxConns are served or the
// replica stopped.
func (w *replicaWriter) addConn(c net.Conn) bool {
	w.connsMu.Lock()
	defer w.connsMu.Unlock()
	if w.connsClosed || len(w.conns) >= w.maxConns {
		return false
	}
	w.conns[c] = struct{}{}
	return true
}

// dropConn closes a connection and counts it out.
func (w *replicaWriter) dropConn(c net.Conn) {
	c.Close()
	w.connsMu.Lock()
	delete(w.conns, c)
	w.connsMu.Unlock()
}

// closeConns closes the connections served, and refuses new ones: the
// replica stops.
func (w *replicaWriter) closeConns() {
	w.connsMu.Lock()
	defer w.connsMu.Unlock()
	w.connsClosed = true
	for c := range w.conns {
		c.Close()
	}
}
