package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// stallListener's connections stop taking writes once stall is set, as a
// connection does when its client stopped reading and the buffers between
// them are full: a write then waits for its deadline, or for good.
type stallListener struct {
	net.Listener
	stall *atomic.Bool
}

func (l stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, stall: l.stall, closed: make(chan struct{})}, nil
}

type stallConn struct {
	net.Conn
	stall  *atomic.Bool
	mu     sync.Mutex
	wd     time.Time
	closed chan struct{}
	once   sync.Once
}

func (c *stallConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.wd = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wd = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *stallConn) Write(b []byte) (int, error) {
	if !c.stall.Load() {
		return c.Conn.Write(b)
	}
	c.mu.Lock()
	wd := c.wd
	c.mu.Unlock()
	var expired <-chan time.Time
	if !wd.IsZero() {
		t := time.NewTimer(time.Until(wd))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *stallConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestHTTPFinalWriteDeadline: what net/http writes after the handler
// returned (the answer the handler left buffered) is bounded by the final
// write deadline, over HTTP/1.1 (a connection that stops taking writes
// just then is closed) and HTTP/2 (a stream whose client grants no flow
// control window is reset); a stream that pauses longer than that bound
// while its handler runs is not cut, nor a connection a handler hijacked.
func TestHTTPFinalWriteDeadline(t *testing.T) {
	const finalWrite = 300 * time.Millisecond
	const patience = 10 * time.Second // only bounds a failure
	c := testHTTPConfig()
	c.finalWrite = finalWrite
	t.Run("HTTP/1.1 connection stops taking writes after the handler", func(t *testing.T) {
		var stall atomic.Bool
		addr := serveTestHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 100)) // buffered: net/http writes it after the return
			stall.Store(true)
		}), c, nil, func(ln net.Listener) net.Listener { return stallListener{Listener: ln, stall: &stall} })
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		took, got := waitClosed(t, conn, patience)
		if got != "" {
			t.Fatalf("the stalled connection delivered %q", got)
		}
		t.Logf("closed after %v", took)
	})
	t.Run("HTTP/2 stream without a flow control window", func(t *testing.T) {
		addr := startHTTPS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 2000)) // buffered: sent after the return
		}), c)
		conn, fr := dialH2(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true,
			BlockFragment: headers(":method", "GET", ":scheme", "https", ":authority", "x", ":path", "/")}); err != nil {
			t.Fatal(err)
		}
		// Read what comes, never granting more window, until the stream
		// is reset.
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(patience))
		data := 0
		for {
			f, err := fr.ReadFrame()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("stream not reset within %v (%d bytes of data sent)", patience, data)
			}
			if err != nil {
				t.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.DataFrame:
				data += len(f.Data())
				if f.StreamEnded() {
					t.Fatalf("the stream ended after %d bytes: the window was not respected", data)
				}
			case *http2.RSTStreamFrame:
				if f.StreamID != 1 {
					t.Fatalf("stream %d reset", f.StreamID)
				}
				t.Logf("stream reset after %v, %d bytes of data sent", time.Since(start), data)
				return
			}
		}
	})
	t.Run("hijacked connection left to its owner", func(t *testing.T) {
		addr := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			go func() { // writes after the handler returned, without a deadline of its own
				defer conn.Close()
				time.Sleep(2 * finalWrite) // the pause under test
				if _, err := io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"); err != nil {
					t.Errorf("the hijacked connection's write: %v", err)
				}
			}()
		}), c)
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
			t.Fatalf("%q, %v", b, err)
		}
	})
	t.Run("stream pausing longer than the bound", func(t *testing.T) {
		addr := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			for i := range 3 {
				if i > 0 {
					time.Sleep(2 * finalWrite) // the pause under test
				}
				_, _ = io.WriteString(w, "data: event\n\n")
				_ = rc.Flush()
			}
		}), c)
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || strings.Count(string(b), "data: ") != 3 {
			t.Fatalf("%q, %v: the paused stream was cut", b, err)
		}
	})
}
