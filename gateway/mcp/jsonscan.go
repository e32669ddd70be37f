package mcp

import (
	"strconv"

	"github.com/mandatehq/mandate/gateway/internal/jsonspan"
)

// The gateway reads JSON-RPC messages as byte spans instead of decoding
// them into Go values: it needs a handful of members (method, id,
// params.name, result.tools[].name) and must forward the rest untouched,
// byte for byte. The scanner is gateway/internal/jsonspan's (shared with
// gateway/llm): a message is checked once by checkJSON (UTF-8, syntax,
// nesting at most maxDepth, and no object whose keys are equal under
// Unicode case folding, duplicates included, so that a message cannot be
// read one way here and another way by an upstream whose decoder is
// last-wins, first-wins or case insensitive), then walked.

// maxDepth bounds the nesting of a message (objects and arrays).
const maxDepth = 512

func trimWS(b []byte) []byte                                 { return jsonspan.TrimWS(b) }
func eachMember(obj []byte, fn func(k, v []byte) bool) error { return jsonspan.EachMember(obj, fn) }
func eachElement(arr []byte, fn func(e []byte, s, end int) bool) error {
	return jsonspan.EachElement(arr, fn)
}
func keyIs(k []byte, key string) bool     { return jsonspan.KeyIs(k, key) }
func stringValue(v []byte) (string, bool) { return jsonspan.StringValue(v) }
func framedObject(b []byte) bool          { return jsonspan.FramedObject(b) }

// member returns the raw value of obj's member key ("" key never matches)
// and its offsets in obj. obj must be a JSON object; anything else has no
// members.
func member(obj []byte, key string) (val []byte, start, end int, ok bool) {
	if val, ok = jsonspan.Member(obj, key); ok {
		start = jsonspan.Offset(obj, val)
		end = start + len(val)
	}
	return val, start, end, ok
}

// intValue returns the JSON value v as an int if it is an integer.
func intValue(v []byte) (int, bool) {
	n, err := strconv.Atoi(string(v))
	return n, err == nil
}

// checkJSON validates b once: one UTF-8 JSON value, nested at most
// maxDepth deep, with no two keys of an object equal under case folding.
// A syntax error wraps strictjson.ErrSyntax.
func checkJSON(b []byte) error { return jsonspan.Check(b, maxDepth) }

// validJSON reports whether checkJSON accepts b.
func validJSON(b []byte) bool { return checkJSON(b) == nil }
