package llmgw

import (
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/mandatehq/mandate/gateway/internal/jsonspan"
	"github.com/mandatehq/mandate/gateway/llm"
)

// The audit row's JSON (request_params, request_tags, routing) is written
// by appends rather than encoding/json's reflection: the same bytes
// encoding/json writes (TestAuditJSONMatchesEncodingJSON), without its
// per-call allocations.

// appendString is jsonspan.AppendString: one implementation for the
// adapters' audit JSON.
var appendString = jsonspan.AppendString

// appendFloat appends f as encoding/json writes a float64 (non-finite
// values, which it refuses, as 0).
func appendFloat(b []byte, f float64) []byte {
	switch abs := math.Abs(f); {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return append(b, '0')
	case abs == 0 || abs >= 1e-6 && abs < 1e21:
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	q, _ := json.Marshal(f) // exponent forms: encoding/json's own clean-up
	return append(b, q...)
}

// appendNonZero appends key and v, an omitempty integer field as
// encoding/json writes it, unless v is 0.
func appendNonZero(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), v, 10)
}

// appendParams appends p as json.Marshal(p) does.
func appendParams(b []byte, p *auditParams) []byte {
	b = append(b, `{"endpoint":`...)
	b = appendString(b, p.Endpoint)
	if p.RequestedModel != "" {
		b = append(b, `,"requested_model":`...)
		b = appendString(b, p.RequestedModel)
	}
	b = append(b, `,"stream":`...)
	b = strconv.AppendBool(b, p.Stream)
	b = appendNonZero(b, `,"max_tokens":`, p.MaxTokens)
	b = appendNonZero(b, `,"estimated_input_tokens":`, p.EstimatedInputTokens)
	b = appendNonZero(b, `,"tools":`, int64(p.Tools))
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, p.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, p.BytesOut, 10)
	b = append(b, `,"trace_id":`...)
	b = appendString(b, p.TraceID)
	if p.Models != nil {
		b = append(b, `,"models":`...)
		b = strconv.AppendInt(b, int64(*p.Models), 10)
	}
	if p.UsageEstimated {
		b = append(b, `,"usage_estimated":true`...)
	}
	b = appendNonZero(b, `,"web_searches":`, p.WebSearches)
	b = appendNonZero(b, `,"file_searches":`, p.FileSearches)
	if len(p.FinishReasons) > 0 {
		b = append(b, `,"finish_reasons":[`...)
		for i, r := range p.FinishReasons {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, r)
		}
		b = append(b, ']')
	}
	if p.ResponseID != "" {
		b = append(b, `,"response_id":`...)
		b = appendString(b, p.ResponseID)
	}
	if p.UpstreamRequestID != "" {
		b = append(b, `,"upstream_request_id":`...)
		b = appendString(b, p.UpstreamRequestID)
	}
	if p.AnsweredLocally {
		b = append(b, `,"answered_locally":true`...)
	}
	return append(b, '}')
}

// appendTags appends tags as json.Marshal(tags) does (keys sorted).
func appendTags(b []byte, tags map[string]string) []byte {
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(tags)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, tags[k])
	}
	return append(b, '}')
}

// appendAttempts appends attempts as json.Marshal(attempts) does.
func appendAttempts(b []byte, attempts []llm.Attempt) []byte {
	b = append(b, '[')
	for i := range attempts {
		a := &attempts[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"service":`...)
		b = appendString(b, a.Service)
		b = append(b, `,"provider":`...)
		b = appendString(b, string(a.Provider))
		b = append(b, `,"model":`...)
		b = appendString(b, a.Model)
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(a.Status), 10)
		b = append(b, `,"latency_ms":`...)
		b = appendFloat(b, a.LatencyMS)
		if a.Error != "" {
			b = append(b, `,"error":`...)
			b = appendString(b, a.Error)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}
