package duckstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// auditHelperEnv selects TestAuditHelperProcess and names its data dir.
const auditHelperEnv = "MANDATE_AUDIT_HELPER_DIR"

// TestAuditHelperProcess is not a test: it is the child process of
// TestAuditCrashDurability. It runs the production audit pipeline
// (AuditLog → auditwal → DuckDB) with 64 producers and prints "ok ID" for
// each event once Record returned for it, until it is killed.
func TestAuditHelperProcess(t *testing.T) {
	dir := os.Getenv(auditHelperEnv)
	if dir == "" {
		t.Skip("the child process of TestAuditCrashDurability")
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	duck, err := Open(ctx, dir, Options{})
	if err != nil {
		fail(err)
	}
	wal, err := auditwal.Open(ctx, dir, duck, auditwal.Options{})
	if err != nil {
		fail(err)
	}
	al := catalog.NewAuditLog(wal, catalog.AuditLogOptions{})
	acked := make(chan string, 4096)
	for p := range 64 {
		go func() {
			for i := 0; ; i++ {
				ev := storetest.GatewayEvent(int64(i))
				ev.EventID = fmt.Sprintf("p%d-%d", p, i)
				if err := al.Record(ctx, ev); err != nil {
					fail(err)
				}
				acked <- ev.EventID
			}
		}()
	}
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	for {
		select {
		case id := <-acked:
			fmt.Fprintf(w, "ok %s\n", id)
		default:
			if err := w.Flush(); err != nil {
				fail(err)
			}
			fmt.Fprintf(w, "ok %s\n", <-acked)
		}
	}
}

// TestAuditCrashDurability kills (SIGKILL) a process in the middle of
// audit ingestion and checks that every event whose Record had returned is
// in the store after reopening it, exactly once.
func TestAuditCrashDurability(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestAuditHelperProcess$")
	cmd.Env = append(os.Environ(), auditHelperEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	var once sync.Once
	kill := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		})
	}
	t.Cleanup(kill)

	const target = 30_000 // well past the first DuckDB apply
	acked := make(map[string]bool, 2*target)
	// Only whole lines are acknowledgements: SIGKILL can cut the helper's
	// last write short, and "ok p1-12" cut from "ok p1-123\n" names an
	// event that may never have been recorded.
	lines := bufio.NewReader(stdout)
	ack := func() error {
		line, err := lines.ReadString('\n')
		if err != nil {
			return err // a fragment without its newline is dropped
		}
		if id, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ok "); ok {
			acked[id] = true
		}
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	var readErr error
	for len(acked) < target && time.Now().Before(deadline) && readErr == nil {
		readErr = ack()
	}
	if len(acked) < target {
		t.Fatalf("the helper acknowledged only %d events: %v\n%s", len(acked), readErr, stderr.String())
	}
	kill() // while 64 producers keep recording
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want killed by SIGKILL\n%s", cmd.ProcessState, stderr.String())
	}
	// Lines the helper wrote before it was killed but we had not read yet
	// are acknowledged too.
	for {
		if err := ack(); err != nil {
			break
		}
	}
	_, _ = io.Copy(io.Discard, stdout)

	// What the crash left: the audit log's records not yet applied to
	// DuckDB, and DuckDB's own WAL.
	var logBytes, walBytes int64
	if fi, err := os.Stat(filepath.Join(dir, auditwal.FileName)); err == nil {
		logBytes = fi.Size()
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName+".wal")); err == nil {
		walBytes = fi.Size()
	}

	ctx := t.Context()
	duck := openT(t, dir)
	wal, err := auditwal.Open(ctx, dir, duck, auditwal.Options{})
	must(t, err)
	t.Cleanup(func() { _ = wal.Close() })
	if err := wal.Flush(ctx); err != nil { // applies the replayed records
		t.Fatal(err)
	}
	rows, err := duck.db.QueryContext(ctx, `SELECT event_id FROM audit_events`)
	must(t, err)
	stored := make(map[string]int, len(acked))
	for rows.Next() {
		var id string
		must(t, rows.Scan(&id))
		stored[id]++
	}
	must(t, rows.Err())
	rows.Close()
	missing := 0
	for id := range acked {
		if stored[id] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged event %s is missing after the crash", id)
			}
		}
	}
	for id, n := range stored {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged events missing", missing, len(acked))
	}
	t.Logf("%d events acknowledged before the kill, %d recovered (the kill left %d bytes of audit log and %d of DuckDB WAL)",
		len(acked), len(stored), logBytes, walBytes)
}
