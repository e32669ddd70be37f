package pgstore

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// randomText mixes what could confuse a scan for the end of the ops:
// quotes, backslashes, brackets, escapes, the record's own keys, bytes
// JSON escapes, multi-byte characters.
func randomText(r *rand.Rand) string {
	parts := []string{`"`, `\`, `[`, `]`, `{`, `}`, `,"audit":[`, `"ops":`, `\"`, `\\`, "\n", "\x00", "\u2028", "é", "<>&", "a", "Z9", " "}
	var b strings.Builder
	for range r.IntN(12) {
		b.WriteString(parts[r.IntN(len(parts))])
	}
	return b.String()
}

func randomChange(r *rand.Rand, rev catalog.Revision) catalog.Change {
	c := catalog.Change{Revision: rev, NextID: catalog.ID(r.Int64N(1 << 40))}
	id := func() catalog.ID { return catalog.ID(r.Int64N(1 << 33)) }
	for range r.IntN(4) {
		var o catalog.ChangeOp
		switch r.IntN(8) {
		case 0:
			o = catalog.ChangeOp{Kind: catalog.OpPutPrincipal, Principal: &catalog.Principal{ID: id(), Name: randomText(r),
				Kind: catalog.KindGroup, Admin: r.IntN(2) == 0, Comment: randomText(r), Created: time.UnixMicro(r.Int64N(1 << 50)).UTC()}}
		case 1:
			o = catalog.ChangeOp{Kind: catalog.OpDeletePrincipal, ID: id()}
		case 2, 3:
			o = catalog.ChangeOp{Kind: catalog.OpAddMember, Membership: &catalog.Membership{Group: id(), Member: id()}}
			if r.IntN(2) == 0 {
				o.Kind = catalog.OpRemoveMember
			}
		case 4:
			s := &catalog.Securable{ID: id(), Type: catalog.TypeConnection, Parent: id(), Name: randomText(r), Owner: id(),
				Comment: randomText(r), Created: time.UnixMicro(r.Int64N(1 << 50)).UTC()}
			if r.IntN(2) == 0 {
				s.Options = map[string]string{randomText(r): randomText(r), "url": randomText(r)}
				s.Secrets = []byte(randomText(r))
			}
			o = catalog.ChangeOp{Kind: catalog.OpPutSecurable, Securable: s}
		case 5:
			o = catalog.ChangeOp{Kind: catalog.OpDeleteSecurable, ID: id()}
		case 6:
			o = catalog.ChangeOp{Kind: catalog.OpAddGrant, Grant: &catalog.Grant{Securable: id(), Principal: id(),
				Privilege: catalog.Privilege(randomText(r)), Grantor: id()}}
		default:
			o = catalog.ChangeOp{Kind: catalog.OpRemoveGrant, GrantKey: &catalog.GrantKey{Securable: id(), Principal: id(),
				Privilege: catalog.PrivUseConnection}}
		}
		c.Ops = append(c.Ops, o)
	}
	for range r.IntN(3) {
		c.Audit = append(c.Audit, catalog.AuditEvent{EventID: randomText(r), Time: time.UnixMicro(r.Int64N(1 << 50)).UTC(),
			Service: "sql", Action: randomText(r), UserIdentity: randomText(r), RequestParams: randomText(r),
			ErrorMessage: randomText(r), Revision: rev})
	}
	return c
}

// TestDecodeOpsReadsTheStart: decoding a record's ops from its start
// gives what decoding it whole gives, for random records (names and
// comments full of quotes, backslashes and brackets); records of another
// shape, or with a broken start, are decoded whole (or refused) as before.
func TestDecodeOpsReadsTheStart(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		rev := catalog.Revision(1 + r.Int64N(1<<40))
		recs, err := encodeRecords(rev-1, []catalog.Change{randomChange(r, rev)})
		if err != nil {
			t.Fatal(err)
		}
		rec := recs[0]
		var whole changeOps
		if err := json.Unmarshal(rec, &whole); err != nil {
			t.Fatal(err)
		}
		want := catalog.Change{Revision: whole.Revision, NextID: whole.NextID, Ops: whole.Ops}
		fast, ok := decodeOpsFast(rec)
		if !ok {
			t.Fatalf("record %d: not read from its start: %s", i, rec)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("record %d: from the start\n%+v\nwhole\n%+v\n%s", i, fast, want, rec)
		}
		if got, err := decodeOps(int64(rev), rec); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d: decodeOps %+v, %v", i, got, err)
		}
		// Another shape (indented, keys in another order): decoded whole.
		var generic map[string]any
		if err := json.Unmarshal(rec, &generic); err != nil {
			t.Fatal(err)
		}
		other, _ := json.MarshalIndent(generic, "", " ") // keys sorted: audit first
		if _, ok := decodeOpsFast(other); ok {
			t.Fatalf("record %d: another shape read from its start: %s", i, other)
		}
		if got, err := decodeOps(int64(rev), other); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("record %d: decodeOps of another shape %+v, %v", i, got, err)
		}
		// A record cut inside its ops never decodes from its start.
		_, _, ops, _ := splitOps(rec)
		opsAt := strings.Index(string(rec), `,"ops":`) + len(`,"ops":`)
		if cut := rec[:opsAt+r.IntN(len(ops))]; true {
			if _, ok := decodeOpsFast(cut); ok {
				t.Fatalf("record %d: a cut record read: %s", i, cut)
			}
		}
		if _, err := decodeOps(int64(rev)+1, rec); err == nil {
			t.Fatalf("record %d: decoded as another revision", i)
		}
	}
}
