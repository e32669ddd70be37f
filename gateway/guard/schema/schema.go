package schema

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
)

// Name is the built-in guardrail's name (system.ai.validate_schema).
const Name = "validate_schema"

// Limits bound what one schema and one instance can cost.
type Limits struct {
	MaxSchemaBytes   int // default 256 KiB
	MaxSchemaDepth   int // nesting of the schema document; default 64
	MaxInstanceBytes int // default 16 MiB
	MaxInstanceDepth int // default 512
}

func (l Limits) withDefaults() Limits {
	if l.MaxSchemaBytes <= 0 {
		l.MaxSchemaBytes = 256 << 10
	}
	if l.MaxSchemaDepth <= 0 {
		l.MaxSchemaDepth = 64
	}
	if l.MaxInstanceBytes <= 0 {
		l.MaxInstanceBytes = 16 << 20
	}
	if l.MaxInstanceDepth <= 0 {
		l.MaxInstanceDepth = jsonwalk.MaxDepth
	}
	return l
}

// Errors. A *ValidationError says the content does not conform; the
// others say the schema or the content could not be checked (fail
// closed either way).
var (
	ErrSchema                   = errors.New("invalid schema")
	ErrInstance                 = errors.New("content is not valid JSON")
	ErrMissingStructuredContent = errors.New("the tool has an outputSchema but the result has no structuredContent")
)

// Violation is one failed check: where in the content (a JSON pointer)
// and which keyword. It never holds content values.
type Violation struct {
	Location string `json:"location"` // JSON pointer into the content, "" for the root
	Keyword  string `json:"keyword"`  // required, type, enum, additionalProperties, …
	Detail   string `json:"detail,omitempty"`
}

// ValidationError lists the violations (at most maxViolations).
type ValidationError struct {
	Violations []Violation
}

const maxViolations = 10

func (e *ValidationError) Error() string {
	var sb strings.Builder
	sb.WriteString("content does not match the schema")
	for i, v := range e.Violations {
		if i == 0 {
			sb.WriteString(": ")
		} else {
			sb.WriteString("; ")
		}
		loc := v.Location
		if loc == "" {
			loc = "/"
		}
		fmt.Fprintf(&sb, "at %s: %s", loc, v.Keyword)
		if v.Detail != "" {
			fmt.Fprintf(&sb, " (%s)", v.Detail)
		}
	}
	return sb.String()
}

// Schema is a compiled schema (immutable, safe for concurrent use).
type Schema struct {
	Hash   string // hex SHA-256 of the schema document as given
	s      *jsonschema.Schema
	fast   *fastSchema // nil: the schema uses more than the fast path knows
	limits Limits
}

// Cache compiles schemas once and keeps them by hash, least recently used
// first out; failed compilations are cached too (a misbehaving server
// cannot make every call recompile). Safe for concurrent use; create one
// per process and share it.
type Cache struct {
	limits Limits
	max    int
	mu     sync.Mutex
	byHash map[string]*list.Element
	lru    *list.List
}

type cacheEntry struct {
	hash string
	s    *Schema
	err  error
}

// NewCache returns a cache holding at most max schemas.
func NewCache(max int, limits Limits) *Cache {
	if max <= 0 {
		max = 1024
	}
	return &Cache{limits: limits.withDefaults(), max: max, byHash: map[string]*list.Element{}, lru: list.New()}
}

// Len is the number of cached schemas (and cached failures).
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Compile returns the compiled schema for doc (a JSON Schema document;
// draft 2020-12 unless it says otherwise with $schema). Remote and file
// references are never loaded: a $ref must resolve inside the document.
func (c *Cache) Compile(doc []byte) (*Schema, error) {
	sum := sha256.Sum256(doc)
	h := hex.EncodeToString(sum[:])
	c.mu.Lock()
	if el, ok := c.byHash[h]; ok {
		c.lru.MoveToFront(el)
		e := el.Value.(*cacheEntry)
		c.mu.Unlock()
		return e.s, e.err
	}
	c.mu.Unlock()
	s, err := compile(doc, h, c.limits)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byHash[h]; ok { // compiled concurrently
		e := el.Value.(*cacheEntry)
		return e.s, e.err
	}
	c.byHash[h] = c.lru.PushFront(&cacheEntry{hash: h, s: s, err: err})
	for c.lru.Len() > c.max {
		el := c.lru.Back()
		c.lru.Remove(el)
		delete(c.byHash, el.Value.(*cacheEntry).hash)
	}
	return s, err
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("loading %s is not allowed: references must resolve inside the schema", url)
}

const schemaURL = "urn:mandate:schema"

func compile(doc []byte, hash string, l Limits) (*Schema, error) {
	if len(doc) > l.MaxSchemaBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrSchema, l.MaxSchemaBytes)
	}
	if err := jsonwalk.Check(doc, l.MaxSchemaDepth); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	if _, ok := v.(map[string]any); !ok {
		if _, ok := v.(bool); !ok {
			return nil, fmt.Errorf("%w: a schema is an object or a boolean", ErrSchema)
		}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	return &Schema{Hash: hash, s: s, fast: buildFast(v), limits: l}, nil
}

// Validate checks a JSON document against the schema.
func (s *Schema) Validate(instance []byte) error {
	if len(instance) > s.limits.MaxInstanceBytes {
		return fmt.Errorf("%w: larger than %d bytes", ErrInstance, s.limits.MaxInstanceBytes)
	}
	if s.fast != nil {
		ok, decided, err := s.fast.validate(instance, s.limits.MaxInstanceDepth)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInstance, err)
		}
		if ok && decided {
			return nil
		}
		// A violation: the library says what and where.
	}
	// Decoded without reflection into the generic form the validator
	// reads (numbers as json.Number, as jsonschema.UnmarshalJSON gives).
	v, err := jsonwalk.Value(instance, s.limits.MaxInstanceDepth)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInstance, err)
	}
	return s.validateValue(v)
}

func (s *Schema) validateValue(v any) (err error) {
	defer func() {
		// The library panics on numbers it cannot parse exactly
		// (0E10000000000000000000): such content cannot be shown to
		// conform.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: a value the validator cannot read (%v)", ErrInstance, r)
		}
	}()
	err = s.s.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("%w: %v", ErrInstance, err)
	}
	out := &ValidationError{}
	leaves(ve, out)
	if len(out.Violations) == 0 {
		out.Violations = append(out.Violations, Violation{Keyword: "schema"})
	}
	return out
}

// leaves collects the innermost errors: they say what is wrong; the
// inner nodes only say where the search went.
func leaves(e *jsonschema.ValidationError, out *ValidationError) {
	if len(out.Violations) >= maxViolations {
		return
	}
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			leaves(c, out)
		}
		return
	}
	v := Violation{Location: pointer(e.InstanceLocation)}
	if p := e.ErrorKind.KeywordPath(); len(p) > 0 {
		v.Keyword = p[len(p)-1]
	} else {
		v.Keyword = "schema"
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		v.Detail = "missing " + strings.Join(k.Missing, ", ")
	case *kind.Type:
		v.Detail = "want " + strings.Join(k.Want, " or ")
	case *kind.AdditionalProperties:
		v.Detail = "unexpected " + strings.Join(k.Properties, ", ")
	}
	out.Violations = append(out.Violations, v)
}

func pointer(tokens []string) string {
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteByte('/')
		sb.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return sb.String()
}

// ToolResult validates an MCP tools/call result (the JSON-RPC result
// object: content, structuredContent, isError) against the tool's
// outputSchema: structuredContent is required and must conform. A tool
// execution error (isError true) is not validated. A result that is not
// a JSON object is an error.
func (c *Cache) ToolResult(outputSchema, result []byte) error {
	s, err := c.Compile(outputSchema)
	if err != nil {
		return err
	}
	if len(result) > s.limits.MaxInstanceBytes {
		return fmt.Errorf("%w: larger than %d bytes", ErrInstance, s.limits.MaxInstanceBytes)
	}
	tr := bytes.TrimSpace(result)
	if len(tr) == 0 || tr[0] != '{' {
		return fmt.Errorf("%w: a tool result is a JSON object", ErrInstance)
	}
	spans, err := jsonwalk.Members(tr, "structuredContent", "isError")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInstance, err)
	}
	if ie := spans[1]; ie[1] > 0 && string(tr[ie[0]:ie[1]]) == "true" {
		return nil
	}
	sc := spans[0]
	if sc[1] == 0 || string(tr[sc[0]:sc[1]]) == "null" {
		return ErrMissingStructuredContent
	}
	return s.Validate(tr[sc[0]:sc[1]])
}

// ToolResultDoc is ToolResult on a result another guardrail has already
// walked (jsonwalk.Doc), without walking it again.
func (c *Cache) ToolResultDoc(outputSchema []byte, doc *jsonwalk.Doc) error {
	s, err := c.Compile(outputSchema)
	if err != nil {
		return err
	}
	raw := doc.Raw()
	if len(raw) > s.limits.MaxInstanceBytes {
		return fmt.Errorf("%w: larger than %d bytes", ErrInstance, s.limits.MaxInstanceBytes)
	}
	if tr := bytes.TrimSpace(raw); len(tr) == 0 || tr[0] != '{' {
		return fmt.Errorf("%w: a tool result is a JSON object", ErrInstance)
	}
	if is, ie := doc.Member("isError"); ie > 0 && string(raw[is:ie]) == "true" {
		return nil
	}
	ss, se := doc.Member("structuredContent")
	if se == 0 || string(raw[ss:se]) == "null" {
		return ErrMissingStructuredContent
	}
	return s.Validate(raw[ss:se])
}

// ResponseFormatSchema extracts the JSON Schema from an OpenAI-style
// response_format ({"type":"json_schema","json_schema":{"name":…,
// "schema":{…},"strict":…}}). ok is false for other formats (text,
// json_object) or when none is given.
func ResponseFormatSchema(responseFormat []byte) (schema []byte, ok bool, err error) {
	rf := bytes.TrimSpace(responseFormat)
	if len(rf) == 0 || string(rf) == "null" {
		return nil, false, nil
	}
	var f struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(rf, &f); err != nil {
		return nil, false, fmt.Errorf("response_format: %v", err)
	}
	if f.Type != "json_schema" {
		return nil, false, nil
	}
	if f.JSONSchema == nil || len(bytes.TrimSpace(f.JSONSchema.Schema)) == 0 {
		return nil, false, fmt.Errorf("%w: response_format json_schema without a schema", ErrSchema)
	}
	return f.JSONSchema.Schema, true, nil
}

// Answer validates a model's answer (the message content, which must be a
// JSON document) against the response format's schema.
func (c *Cache) Answer(schema, answer []byte) error {
	s, err := c.Compile(schema)
	if err != nil {
		return err
	}
	return s.Validate(bytes.TrimSpace(answer))
}

// Guard is a compiled validate_schema policy. It takes no options: the
// schemas come with the tools (outputSchema) and the requests
// (response_format); the mode (enforce or monitor) is the policy's.
type Guard struct{}

// Compile checks that no options are given.
func Compile(opts map[string]string) (*Guard, error) {
	if err := guard.NewOptions(Name, opts).Done(); err != nil {
		return nil, err
	}
	return &Guard{}, nil
}
