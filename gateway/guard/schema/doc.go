// Package schema is the validate_schema guardrail: MCP tools/call results
// checked against the tool's outputSchema (structuredContent required and
// conforming, as the 2025-06-18 specification asks; a tool execution
// error, isError true, is not checked), and model answers against the
// request's response_format JSON schema.
//
// Schemas are compiled once with github.com/santhosh-tekuri/jsonschema/v6
// (draft 2020-12 by default, as MCP specifies) and kept in a Cache by the
// SHA-256 of the document, bounded (least recently used out), failures
// included. Compilation is bounded: the document's size and nesting are
// limited, and no reference is ever loaded from outside the document
// (no network, no files; the meta-schemas are built into the library).
// Regular expressions use Go's regexp (linear time).
//
// Errors: a *ValidationError lists where (JSON pointers) and which
// keyword failed, never content values; ErrMissingStructuredContent,
// ErrSchema and ErrInstance mean the content could not be shown to
// conform. All of them deny in enforce mode.
package schema
