package pgstore

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// grantRecord is a change record as a GRANT over the wire writes it.
func grantRecord(b testing.TB, rev catalog.Revision) []byte {
	c := catalog.Change{Revision: rev, NextID: 400,
		Ops: []catalog.ChangeOp{{Kind: catalog.OpAddGrant,
			Grant: &catalog.Grant{Securable: 123, Principal: 45, Privilege: catalog.PrivUseConnection, Grantor: 1}}},
		Audit: []catalog.AuditEvent{{EventID: "0b6f1c1e-9a3e-4c55-8d2f-6f3f1b2a9c10", Time: time.Now(), Service: "sql",
			Action: "GRANT", UserIdentity: "admin", SourceIP: "127.0.0.1", SessionID: "3f2a9c10-1b2a-4c55-8d2f-6f3f0b6f1c1e",
			SecurableType: "CONNECTION", SecurableName: "system.ai.loadgen_c3_k1",
			RequestParams: `{"statement":"GRANT USE_CONNECTION ON CONNECTION loadgen_c3_k1 TO \"loadgen-g3\"","privileges":["USE_CONNECTION"],"principals":["loadgen-g3"]}`,
			Decision:      "allow", LatencyMs: 0.412, Revision: rev}}}
	recs, err := encodeRecords(rev-1, []catalog.Change{c})
	if err != nil {
		b.Fatal(err)
	}
	return recs[0]
}

func BenchmarkDecodeRecord(b *testing.B) {
	rec := grantRecord(b, 77)
	b.Logf("%d bytes: %s", len(rec), rec)
	b.Run("audit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decode(77, rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ops", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeOps(77, rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ops-whole", func(b *testing.B) { // what decodeOps did before reading the start only
		b.ReportAllocs()
		for b.Loop() {
			var c changeOps
			if err := json.Unmarshal(rec, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		c, _ := decode(77, rec)
		for b.Loop() {
			if _, err := encodeRecords(76, []catalog.Change{c}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
