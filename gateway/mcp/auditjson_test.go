package mcp

import (
	"encoding/json"
	"testing"
)

// TestAuditParamsJSON: the audit row's request_params written by appends
// are the bytes encoding/json writes for the same values, escapes and
// omitted members included.
func TestAuditParamsJSON(t *testing.T) {
	zero, n := 0, 417
	odd := "a<b>&c \"q\" \\ \n\t\u2028 é \xff\x7f"
	for _, p := range []auditParams{
		{},
		{TraceID: "0af7651916cd43dd8448eb211c80319c", BytesIn: 160, BytesOut: 120},
		{Tool: "search_repos", ArgumentsBytes: &n, UpstreamStatus: 200, BytesIn: 1 << 40, BytesOut: -1,
			TraceID: "t", ProtocolVersion: "2025-06-18"},
		{Tool: odd, ArgumentsBytes: &zero, UpstreamStatus: 401, JSONRPCError: -32602, TraceID: odd,
			ProtocolVersion: odd, CredentialRetried: true},
		{JSONRPCError: -32001, ProtocolVersion: "2026-07-28"},
	} {
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendParams(nil, &p); string(got) != string(want) {
			t.Errorf("request_params:\n got %s\nwant %s", got, want)
		}
	}
}
