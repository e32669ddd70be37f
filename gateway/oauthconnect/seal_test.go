package oauthconnect

import (
	"errors"
	"testing"
)

func TestSealedValuesAreBoundToPurposeAndOwner(t *testing.T) {
	e := newEnv(t)
	b, err := e.k.sealToken(purposeAccess, "alice", "c", "AT-x")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := e.k.openToken(b, purposeAccess, "alice", "c"); err != nil || v != "AT-x" {
		t.Fatalf("open: %q, %v", v, err)
	}
	for _, tc := range []struct{ purpose, user, conn string }{
		{purposeRefresh, "alice", "c"}, {purposeTicket, "alice", "c"}, {purposeAccess, "bob", "c"}, {purposeAccess, "alice", "d"},
	} {
		if _, err := e.k.openToken(b, tc.purpose, tc.user, tc.conn); !errors.Is(err, errSealed) {
			t.Errorf("opened as %+v: %v", tc, err)
		}
	}
	b[len(b)-1] ^= 1
	if _, err := e.k.openToken(b, purposeAccess, "alice", "c"); !errors.Is(err, errSealed) {
		t.Fatal("tampered value opened")
	}
}
