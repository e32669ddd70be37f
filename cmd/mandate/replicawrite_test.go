package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// A MAC is the hex HMAC-SHA256 of "what\nts\nid\n" and the body, keyed
// with the writer key, whichever MAC was computed before with the same
// reused hash (or with another replica's key), and at once from several
// goroutines; computing one allocates little more than its text (keying
// a hash per MAC cost as much as hashing a small frame).
func TestWriterMAC(t *testing.T) {
	key := writerKey([]byte("master key of this installation"))
	w := &replicaWriter{key: key}
	other := &replicaWriter{key: writerKey([]byte("master key of another one"))}
	want := func(what, ts, id string, body []byte) string {
		t.Helper()
		m := hmac.New(sha256.New, key)
		m.Write([]byte(what + "\n" + ts + "\n" + id + "\n"))
		m.Write(body)
		return hex.EncodeToString(m.Sum(nil))
	}
	for name, tc := range map[string]struct {
		what, ts, id string
		body         []byte
	}{
		"request":             {"request", "1765100000", strings.Repeat("ab", 16), []byte(`{"via":"r2","changes":[]}`)},
		"answer":              {"answer", "1765100000", strings.Repeat("ab", 16), []byte(`[{"revision":7}]`)},
		"connect, no body":    {"connect", "1765100000", strings.Repeat("cd", 16), nil},
		"longer than 128":     {"request", strings.Repeat("9", 100), strings.Repeat("ef", 40), []byte("x")},
		"a large body":        {"request", "1", strings.Repeat("ab", 16), []byte(strings.Repeat("GRANT ", 20000))},
		"separators in parts": {"request\n1", "2\n", "\n" + strings.Repeat("ab", 16), []byte("\n")},
	} {
		t.Run(name, func(t *testing.T) {
			_ = w.mac("answer", "0", "0", []byte("an earlier MAC on the same hash"))
			if got := w.mac(tc.what, tc.ts, tc.id, tc.body); got != want(tc.what, tc.ts, tc.id, tc.body) {
				t.Errorf("mac = %s, want %s", got, want(tc.what, tc.ts, tc.id, tc.body))
			}
			if other.mac(tc.what, tc.ts, tc.id, tc.body) == want(tc.what, tc.ts, tc.id, tc.body) {
				t.Error("another key gives the same MAC")
			}
		})
	}
	body := []byte(`{"via":"r2","changes":[{"stmts":[{"principal":"admin","form":{"sql":"GRANT"}}]}]}`)
	id := strings.Repeat("ab", 16)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if got := w.mac("request", "1765100000", id, body); got != want("request", "1765100000", id, body) {
					t.Errorf("mac from several goroutines = %s", got)
					return
				}
			}
		})
	}
	wg.Wait()
	if raceDetector {
		return
	}
	if n := testing.AllocsPerRun(100, func() { _ = w.mac("request", "1765100000", id, body) }); n > 4 {
		t.Errorf("a MAC allocates %.0f times, want at most 4", n)
	}
}

// A forwarded-statements request is authentic only with the
// installation's MAC over its time, id and body, within the allowed clock
// skew; each id runs once.
func TestWriterRequestAuthentic(t *testing.T) {
	w := &replicaWriter{key: writerKey([]byte("master key of this installation")), seen: map[string]time.Time{}}
	other := &replicaWriter{key: writerKey([]byte("master key of another one"))}
	body := []byte(`{"via":"r2","changes":[]}`)
	id := strings.Repeat("ab", 16)
	now := strconv.FormatInt(time.Now().Unix(), 10)
	header := func(w *replicaWriter, ts, id string, body []byte) string {
		return ts + "." + id + "." + w.mac("request", ts, id, body)
	}
	if ts, gotID, ok := w.authentic("request", header(w, now, id, body), body); !ok || ts != now || gotID != id {
		t.Fatalf("authentic request refused: %q %q %v", ts, gotID, ok)
	}
	for name, h := range map[string]string{
		"no header":           "",
		"another key":         header(other, now, id, body),
		"another body":        header(w, now, id, []byte(`{"via":"r2","changes":[{}]}`)),
		"an answer's MAC":     now + "." + id + "." + w.mac("answer", now, id, body),
		"too old":             header(w, strconv.FormatInt(time.Now().Add(-2*writerSkew).Unix(), 10), id, body),
		"from the future":     header(w, strconv.FormatInt(time.Now().Add(2*writerSkew).Unix(), 10), id, body),
		"short id":            header(w, now, "abcd", body),
		"malformed":           "x.y",
		"MAC of another id":   now + "." + strings.Repeat("cd", 16) + "." + w.mac("request", now, id, body),
		"MAC of another time": "1." + id + "." + w.mac("request", now, id, body),
	} {
		if _, _, ok := w.authentic("request", h, body); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	if !w.firstUse(id) {
		t.Fatal("first use of an id refused")
	}
	if w.firstUse(id) {
		t.Fatal("a replayed id accepted")
	}
	if !w.firstUse(strings.Repeat("ef", 16)) {
		t.Fatal("another id refused")
	}
}

// Over TLS, a replica forwards only to the writer whose certificate has
// the fingerprint the writer published with its lease: one that presents
// another certificate never receives the statements (they are committed
// locally, ErrNotForwarded), and the refusal is logged once.
func TestWriterCertificatePinned(t *testing.T) {
	// The writer: a replica's endpoint, the changes run by a fake.
	var reached atomic.Int64
	srv := &replicaWriter{key: testWriterKey, log: zerolog.Nop()}
	srv.init(true)
	srv.held.Store(true)
	exec := writerExec(func(_ context.Context, _ string, changes []writerChange) []writerResult {
		reached.Add(1)
		return []writerResult{{Revision: 7}}
	})
	srv.exec.Store(&exec)
	defer srv.closeConns()
	writer := httptest.NewUnstartedServer(srv)
	// The writer's own certificate, as mandate serve makes one.
	cfg, err := pgwire.LoadOrCreateTLS("", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writer.TLS = cfg
	writer.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	writer.StartTLS()
	defer writer.Close()
	addr := writer.Listener.Addr().String()
	other := httptest.NewTLSServer(http.NotFoundHandler()) // another certificate
	defer other.Close()
	if fingerprint(other.Certificate().Raw) == fingerprint(writer.Certificate().Raw) {
		t.Fatal("the two servers have the same certificate")
	}

	var logs syncBuffer
	w := &replicaWriter{key: testWriterKey, self: "r2", log: zerolog.New(&logs)}
	w.init(true)
	for range writerSenders {
		go w.sender()
	}
	stmt := []catalog.Statement{{Req: catalog.WriteRequest{Caller: catalog.Caller{Principal: "admin"}}, Forward: []byte(`{"sql":"GRANT"}`)}}
	forward := func(cert string) (catalog.Revision, error) {
		t.Helper()
		w.downMu.Lock()
		clear(w.down)
		w.downMu.Unlock()
		w.target.Store(&pgstore.WriterHolder{Addr: addr, Cert: cert})
		rev, _, err := w.Forward(t.Context(), stmt, false)
		return rev, err
	}
	for range 2 {
		if _, err := forward(fingerprint(other.Certificate().Raw)); !errors.Is(err, catalog.ErrNotForwarded) {
			t.Fatalf("forwarded to a writer whose certificate is not its lease's: %v", err)
		}
	}
	if _, err := forward(""); !errors.Is(err, catalog.ErrNotForwarded) {
		t.Fatalf("forwarded over TLS to a writer that published no fingerprint: %v", err)
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the writer with another certificate received %d requests", n)
	}
	if n := strings.Count(logs.String(), "not the one its lease names"); n != 2 { // once for the other certificate, once for none
		t.Errorf("refusal logged %d times, want 2:\n%s", n, logs.String())
	}
	// The certificate the lease names: forwarded.
	if rev, err := forward(fingerprint(writer.Certificate().Raw)); err != nil || rev != 7 {
		t.Fatalf("forward to the pinned writer = %d, %v; want revision 7", rev, err)
	}
	if reached.Load() != 1 {
		t.Fatalf("the pinned writer ran %d requests, want 1", reached.Load())
	}
}

// countingBody is a request body of n bytes that counts what was read.
type countingBody struct{ n, read int64 }

func (b *countingBody) Read(p []byte) (int, error) {
	if b.read >= b.n {
		return 0, io.EOF
	}
	k := int(min(int64(len(p)), b.n-b.read))
	clear(p[:k])
	b.read += int64(k)
	return k, nil
}

// A POST to the writer hop whose auth header is missing, malformed or out
// of the allowed skew is refused before its body is read: anyone can
// reach the route, and the body may be writerMaxBody.
func TestWriterBodyUnreadWithoutAuth(t *testing.T) {
	w := &replicaWriter{key: writerKey([]byte("master key of this installation")), seen: map[string]time.Time{}}
	exec := writerExec(func(context.Context, string, []writerChange) []writerResult {
		t.Error("changes ran for an unauthenticated request")
		return nil
	})
	w.exec.Store(&exec)
	w.held.Store(true)
	id := strings.Repeat("ab", 16)
	for name, h := range map[string]string{
		"no header":       "",
		"malformed":       "x.y",
		"many parts":      strings.Repeat(".", 10_000),
		"too old":         strconv.FormatInt(time.Now().Add(-2*writerSkew).Unix(), 10) + "." + id + ".mac",
		"from the future": strconv.FormatInt(time.Now().Add(2*writerSkew).Unix(), 10) + "." + id + ".mac",
		"short id":        strconv.FormatInt(time.Now().Unix(), 10) + ".abcd.mac",
	} {
		t.Run(name, func(t *testing.T) {
			body := &countingBody{n: writerMaxBody}
			req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, writerPath, body)
			if h != "" {
				req.Header.Set(writerAuthHeader, h)
			}
			rec := httptest.NewRecorder()
			w.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized || body.read != 0 {
				t.Fatalf("%d after reading %d bytes of the body, want 401 before reading it", rec.Code, body.read)
			}
		})
	}
}
