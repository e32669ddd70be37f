// Package pin is the pin_tools guardrail's engine: a canonical hash of
// each MCP tool definition and its comparison against the approved pins.
//
// The hash is the hex SHA-256 of the canonical JSON of an object holding
// the definition's name, description, inputSchema, outputSchema and
// annotations (members that are absent or null are left out): object
// members sorted by name (byte order of their UTF-8), no insignificant
// whitespace, strings with only '"', '\\' and control characters escaped
// (as \b \f \n \r \t or \u00XX), numbers in their shortest round-trip form
// (1.0 and 1 are the same number; integers beyond 2^53 keep their digits).
// Any change a model could see (a word of the description, a schema
// property, an annotation) changes the hash; a different member order,
// whitespace or escaping does not. Other members (title, icons, _meta)
// are not pinned.
//
// Comparing a tools/list against the pins gives each tool a status:
// approved (its hash is the pinned one), changed (pinned with another
// hash) or new (not pinned). A tools/list that defines a name twice is
// refused as a whole. The SQL side (APPROVE TOOLS, SHOW TOOLS, approve
// 'first_seen') records and shows the pins; the gateway hides and refuses
// tools that are not approved.
package pin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
)

// Name is the built-in guardrail's name (system.ai.pin_tools).
const Name = "pin_tools"

// pinned are the definition members the hash covers.
var pinned = []string{"name", "description", "inputSchema", "outputSchema", "annotations"}

// Limits.
const (
	MaxTools    = 4096
	maxDefBytes = 4 << 20
	maxDepth    = 128
)

// Status of a tool against the pins.
type Status string

const (
	Approved Status = "approved"
	Changed  Status = "changed"
	New      Status = "new"
)

// Tool is one tool definition's name and hash.
type Tool struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
}

// ErrDefinition is a tool definition or tools/list that cannot be pinned
// (malformed, nameless, a name defined twice, too large).
var ErrDefinition = errors.New("invalid tool definition")

// HashTool returns the name and canonical hash of one tool definition (a
// JSON object from tools/list).
func HashTool(def []byte) (Tool, error) {
	if len(def) > maxDefBytes {
		return Tool{}, fmt.Errorf("%w: larger than %d bytes", ErrDefinition, maxDefBytes)
	}
	if err := jsonwalk.Check(def, maxDepth); err != nil {
		return Tool{}, fmt.Errorf("%w: %v", ErrDefinition, err)
	}
	var m map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(def))
	if err := d.Decode(&m); err != nil || m == nil {
		return Tool{}, fmt.Errorf("%w: not a JSON object", ErrDefinition)
	}
	var name string
	if err := json.Unmarshal(m["name"], &name); err != nil || name == "" {
		return Tool{}, fmt.Errorf("%w: no name", ErrDefinition)
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	for _, k := range pinned { // already in sorted order
		v, ok := m[k]
		if !ok || string(bytes.TrimSpace(v)) == "null" {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		writeString(&buf, k)
		buf.WriteByte(':')
		if err := canonical(&buf, v); err != nil {
			return Tool{}, fmt.Errorf("%w: %s: %v", ErrDefinition, k, err)
		}
	}
	buf.WriteByte('}')
	sum := sha256.Sum256(buf.Bytes())
	return Tool{Name: name, Hash: hex.EncodeToString(sum[:])}, nil
}

// Canonical returns the canonical JSON of a document (see the package
// documentation).
func Canonical(doc []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := canonical(&buf, doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func canonical(buf *bytes.Buffer, doc []byte) error {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return write(buf, v)
}

func write(buf *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case string:
		writeString(buf, x)
	case json.Number:
		s, err := number(x)
		if err != nil {
			return err
		}
		buf.WriteString(s)
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := write(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, k)
			buf.WriteByte(':')
			if err := write(buf, x[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("unexpected %T", v)
	}
	return nil
}

// number renders a JSON number in its shortest round-trip form: an
// integer that float64 holds exactly as an integer, big integers as their
// digits, other numbers like ECMAScript (strconv 'g' shortest, exponent
// form outside [1e-6, 1e21)).
func number(n json.Number) (string, error) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			if i == 0 {
				return "0", nil // -0
			}
			return strconv.FormatInt(i, 10), nil
		}
		return strings.TrimPrefix(s, "+"), nil // beyond int64: keep the digits
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return "", fmt.Errorf("number %q out of range", s)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		if f == 0 {
			return "0", nil
		}
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	if a := math.Abs(f); a >= 1e-6 && a < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	return strconv.FormatFloat(f, 'e', -1, 64), nil
}

func writeString(buf *bytes.Buffer, s string) {
	const hexd = "0123456789abcdef"
	buf.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				buf.WriteString(`\ufffd`)
			} else {
				buf.WriteString(s[i : i+n])
			}
			i += n
			continue
		}
		switch c {
		case '"', '\\':
			buf.WriteByte('\\')
			buf.WriteByte(c)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			if c < 0x20 {
				buf.WriteString(`\u00`)
				buf.WriteByte(hexd[c>>4])
				buf.WriteByte(hexd[c&0xf])
			} else {
				buf.WriteByte(c)
			}
		}
		i++
	}
	buf.WriteByte('"')
}

// HashToolsList hashes every tool of a tools/list result ({"tools":[…],
// "nextCursor":…}). A name defined twice makes the whole list invalid.
func HashToolsList(result []byte) ([]Tool, error) {
	var r struct {
		Tools []json.RawMessage `json:"tools"`
	}
	if len(result) > maxDefBytes*4 {
		return nil, fmt.Errorf("%w: tools/list larger than %d bytes", ErrDefinition, maxDefBytes*4)
	}
	if err := json.Unmarshal(result, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDefinition, err)
	}
	if len(r.Tools) > MaxTools {
		return nil, fmt.Errorf("%w: more than %d tools", ErrDefinition, MaxTools)
	}
	out := make([]Tool, 0, len(r.Tools))
	seen := make(map[string]bool, len(r.Tools))
	for _, def := range r.Tools {
		t, err := HashTool(def)
		if err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("%w: tool %q defined twice", ErrDefinition, t.Name)
		}
		seen[t.Name] = true
		out = append(out, t)
	}
	return out, nil
}

// Check is one tool's comparison with the pins.
type Check struct {
	Name         string `json:"name"`
	Hash         string `json:"hash"`
	Status       Status `json:"status"`
	ApprovedHash string `json:"approved_hash,omitempty"` // the pin, when changed
}

// Compare gives each tool its status against approved (name → pinned
// hash), in the order of tools.
func Compare(approved map[string]string, tools []Tool) []Check {
	out := make([]Check, len(tools))
	for i, t := range tools {
		c := Check{Name: t.Name, Hash: t.Hash}
		switch pin, ok := approved[t.Name]; {
		case !ok:
			c.Status = New
		case pin == t.Hash:
			c.Status = Approved
		default:
			c.Status, c.ApprovedHash = Changed, pin
		}
		out[i] = c
	}
	return out
}

// Approval selects how tools get pinned.
type Approval string

const (
	ApproveAdmin     Approval = "admin"      // only ALTER CONNECTION … APPROVE TOOLS pins
	ApproveFirstSeen Approval = "first_seen" // a tool never seen before is pinned on first sight
)

// Config is the parsed OPTIONS of a pin_tools policy.
type Config struct {
	Approve Approval // approve option; default admin
}

// Guard is a compiled pin_tools policy (immutable).
type Guard struct{ cfg Config }

// Compile parses the options (approve 'admin' | 'first_seen').
func Compile(opts map[string]string) (*Guard, error) {
	o := guard.NewOptions(Name, opts)
	c := Config{Approve: Approval(o.Enum("approve", string(ApproveAdmin), string(ApproveAdmin), string(ApproveFirstSeen)))}
	if err := o.Done(); err != nil {
		return nil, err
	}
	return &Guard{cfg: c}, nil
}

// Config returns the parsed options.
func (g *Guard) Config() Config { return g.cfg }

// Decide compares a tools/list with the pins and returns every tool's
// status and the pins to add: with approve 'first_seen', tools that are
// new become approved (and are returned in pin); a changed tool is never
// approved automatically. Visible lists the tools to show the agent (the
// approved ones, in order).
func (g *Guard) Decide(approved map[string]string, tools []Tool) (checks []Check, pin []Tool, visible []string) {
	checks = Compare(approved, tools)
	for i := range checks {
		c := &checks[i]
		if c.Status == New && g.cfg.Approve == ApproveFirstSeen {
			pin = append(pin, Tool{Name: c.Name, Hash: c.Hash})
			c.Status = Approved
		}
		if c.Status == Approved {
			visible = append(visible, c.Name)
		}
	}
	return checks, pin, visible
}
