package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// streamProto relays an endless stream: the upstream never ends, so only
// the client's reading (or not) decides how long the call lasts.
type streamProto struct {
	echoProto
	pause  time.Duration // between events, after the first few
	events int           // stop after this many (0: never)
	closed chan struct{} // the upstream's body was closed
	relayd chan error    // what the relay's last write returned
}

func (x *streamProto) Send(ctx context.Context, c *pipeline.Call, _ string) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: &closeNotifier{closed: x.closed}}, nil
}

type closeNotifier struct {
	once   sync.Once
	closed chan struct{}
}

func (*closeNotifier) Read([]byte) (int, error) { return 0, io.EOF }
func (n *closeNotifier) Close() error {
	n.once.Do(func() { close(n.closed) })
	return nil
}

func (x *streamProto) Relay(ctx context.Context, c *pipeline.Call, resp *http.Response) error {
	defer resp.Body.Close()
	c.Status = 200
	if err := c.Commit(false); err != nil {
		return err
	}
	w := c.Writer()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	rc := http.NewResponseController(w)
	ev := []byte("data: " + strings.Repeat("x", 32<<10) + "\n\n")
	for i := 0; x.events == 0 || i < x.events; i++ {
		if i >= 2 && x.pause > 0 {
			select {
			case <-time.After(x.pause):
			case <-ctx.Done():
			}
		}
		_, err := w.Write(ev)
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			x.relayd <- err
			return nil
		}
	}
	x.relayd <- nil
	return nil
}

// TestWriteTimeout: a client that stops reading a stream is cut off after
// Config.WriteTimeout, and the upstream is released, instead of holding
// both forever; a client that reads a stream whose events pause for longer
// than the timeout is not cut.
func TestWriteTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	newServer := func(t *testing.T, x *streamProto, h2 bool) *httptest.Server {
		t.Helper()
		p, err := pipeline.New(pipeline.Config{PublicURL: "http://127.0.0.1:8470", Auth: okAuth{}, Authz: authz{},
			Credentials: noCreds{}, Audit: &sink{}, WriteTimeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			x.call.Securable = enforce.SecurableRef{Type: "MODEL SERVICE"}
			p.Serve(w, r, &x.call, x)
		}))
		if h2 {
			srv.EnableHTTP2 = true
			srv.StartTLS()
		} else {
			srv.Start()
		}
		t.Cleanup(srv.Close)
		return srv
	}
	t.Run("client stops reading", func(t *testing.T) {
		x := &streamProto{closed: make(chan struct{}), relayd: make(chan error, 1)}
		addr := newServer(t, x, false).Listener.Addr().String()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
		body := `{"model":"frontier"}`
		fmt.Fprintf(conn, "POST /llm/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8470\r\nAuthorization: Bearer x\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		// Never read: the relay must give up on its own.
		select {
		case err := <-x.relayd:
			if err == nil {
				t.Fatal("the relay ended without an error")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the relay still writes to a client that has not read for 20 s")
		}
		select {
		case <-x.closed:
		case <-time.After(20 * time.Second):
			t.Fatal("the upstream's body was not closed")
		}
	})
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream pauses longer than the timeout, HTTP/2 %v", h2), func(t *testing.T) {
			x := &streamProto{closed: make(chan struct{}), relayd: make(chan error, 1), pause: 2 * timeout, events: 4}
			srv := newServer(t, x, h2)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/llm/v1/chat/completions",
				strings.NewReader(`{"model":"frontier"}`))
			req.Host = "127.0.0.1:8470"
			req.Header.Set("Authorization", "Bearer x")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if h2 != (resp.ProtoMajor == 2) {
				t.Fatalf("protocol %s", resp.Proto)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || bytes.Count(b, []byte("data: ")) != 4 {
				t.Fatalf("%d events, %v: the paused stream was cut", bytes.Count(b, []byte("data: ")), err)
			}
			if err := <-x.relayd; err != nil {
				t.Fatalf("relay: %v", err)
			}
		})
	}
}

// unreadBody is a request body of n bytes that counts what was read.
type unreadBody struct{ n, read int }

func (b *unreadBody) Read(p []byte) (int, error) {
	if b.read >= b.n {
		return 0, io.EOF
	}
	k := min(len(p), b.n-b.read)
	clear(p[:k])
	b.read += k
	return k, nil
}

// TestUnauthenticatedBodyUnread: a request without a credential is refused
// before its body is read (MCP and LLM alike: authentication is the
// pipeline's first stage), whatever the body's size.
func TestUnauthenticatedBodyUnread(t *testing.T) {
	p, err := pipeline.New(pipeline.Config{PublicURL: "http://127.0.0.1:8470", Auth: okAuth{}, Authz: authz{},
		Credentials: noCreds{}, Audit: &sink{}})
	if err != nil {
		t.Fatal(err)
	}
	x := &echoProto{upstream: func([]byte) (int, string) { return 200, `{}` }}
	body := &unreadBody{n: 100 << 20}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "http://127.0.0.1:8470/llm/v1/chat/completions", body)
	w := httptest.NewRecorder()
	x.call.Securable = enforce.SecurableRef{Type: "MODEL SERVICE"}
	p.Serve(w, req, &x.call, x)
	if w.Code != http.StatusUnauthorized || body.read != 0 {
		t.Fatalf("%d after reading %d bytes of a 100 MB body, want 401 before reading it", w.Code, body.read)
	}
}
