package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/mandatehq/mandate/catalog"
)

// LeasesPath: POST /api/v1/limits/leases lends a gateway node slices of the
// catalog server's rate-limit windows and budget accounts (LeaseRequest),
// so that limits and budgets hold exactly across the server and its nodes
// (gateway/limits/nodelimits holds the lease rules).
const LeasesPath = "/api/v1/limits/leases"

// MaxLeaseOps bounds the operations of one lease request (windows and
// budgets together); more is 413.
const MaxLeaseOps = 1000

// LeaseRequest is one round trip of a gateway node's limits backend.
type LeaseRequest struct {
	// Node identifies the node process (random at its start): the leases
	// of a node that stops calling are taken back after the lease TTL.
	Node    string          `json:"node"`
	Windows []WindowLeaseOp `json:"windows,omitempty"`
	Budgets []BudgetLeaseOp `json:"budgets,omitempty"`
}

// LeaseKey names a rate-limit window: the securable, the scope (1
// service, 2 principal, 3 group) and the principal. PrincipalName is set
// instead of an ID the node does not know (a caller that no definition
// names); the server resolves it.
type LeaseKey struct {
	Securable     catalog.ID `json:"securable"`
	Scope         uint8      `json:"scope"`
	Principal     catalog.ID `json:"principal,omitempty"`
	PrincipalName string     `json:"principal_name,omitempty"`
}

// Window lease operations (WindowLeaseOp.Op).
const (
	LeaseGrant  = "grant"  // lease Need units (all or nothing) and up to Want more
	LeaseClose  = "close"  // end lease Lease, of which Used units were used
	LeaseAdjust = "adjust" // refund (negative) or extra charge (positive) at bucket At
	// Budgets only.
	LeaseSettle = "settle" // Settled is the cost settled against Lease so far
	LeaseReturn = "return" // settle, give back the rest of the slice, end the lease
)

// WindowLeaseOp is one operation on a window; units are [requests,
// tokens].
type WindowLeaseOp struct {
	Op     string   `json:"op"`
	Key    LeaseKey `json:"key"`
	Limit  [2]int64 `json:"limit,omitempty"`
	Need   [2]int64 `json:"need,omitempty"`
	Want   [2]int64 `json:"want,omitempty"`
	Lease  int64    `json:"lease,omitempty"`
	Used   [2]int64 `json:"used,omitempty"`
	At     int64    `json:"at,omitempty"`
	Adjust [2]int64 `json:"adjust,omitempty"`
}

// WindowLeaseResult answers one WindowLeaseOp. A grant: Lease and Granted,
// or, refused, Dim (0 requests, 1 tokens) and WaitNS (−1: never fits);
// Remaining is the window's room after it. A close: At is the bucket its
// used units are now charged in (for later adjustments). Error is set
// when the operation could not be done (Unavailable: try again later).
type WindowLeaseResult struct {
	Lease       int64    `json:"lease,omitempty"`
	Granted     [2]int64 `json:"granted,omitempty"`
	Remaining   [2]int64 `json:"remaining,omitempty"`
	Dim         int      `json:"dim,omitempty"`
	WaitNS      int64    `json:"wait_ns,omitempty"`
	At          int64    `json:"at,omitempty"`
	Error       string   `json:"error,omitempty"`
	Unavailable bool     `json:"unavailable,omitempty"`
}

// BudgetLeaseOp is one operation on a budget account: the budget's Ident,
// the principal (FOR EACH USER; else 0), the month, amounts in
// nano-dollars.
type BudgetLeaseOp struct {
	Op            string     `json:"op"`
	Budget        string     `json:"budget"`
	Principal     catalog.ID `json:"principal,omitempty"`
	PrincipalName string     `json:"principal_name,omitempty"`
	Month         int32      `json:"month"`
	Lease         int64      `json:"lease,omitempty"`
	Need          int64      `json:"need,omitempty"`
	Want          int64      `json:"want,omitempty"`
	Settled       int64      `json:"settled,omitempty"`
}

// BudgetLeaseResult answers one BudgetLeaseOp. A grant: Lease and Granted
// (added to the lease's slice), or Refused (the budget has no room for
// Need). Unknown: the lease is gone (taken back after the TTL, or the
// server restarted): its slice is no longer the node's.
type BudgetLeaseResult struct {
	Lease       int64  `json:"lease,omitempty"`
	Granted     int64  `json:"granted,omitempty"`
	Refused     bool   `json:"refused,omitempty"`
	Unknown     bool   `json:"unknown,omitempty"`
	Error       string `json:"error,omitempty"`
	Unavailable bool   `json:"unavailable,omitempty"`
}

// LeaseResponse answers a LeaseRequest, one result per operation in
// order. TTLNS is how long the server keeps a silent node's budget slices.
type LeaseResponse struct {
	Windows []WindowLeaseResult `json:"windows"`
	Budgets []BudgetLeaseResult `json:"budgets"`
	TTLNS   int64               `json:"ttl_ns"`
}

// ErrLeaseInvalid is wrapped by Options.Leases errors about the request
// itself (400).
var ErrLeaseInvalid = errors.New("invalid lease request")

// leases answers POST /api/v1/limits/leases.
func (h *handler) leases(w http.ResponseWriter, r *http.Request) error {
	if h.o.Leases == nil {
		return errorf(http.StatusServiceUnavailable, "limit leases are not served by this catalog")
	}
	var req LeaseRequest
	if err := h.decodeBody(w, r, &req); err != nil {
		return err
	}
	if n := len(req.Windows) + len(req.Budgets); n > MaxLeaseOps {
		return errorf(http.StatusRequestEntityTooLarge, "%d lease operations are more than the limit of %d", n, MaxLeaseOps)
	}
	if req.Node == "" || len(req.Node) > 128 {
		return errorf(http.StatusBadRequest, "node: 1 to 128 characters")
	}
	resp, err := h.o.Leases(r.Context(), &req)
	if err != nil {
		if errors.Is(err, ErrLeaseInvalid) {
			return errorf(http.StatusBadRequest, "%s", err.Error())
		}
		return h.resolveError(err, "serving limit leases")
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// LeaseFunc serves lease requests (Options.Leases).
type LeaseFunc func(ctx context.Context, req *LeaseRequest) (*LeaseResponse, error)
