// Package strictjson decodes untrusted JSON with bounds: every JSON
// decoder on a request path (the authorization and node API, audit
// ingestion, the gateway's clients of the catalog, identity providers'
// answers) goes through it, so that the rule is written once.
//
// A document is accepted only if it is exactly one JSON value (RFC 8259),
// optionally surrounded by whitespace, and
//
//   - it is at most Options.MaxBytes long (default DefaultMaxBytes);
//   - arrays and objects nest at most Options.MaxDepth deep (default
//     DefaultMaxDepth; the top-level value is depth 1);
//   - no object holds the same key twice (compared after unescaping, so
//     "a" and "\u0061" are the same key; invalid UTF-8 compares as the
//     U+FFFD it decodes to);
//   - nothing but whitespace follows the value.
//
// Valid checks this in one pass over the bytes, in time linear in the
// input whatever its shape, and stops at the first violation: a document
// nested 100,000 deep is refused after MaxDepth+1 brackets. Unmarshal and
// Decode then decode with github.com/segmentio/encoding/json (fast,
// compatible with encoding/json), matching struct fields by their exact
// JSON name (not case-insensitively as encoding/json does: "Subject"
// does not fill "subject"), and optionally refusing unknown fields.
//
// Errors are *Error; errors.Is tells the class (ErrSyntax, ErrTooLarge,
// ErrTooDeep, ErrDuplicateKey, ErrTrailingData, ErrType for a value of the
// wrong type or an unknown field). An HTTP handler answers ErrTooLarge
// with 413 and the others with 400 (HTTPStatus).
//
// The package sits under catalog, the bottom layer, so that every package
// may use it.
package strictjson
