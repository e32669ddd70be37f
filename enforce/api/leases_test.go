package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/enforce/api"
)

// TestLeases: POST /api/v1/limits/leases needs the node token, decodes
// strictly, bounds the operations and the node name, and answers 503
// when the catalog does not lend.
func TestLeases(t *testing.T) {
	var got *api.LeaseRequest
	srv := newServer(t, newFake(), api.Options{Leases: func(_ context.Context, req *api.LeaseRequest) (*api.LeaseResponse, error) {
		got = req
		return &api.LeaseResponse{Windows: make([]api.WindowLeaseResult, len(req.Windows)), Budgets: []api.BudgetLeaseResult{}}, nil
	}})
	op := `{"op":"grant","key":{"securable":7,"scope":2,"principal_name":"alice@example.com"},"limit":[10,0],"need":[1,0]}`
	ok := `{"node":"n1","windows":[` + op + `]}`
	if r := call(t, srv, http.MethodPost, api.LeasesPath, "", strings.NewReader(ok)); r.status != http.StatusUnauthorized {
		t.Errorf("without the node token: %d", r.status)
	}
	if r := call(t, srv, http.MethodPost, api.LeasesPath, "Bearer "+token, strings.NewReader(ok)); r.status != http.StatusOK ||
		got == nil || len(got.Windows) != 1 || got.Windows[0].Key.PrincipalName != "alice@example.com" || got.Windows[0].Limit != [2]int64{10, 0} {
		t.Errorf("a grant: %d %s, decoded %+v", r.status, r.body, got)
	}
	many := make([]string, api.MaxLeaseOps+1)
	for i := range many {
		many[i] = op
	}
	for _, c := range []struct {
		name, body string
		status     int
	}{
		{"unknown field", `{"node":"n1","windows":[{"op":"grant","bogus":1}]}`, http.StatusBadRequest},
		{"duplicate key", `{"node":"n1","node":"n2"}`, http.StatusBadRequest},
		{"no node", `{"windows":[` + op + `]}`, http.StatusBadRequest},
		{"long node", fmt.Sprintf(`{"node":%q}`, strings.Repeat("n", 129)), http.StatusBadRequest},
		{"too many operations", `{"node":"n1","windows":[` + strings.Join(many, ",") + `]}`, http.StatusRequestEntityTooLarge},
	} {
		if r := call(t, srv, http.MethodPost, api.LeasesPath, "Bearer "+token, strings.NewReader(c.body)); r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
		}
	}
	if r := call(t, srv, http.MethodGet, api.LeasesPath, "Bearer "+token, nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", r.status)
	}
	off := newServer(t, newFake(), api.Options{})
	if r := call(t, off, http.MethodPost, api.LeasesPath, "Bearer "+token, strings.NewReader(ok)); r.status != http.StatusServiceUnavailable {
		t.Errorf("a catalog that does not lend: %d", r.status)
	}
}
