package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/sqlfront"
)

// Replicas on PostgreSQL funnel their catalog statements through one of
// them, the writer (catalog.Options.Remote): one replica's group commits
// then carry every replica's statements, and the store's head is never
// contended (replicas that each append race for it, and on a busy host a
// replica scheduled late stalls the others).
//
//   - The writer holds the writer lease (pgstore.WriterLease), with the
//     address of its HTTP listener (--advertise-addr, or --http-addr when
//     it names a host). Every replica renews or reads the lease every
//     writerLeaseEvery.
//   - A replica that does not hold it sends the forwarded forms of its
//     statements (sqlfront: the statement's canonical text, the session's
//     current catalog) with their callers to the writer, several
//     statements in flight per request, each of its senders over its own
//     long-lived connection (replicaconn.go: GET writerPath upgraded to
//     frames of the same requests and answers), or as POST writerPath to
//     a writer that serves no connection (an older version, or one at
//     its bound of connections). The writer
//     plans each as its caller (sqlfront.Frontend.ForwardedStatement: the
//     same privilege checks, the same audit record with the client's
//     address) and commits it in its own batches; the answer carries each
//     statement's revision or error. The sender answers its client once
//     it has applied that revision.
//   - Requests and answers are authenticated with a MAC keyed from the
//     master key, which only the installation's replicas have: a request
//     names the principal a statement runs as, so a forged one would be a
//     privilege escalation. A request carries a time and a random id; the
//     writer refuses one outside writerSkew and one whose id it has seen
//     (a replay), so a request runs at most once. With TLS listeners the
//     writer publishes its certificate's fingerprint with the lease, and
//     the others accept only that certificate (dialWriter).
//   - Fail safe: whatever did not reach the writer (no writer, the
//     connection refused, the writer says it no longer is, a refusal of
//     the request) is committed by the replica itself, as without
//     forwarding. A request that may have reached the writer but whose
//     answer was lost is not retried: its statements fail with 08006.

const (
	writerPath = "/internal/v1/catalog/writes"
	// writerAuthHeader carries "TIME.ID.MAC" of a request, and "MAC" of
	// its answer.
	writerAuthHeader = "Mandate-Replica-Auth"
	// writerLeaseEvery is how often the lease is renewed or read;
	// writerLeaseTTL how long it lasts after the holder's last renewal.
	writerLeaseEvery = time.Second
	writerLeaseTTL   = 5 * time.Second
	// writerSkew bounds the difference between a request's time and the
	// writer's clock; ids are remembered twice as long.
	writerSkew = 30 * time.Second
	// writerMaxSeen bounds the remembered request ids: past it, requests
	// are refused (their senders commit themselves) until old ids expire.
	writerMaxSeen = 1 << 18
	// writerMaxBody bounds a request's body; writerMaxItems its changes
	// (each a statement or a block); writerMaxBatch how many changes in
	// flight one request carries.
	writerMaxBody  = 8 << 20
	writerMaxItems = 256
	writerMaxBatch = 64
	// writerSenders is how many requests a replica has in flight at once,
	// each over its own connection: as many as the sessions that usually
	// write at once, so that a statement is sent as soon as it comes
	// instead of waiting for an earlier request's answer, a whole commit
	// of the writer, and then for the next one (with two, a forwarded
	// statement took about twice a local one's time).
	writerSenders = 8
	// writerTimeout bounds one request (the writer's commit is bounded by
	// the catalog's own timeout, 30 s).
	writerTimeout = time.Minute
	// writerDownFor is how long a writer address that refused a
	// connection is skipped (the lease of a dead writer lasts until it
	// expires), and how long one that refused an upgrade is sent POST
	// requests.
	writerDownFor = writerLeaseTTL
	// writerMaxConns bounds the connections a writer serves at once
	// (replicaconn.go; past it the upgrade is refused: the sender posts):
	// the senders of 32 replicas;
	// writerConnIdle is how long it keeps one without a frame,
	// writerConnReuse how long a sender reuses an idle one (less, so that
	// the writer never closes one a frame is being written to), and
	// writerFrameRead bounds the reading of a frame once its length came.
	writerMaxConns  = 256
	writerConnIdle  = 2 * time.Minute
	writerConnReuse = time.Minute
	writerFrameRead = 30 * time.Second
)

// replicaWriter is a replica's side of the writer: the lease, the
// forwarding of its statements when another replica holds the lease
// (catalog.RemoteWriter), and the endpoint that runs the statements others
// forward while it holds it.
type replicaWriter struct {
	lease  *pgstore.WriterLease
	self   string // this replica, as the writer's audit records name it
	key    []byte
	scheme string // of the writer's URL: http, or https when the listeners use TLS
	client *http.Client
	dial   func(ctx context.Context, addr string) (net.Conn, error) // to the writer, TLS pinned when the listeners use it
	log    zerolog.Logger

	// exec runs forwarded changes; set once the SQL front end exists
	// (serve): the endpoint refuses requests before.
	exec atomic.Pointer[writerExec]

	// The connections this replica serves as the writer (replicaconn.go):
	// at most maxConns at once, each closed after connIdle without a
	// frame; closed when the replica stops (connsClosed).
	connsMu     sync.Mutex
	conns       map[net.Conn]struct{}
	connsClosed bool
	maxConns    int
	connIdle    time.Duration
	// connReuse is how long a sender reuses an idle connection; less than
	// the writer's connIdle, so that the writer does not close one a
	// frame is being written to. frameRead bounds the reading of a frame
	// once its length came.
	connReuse time.Duration
	frameRead time.Duration

	held   atomic.Bool
	target atomic.Pointer[pgstore.WriterHolder] // the holder; Addr "" when none or this replica
	// refused is the last writer whose certificate was refused ("addr
	// fingerprint"), logged once.
	refusedMu sync.Mutex
	refused   string

	downMu sync.Mutex
	down   map[string]time.Time // addresses that refused a connection, until
	posted map[string]time.Time // addresses that refused an upgrade (sent POST requests), until

	queue chan *writerItem

	seenMu sync.Mutex
	seen   map[string]time.Time // request ids, when first seen
	swept  time.Time

	macs sync.Pool // of hash.Hash: HMAC-SHA256 keyed with key (mac)

	// The requests and changes this replica sent to the writer (sent),
	// and ran as the writer (served): metrics.
	sent, served struct{ requests, changes atomic.Int64 }
}

// registerMetrics registers the counters of forwarded requests and changes.
func (w *replicaWriter) registerMetrics(reg prometheus.Registerer) error {
	for _, c := range []struct {
		name, help string
		n          *atomic.Int64
	}{
		{"mandate_forwarded_requests_total", "Requests of forwarded catalog statements this replica sent to the writer replica.", &w.sent.requests},
		{"mandate_forwarded_changes_total", "Catalog changes (statements or blocks) this replica sent to the writer replica.", &w.sent.changes},
		{"mandate_writer_requests_total", "Requests of forwarded catalog statements this replica ran as the writer replica.", &w.served.requests},
		{"mandate_writer_changes_total", "Forwarded catalog changes this replica ran as the writer replica.", &w.served.changes},
	} {
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.n.Load()) })); err != nil {
			return err
		}
	}
	return nil
}

var _ catalog.RemoteWriter = (*replicaWriter)(nil)

// advertiseAddr is the address the other replicas reach this one's HTTP
// listener at: flag, or the listener's address unless it binds every
// interface ("": none).
func advertiseAddr(flag string, ln net.Listener) string {
	if flag != "" {
		return flag
	}
	a, ok := ln.Addr().(*net.TCPAddr)
	if !ok || a.IP.IsUnspecified() {
		return ""
	}
	return a.String()
}

// replicaName names this replica in the writer's audit records: its
// advertised address, else its host name and HTTP listener.
func replicaName(advertise string, ln net.Listener) string {
	if advertise != "" {
		return advertise
	}
	h, _ := os.Hostname()
	return h + " " + ln.Addr().String()
}

// writerKey keys the MACs of forwarded statements.
func writerKey(masterKey []byte) []byte {
	return derivedKey(masterKey, "mandate/replica-writes/v1")
}

// newReplicaWriter returns the writer side of a replica; advertise is the
// address others reach its HTTP listener at ("": it never takes the lease,
// it only forwards); cert is the fingerprint of that listener's TLS
// certificate ("sha256:HEX"), "" when it serves plain HTTP (then so do the
// others: the replicas of an installation share their flags).
func newReplicaWriter(st *pgstore.Store, masterKey []byte, advertise, self, cert string, log zerolog.Logger) (*replicaWriter, error) {
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	w := &replicaWriter{lease: st.WriterLease(hex.EncodeToString(id), advertise, writerLeaseTTL).WithCert(cert), key: writerKey(masterKey),
		self: self, log: log}
	w.init(cert != "")
	return w, nil
}

// init sets up what newReplicaWriter does not read from the store: the
// HTTP client, the queue, the maps.
func (w *replicaWriter) init(useTLS bool) {
	w.scheme, w.down, w.posted, w.seen, w.queue = "http", map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}, make(chan *writerItem, 1024)
	w.conns, w.maxConns, w.connIdle, w.connReuse, w.frameRead = map[net.Conn]struct{}{}, writerMaxConns, writerConnIdle, writerConnReuse, writerFrameRead
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	w.dial = func(ctx context.Context, addr string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", addr) }
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * writerSenders, IdleConnTimeout: 90 * time.Second, DialContext: dialer.DialContext}
	if useTLS {
		// The replicas' listeners have their own certificates (often
		// self-signed): the sender accepts exactly the one whose
		// fingerprint the writer published with its lease.
		w.scheme = "https"
		w.dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return w.dialWriter(ctx, dialer, "tcp", addr)
		}
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return w.dialWriter(ctx, dialer, network, addr)
		}
	}
	w.client = &http.Client{Transport: tr, Timeout: writerTimeout}
	w.target.Store(&pgstore.WriterHolder{})
}

// dialWriter connects to the writer at addr over TLS, accepting only the
// certificate whose fingerprint it published with its lease. A refusal is
// an error before the request was written: the sender commits the
// statements itself, and skips that writer for a while.
func (w *replicaWriter) dialWriter(ctx context.Context, dialer *net.Dialer, network, addr string) (net.Conn, error) {
	var want []byte
	if h := w.target.Load(); h.Addr == addr {
		if hexPart, ok := strings.CutPrefix(h.Cert, "sha256:"); ok {
			want, _ = hex.DecodeString(hexPart)
		}
	}
	if len(want) != sha256.Size {
		w.refuse(addr, "none")
		return nil, fmt.Errorf("the writer replica %s published no certificate fingerprint", addr)
	}
	raw, err := dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain and name checks are replaced by the pin below.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				w.refuse(addr, "none")
				return errors.New("the writer replica presented no certificate")
			}
			if sum := sha256.Sum256(cs.PeerCertificates[0].Raw); !hmac.Equal(sum[:], want) {
				got := fingerprint(cs.PeerCertificates[0].Raw)
				w.refuse(addr, got)
				return fmt.Errorf("the writer replica's certificate has fingerprint %s, not the one of its lease", got)
			}
			return nil
		},
	})
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// refuse logs, once per writer and certificate, that the writer's
// certificate was refused.
func (w *replicaWriter) refuse(addr, got string) {
	w.refusedMu.Lock()
	defer w.refusedMu.Unlock()
	if k := addr + " " + got; k != w.refused {
		w.refused = k
		w.log.Warn().Str("writer", addr).Str("certificate", got).
			Msg("the writer replica's TLS certificate is not the one its lease names; committing statements here")
	}
}

// run renews or reads the lease and sends the forwarded statements until
// ctx ends; the lease is released then.
func (w *replicaWriter) run(ctx context.Context, fe *sqlfront.Frontend, svc *catalog.Service) {
	exec := writerExec(func(ctx context.Context, via string, changes []writerChange) []writerResult {
		return w.commit(ctx, fe, svc, via, changes)
	})
	w.exec.Store(&exec)
	defer w.closeConns()
	for range writerSenders {
		go w.sender()
	}
	t := time.NewTicker(writerLeaseEvery)
	defer t.Stop()
	for {
		w.renew(ctx)
		select {
		case <-ctx.Done():
			w.held.Store(false)
			w.target.Store(&pgstore.WriterHolder{})
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = w.lease.Release(rctx)
			cancel()
			return
		case <-t.C:
		}
	}
}

// renew takes, renews or reads the lease. A renewal that fails or does
// not answer within half the lease's time to live ends this replica's
// holding (it refuses forwarded statements, and commits its own).
func (w *replicaWriter) renew(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, writerLeaseTTL/2)
	defer cancel()
	h, err := w.lease.HoldCert(ctx)
	if err != nil {
		h = pgstore.WriterHolder{}
		if ctx.Err() == nil {
			w.log.Debug().Err(err).Msg("writer lease")
		}
	}
	if h.Held != w.held.Load() {
		w.log.Info().Bool("held", h.Held).Msg("writer lease")
	}
	w.held.Store(h.Held)
	if h.Held {
		h = pgstore.WriterHolder{Held: true}
	}
	w.target.Store(&h)
}

// writer returns the address to forward to, "" when the statements are
// committed here.
func (w *replicaWriter) writer() string {
	if w.held.Load() {
		return ""
	}
	addr := w.target.Load().Addr
	if addr == "" {
		return ""
	}
	w.downMu.Lock()
	defer w.downMu.Unlock()
	if until, ok := w.down[addr]; ok {
		if time.Now().Before(until) {
			return ""
		}
		delete(w.down, addr)
	}
	return addr
}

func (w *replicaWriter) markDown(addr string) {
	w.downMu.Lock()
	w.down[addr] = time.Now().Add(writerDownFor)
	w.downMu.Unlock()
}

// writerChange is one change in a request: a statement or a transaction
// block, with the caller of each statement.
type writerRequest struct {
	Via     string         `json:"via"` // the sending replica
	Changes []writerChange `json:"changes"`
}

type writerChange struct {
	Block bool              `json:"block,omitempty"`
	Stmts []writerStatement `json:"stmts"`
}

type writerStatement struct {
	Principal string          `json:"principal"`
	SourceIP  string          `json:"source_ip,omitempty"`
	UserAgent string          `json:"user_agent,omitempty"`
	SessionID string          `json:"session_id,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
	Form      json.RawMessage `json:"form"`
}

// writerResult is a change's outcome: the revision, or the error as the
// writer answered it.
type writerResult struct {
	Revision int64 `json:"revision,omitempty"`
	// Audit holds the audit records of statements that changed nothing
	// (refused ones included): the sender records them.
	Audit  []catalog.AuditEvent `json:"audit,omitempty"`
	Failed bool                 `json:"failed,omitempty"`
	Code   int                  `json:"code,omitempty"`
	Msg    string               `json:"msg,omitempty"`
	Detail string               `json:"detail,omitempty"`
	Hint   string               `json:"hint,omitempty"`
}

type writerItem struct {
	addr   string
	change writerChange
	size   int
	res    chan writerAnswer
}

type writerAnswer struct {
	rev   catalog.Revision
	audit []catalog.AuditEvent
	err   error
}

// Forward implements catalog.RemoteWriter.
func (w *replicaWriter) Forward(ctx context.Context, stmts []catalog.Statement, block bool) (catalog.Revision, []catalog.AuditEvent, error) {
	addr := w.writer()
	if addr == "" {
		return 0, nil, catalog.ErrNotForwarded
	}
	it := &writerItem{addr: addr, change: writerChange{Block: block, Stmts: make([]writerStatement, len(stmts))}, res: make(chan writerAnswer, 1)}
	for i, st := range stmts {
		c := st.Req.Caller
		it.change.Stmts[i] = writerStatement{Principal: c.Principal, SourceIP: c.SourceIP, UserAgent: c.UserAgent,
			SessionID: c.SessionID, RequestID: c.RequestID, Form: st.Forward}
		it.size += len(st.Forward) + len(c.Principal) + len(c.SourceIP) + len(c.UserAgent) + len(c.SessionID) + len(c.RequestID) + 128
	}
	if it.size > writerMaxBody/2 || len(stmts) > catalog.MaxBlockStatements {
		return 0, nil, catalog.ErrNotForwarded
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	select {
	case w.queue <- it:
	default: // the senders are saturated: commit here
		return 0, nil, catalog.ErrNotForwarded
	}
	a := <-it.res // always wait: once sent the change may commit
	return a.rev, a.audit, a.err
}

// sender sends the queued changes, all those queued for the same writer
// (up to writerMaxBatch) in one request, over its own connection to the
// writer (replicaconn.go).
// The senders live as long as the process: an item queued just before
// the replica stopped forwarding is still answered.
func (w *replicaWriter) sender() {
	var conn *writerConn // this sender's connection to the writer; nil: none open
	for {
		first := <-w.queue
		batch, size := []*writerItem{first}, first.size
		var other []*writerItem // queued for another writer (the lease moved)
	drain:
		for len(batch) < writerMaxBatch && size < writerMaxBody/2 {
			select {
			case it := <-w.queue:
				if it.addr != first.addr {
					other = append(other, it)
					continue
				}
				batch, size = append(batch, it), size+it.size
			default:
				break drain
			}
		}
		for _, it := range other {
			it.res <- writerAnswer{err: catalog.ErrNotForwarded}
		}
		conn = w.send(conn, first.addr, batch)
	}
}

// writerReply is the writer's answer to a request: its status (200: the
// changes ran; any other: none of them did), and for 200 the MAC of the
// results and the results.
type writerReply struct {
	status int
	mac    string
	body   []byte
}

// send sends one request and answers its items; it returns the connection
// to send the next one over (nil: none open).
func (w *replicaWriter) send(conn *writerConn, addr string, batch []*writerItem) *writerConn {
	fail := func(err error) {
		for _, it := range batch {
			it.res <- writerAnswer{err: err}
		}
	}
	changes := make([]writerChange, len(batch))
	for i, it := range batch {
		changes[i] = it.change
	}
	body, err := json.Marshal(writerRequest{Via: w.self, Changes: changes})
	if err != nil {
		fail(catalog.ErrNotForwarded)
		return conn
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		fail(catalog.ErrNotForwarded)
		return conn
	}
	ids := hex.EncodeToString(id)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	ctx, cancel := context.WithTimeout(context.Background(), writerTimeout)
	defer cancel()
	conn, a, sent, err := w.exchange(ctx, conn, addr, ts+"."+ids+"."+w.mac("request", ts, ids, body), body)
	if err != nil {
		if !sent { // never reached the writer
			w.markDown(addr)
			fail(catalog.ErrNotForwarded)
			return conn
		}
		fail(outcomeUnknown(err))
		return conn
	}
	if a.status != http.StatusOK {
		// The writer refused the request before running any of it (it no
		// longer holds the lease, or refused the request).
		if a.status != http.StatusConflict {
			w.log.Warn().Int("status", a.status).Str("writer", addr).Msg("the writer replica refused forwarded statements; committing them here")
		}
		w.markDown(addr)
		fail(catalog.ErrNotForwarded)
		return conn
	}
	w.sent.requests.Add(1)
	w.sent.changes.Add(int64(len(batch)))
	var results []writerResult
	if !hmac.Equal([]byte(a.mac), []byte(w.mac("answer", ts, ids, a.body))) {
		fail(outcomeUnknown(errors.New("the answer's MAC does not match")))
		return conn
	}
	if err := json.Unmarshal(a.body, &results); err != nil || len(results) != len(batch) {
		fail(outcomeUnknown(errors.New("malformed answer")))
		return conn
	}
	for i, it := range batch {
		r := results[i]
		if r.Failed {
			it.res <- writerAnswer{audit: r.Audit, err: &catalog.Error{Code: catalog.Code(r.Code), Msg: r.Msg, Detail: r.Detail, Hint: r.Hint}}
			continue
		}
		it.res <- writerAnswer{rev: catalog.Revision(r.Revision), audit: r.Audit}
	}
	return conn
}

// post sends one request as POST writerPath, to a writer that serves no
// connection; sent: it may have reached the writer.
func (w *replicaWriter) post(ctx context.Context, addr, auth string, body []byte) (a writerReply, sent bool, err error) {
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.scheme+"://"+addr+writerPath, bytes.NewReader(body))
	if err != nil {
		return a, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(writerAuthHeader, auth)
	resp, err := w.client.Do(req)
	if err != nil {
		return a, wrote.Load(), err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return writerReply{status: resp.StatusCode}, true, nil
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, writerMaxBody+1))
	if err != nil {
		return a, true, err
	}
	return writerReply{status: http.StatusOK, mac: resp.Header.Get(writerAuthHeader), body: out}, true, nil
}

func outcomeUnknown(err error) error {
	return &catalog.Error{Code: catalog.CodeOutcomeUnknown, Err: err,
		Msg: "the writer replica did not answer: the statement may or may not have been committed (" + err.Error() + ")"}
}

// mac authenticates a request or its answer: the hex HMAC-SHA256, keyed
// with w.key, of "what\nts\nid\n" and the body. The keyed hashes are
// reused (macs): keying one costs as much as hashing a small frame.
func (w *replicaWriter) mac(what, ts, id string, body []byte) string {
	m, _ := w.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, w.key)
	}
	defer w.macs.Put(m)
	m.Reset()
	var head [128]byte
	m.Write(append(append(append(append(append(append(head[:0], what...), '\n'), ts...), '\n'), id...), '\n'))
	m.Write(body)
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0]))
}

// writerExec runs forwarded changes (commit, in the writer's own
// catalog): their results, in order.
type writerExec func(ctx context.Context, via string, changes []writerChange) []writerResult

// ServeHTTP runs the changes another replica forwarded (POST writerPath),
// or upgrades the request to a connection that carries them (GET
// writerPath, replicaconn.go). Any answer but 200 means none of them ran.
func (w *replicaWriter) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	exec := w.exec.Load()
	if exec == nil || !w.held.Load() {
		http.Error(rw, "not the writer replica", http.StatusConflict)
		return
	}
	if r.Method == http.MethodGet {
		w.upgrade(rw, r, *exec)
		return
	}
	// The body is read only for a header of the right shape and time: a
	// request without one costs no read of up to writerMaxBody.
	if _, _, _, ok := writerAuthFields(r.Header.Get(writerAuthHeader)); !ok {
		http.Error(rw, "unauthenticated", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, writerMaxBody))
	if err != nil {
		http.Error(rw, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	a := w.handle(context.WithoutCancel(r.Context()), *exec, r.Header.Get(writerAuthHeader), body)
	if a.status != http.StatusOK {
		http.Error(rw, string(a.body), a.status)
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set(writerAuthHeader, a.mac)
	_, _ = rw.Write(a.body)
}

// handle runs one request: auth is its "TIME.ID.MAC". An answer but 200
// (its body the reason) means none of its changes ran.
func (w *replicaWriter) handle(ctx context.Context, exec writerExec, auth string, body []byte) writerReply {
	refuse := func(status int, msg string) writerReply { return writerReply{status: status, body: []byte(msg)} }
	if !w.held.Load() {
		return refuse(http.StatusConflict, "not the writer replica")
	}
	ts, id, ok := w.authentic("request", auth, body)
	if !ok {
		return refuse(http.StatusUnauthorized, "unauthenticated")
	}
	var wr writerRequest
	err := json.Unmarshal(body, &wr)
	changes := wr.Changes
	if err != nil || len(changes) == 0 || len(changes) > writerMaxItems || len(wr.Via) > 1024 {
		return refuse(http.StatusBadRequest, "malformed request")
	}
	for _, c := range changes {
		if len(c.Stmts) == 0 || len(c.Stmts) > catalog.MaxBlockStatements || (!c.Block && len(c.Stmts) != 1) {
			return refuse(http.StatusBadRequest, "malformed request")
		}
	}
	if !w.firstUse(id) {
		return refuse(http.StatusUnauthorized, "request replayed")
	}
	ctx, cancel := context.WithTimeout(ctx, writerTimeout/2)
	defer cancel()
	w.served.requests.Add(1)
	w.served.changes.Add(int64(len(changes)))
	out, err := json.Marshal(exec(ctx, wr.Via, changes))
	if err != nil {
		return refuse(http.StatusInternalServerError, "internal error")
	}
	return writerReply{status: http.StatusOK, mac: w.mac("answer", ts, id, out), body: out}
}

// commit plans the forwarded changes, one after the other, and commits
// them all at once (their statements join the committer's batches
// together).
func (w *replicaWriter) commit(ctx context.Context, fe *sqlfront.Frontend, svc *catalog.Service, via string, changes []writerChange) []writerResult {
	results := make([]writerResult, len(changes))
	planned := make([]catalog.ForwardedChange, 0, len(changes))
	at := make([]int, 0, len(changes)) // planned[k] is changes[at[k]]
	for i, c := range changes {
		stmts := make([]catalog.Statement, len(c.Stmts))
		var err error
		for j, s := range c.Stmts {
			stmts[j], err = fe.ForwardedStatement(catalog.Caller{Principal: s.Principal, SourceIP: s.SourceIP, UserAgent: s.UserAgent,
				SessionID: s.SessionID, RequestID: s.RequestID, Via: via}, s.Form)
			if err != nil {
				break
			}
		}
		if err != nil {
			results[i] = failedResult(err, nil)
			continue
		}
		planned, at = append(planned, catalog.ForwardedChange{Stmts: stmts, Block: c.Block}), append(at, i)
	}
	for k, o := range svc.CommitForwardedAll(ctx, planned) {
		if o.Err != nil {
			results[at[k]] = failedResult(o.Err, o.Audit)
			continue
		}
		results[at[k]] = writerResult{Revision: int64(o.Rev), Audit: o.Audit}
	}
	return results
}

// failedResult is the answer of a change that failed with err.
func failedResult(err error, audit []catalog.AuditEvent) writerResult {
	var ce *catalog.Error
	if !errors.As(err, &ce) {
		ce = &catalog.Error{Code: catalog.CodeInternal, Msg: err.Error()}
	}
	msg := ce.Error()
	if ce.Code == catalog.CodeInternal {
		msg = "internal error on the writer replica" // as the SQL front end shows it
	}
	return writerResult{Failed: true, Code: int(ce.Code), Msg: msg, Detail: ce.Detail, Hint: ce.Hint, Audit: audit}
}

// authentic checks the "TIME.ID.MAC" of a request (what "request") or of
// the opening of a connection ("connect") and returns its time and id.
func (w *replicaWriter) authentic(what, h string, body []byte) (ts, id string, ok bool) {
	ts, id, mac, ok := writerAuthFields(h)
	if !ok || !hmac.Equal([]byte(mac), []byte(w.mac(what, ts, id, body))) {
		return "", "", false
	}
	return ts, id, true
}

// writerAuthFields splits an auth header "TIME.ID.MAC" and checks what
// needs no key: its shape, and TIME within writerSkew of now.
func writerAuthFields(h string) (ts, id, mac string, ok bool) {
	parts := strings.SplitN(h, ".", 4)
	if len(parts) != 3 || len(parts[1]) != 32 {
		return "", "", "", false
	}
	sec, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return "", "", "", false
	}
	if d := time.Since(time.Unix(sec, 0)); d > writerSkew || d < -writerSkew {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// firstUse remembers a request id; false: seen before (a replay), or too
// many remembered.
func (w *replicaWriter) firstUse(id string) bool {
	w.seenMu.Lock()
	defer w.seenMu.Unlock()
	now := time.Now()
	if _, ok := w.seen[id]; ok {
		return false
	}
	if now.Sub(w.swept) > writerSkew || len(w.seen) >= writerMaxSeen {
		w.swept = now
		for k, t := range w.seen {
			if now.Sub(t) > 2*writerSkew {
				delete(w.seen, k)
			}
		}
		if len(w.seen) >= writerMaxSeen {
			return false
		}
	}
	w.seen[id] = now
	return true
}
