// Package jsonstr is the one implementation of JSON string syntax and
// decoding that the strict parsers (catalog/strictjson) and the gateway's
// guardrail scanners (gateway/guard/jsonwalk, its schema fast path, the
// injection scorer) share: which escapes exist, how \u surrogate pairs
// join, and what encoding/json makes of unpaired surrogates and invalid
// UTF-8 (U+FFFD).
//
//   - Scan checks one string (escapes, control characters, its end) and
//     says whether it holds escapes, so callers decode only those that do.
//   - AppendUnescaped decodes a checked string body exactly as
//     encoding/json.Unmarshal decodes it into a Go string (a differential
//     test and fuzz test hold it to that).
//   - Escape decodes one escape sequence; it also serves lenient callers
//     that resolve escapes in text that merely quotes JSON.
//   - Width gives the raw and decoded length of one character or escape,
//     for mapping offsets in decoded text back to the raw bytes.
//
// The package allocates nothing but the caller's dst and has no state.
package jsonstr
