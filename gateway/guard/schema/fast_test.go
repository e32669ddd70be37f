package schema

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
)

// fastSchemas use only what the fast path knows (every keyword of it);
// slowSchemas use something it does not, and must be left to the library.
var fastSchemas = []string{
	weatherSchema,
	`{"type":"object","required":["total","issues"],"properties":{"total":{"type":"integer","minimum":0},"issues":{"type":"array","maxItems":5,"items":{"type":"object","required":["id","title","state"],"properties":{"id":{"type":"integer"},"title":{"type":"string","minLength":1,"maxLength":8},"state":{"enum":["open","closed",null,1.5,true]},"url":{"type":"string","pattern":"^https://"}}}}}}`,
	`{"type":["string","null"],"maxLength":3}`,
	`{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":10,"multipleOf":2}`,
	`{"const":"x"}`,
	`{"type":"array","minItems":1,"items":{"type":"boolean"}}`,
	`{"properties":{"a":false,"b":true},"additionalProperties":{"type":"integer"},"minProperties":1,"maxProperties":2}`,
	`{"title":"annotated","description":"d","format":"email","type":"string"}`,
	`true`,
	`false`,
}

var slowSchemas = []string{
	`{"$ref":"#/$defs/x","$defs":{"x":{"type":"string"}}}`,
	`{"anyOf":[{"type":"string"},{"type":"integer"}]}`,
	`{"type":"array","uniqueItems":true}`,
	`{"patternProperties":{"^a":{"type":"string"}}}`,
	`{"type":"number","multipleOf":0.1}`,
	`{"enum":[[1,2],{"a":1}]}`,
	`{"$schema":"http://json-schema.org/draft-04/schema#","type":"number","minimum":1,"exclusiveMinimum":true}`,
}

func TestFastPathCoverage(t *testing.T) {
	c := NewCache(64, Limits{})
	for _, doc := range fastSchemas {
		s, err := c.Compile([]byte(doc))
		if err != nil || s.fast == nil {
			t.Errorf("%s: fast path %v, %v", doc, s != nil && s.fast != nil, err)
		}
	}
	for _, doc := range slowSchemas {
		s, err := c.Compile([]byte(doc))
		if err != nil || s.fast != nil {
			t.Errorf("%s: took the fast path (%v)", doc, err)
		}
	}
}

// randomValue is a random JSON value of the shapes the schemas above
// care about.
func randomValue(r *rand.Rand, depth int) any {
	keys := []string{"total", "issues", "id", "title", "state", "url", "temperature", "conditions", "humidity", "a", "b", "c"}
	n := r.IntN(10)
	if depth > 3 {
		n %= 6
	}
	switch n {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return json.Number(fmt.Sprint(r.IntN(21) - 3))
	case 3:
		return json.Number([]string{"1.5", "2.0", "0.1", "1e2", "-0", "12345678901234567890", "4.0e0", "9.999999999999999999"}[r.IntN(8)])
	case 4:
		return []string{"", "x", "open", "closed", "sunny", "https://a", "ünï", "long string", "a\"b", "abc"}[r.IntN(10)]
	case 5:
		return []string{"rain", "cloudy", "http://b", "é", "ab"}[r.IntN(5)]
	case 6, 7:
		m := map[string]any{}
		for range r.IntN(5) {
			m[keys[r.IntN(len(keys))]] = randomValue(r, depth+1)
		}
		return m
	default:
		a := []any{}
		for range r.IntN(7) {
			a = append(a, randomValue(r, depth+1))
		}
		return a
	}
}

// agree checks one instance against both paths.
func agree(t testing.TB, s *Schema, doc string, instance []byte) {
	t.Helper()
	fastOK, decided, ferr := s.fast.validate(instance, jsonwalk.MaxDepth)
	v, verr := jsonwalk.Value(instance, 0)
	if (ferr != nil) != (verr != nil) {
		t.Fatalf("schema %s, instance %s: fast path error %v, decoder error %v", doc, instance, ferr, verr)
	}
	if verr != nil || !decided {
		return
	}
	libOK := s.validateValue(v) == nil
	if fastOK != libOK {
		t.Fatalf("schema %s, instance %s: fast path says %v, the library %v", doc, instance, fastOK, libOK)
	}
}

// TestFastPathAgrees holds the fast path to the library's answers on
// random instances (FuzzFastPath goes further).
func TestFastPathAgrees(t *testing.T) {
	c := NewCache(64, Limits{})
	r := rand.New(rand.NewPCG(1, 2))
	for _, doc := range fastSchemas {
		s, err := c.Compile([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		for range 3000 {
			b, _ := json.Marshal(randomValue(r, 0))
			agree(t, s, doc, b)
		}
		for _, bad := range []string{`{"a":}`, `[1,]`, `"\x"`, `01`, `{"a":1}x`, `nul`, `"` + "\x01" + `"`} {
			agree(t, s, doc, []byte(bad))
		}
	}
}

func FuzzFastPath(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 64 {
		b, _ := json.Marshal(randomValue(r, 0))
		f.Add(uint8(i), string(b))
	}
	c := NewCache(64, Limits{})
	var schemas []*Schema
	for _, doc := range fastSchemas {
		s, err := c.Compile([]byte(doc))
		if err != nil {
			f.Fatal(err)
		}
		schemas = append(schemas, s)
	}
	f.Fuzz(func(t *testing.T, which uint8, instance string) {
		if len(instance) > 4096 || strings.Count(instance, "[")+strings.Count(instance, "{") > 64 {
			return
		}
		i := int(which) % len(schemas)
		agree(t, schemas[i], fastSchemas[i], []byte(instance))
	})
}

// TestHugeExponent: a number the library cannot parse is refused, not a
// panic.
func TestHugeExponent(t *testing.T) {
	c := NewCache(4, Limits{})
	for _, doc := range []string{`{"type":"number","minimum":1}`, `{"type":"array","items":{"type":"integer"}}`} {
		s, err := c.Compile([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		s.fast = nil // the library's path
		for _, inst := range []string{`0E10000000000000000000`, `[1e99999999999999999999]`} {
			if err := s.Validate([]byte(inst)); err == nil {
				t.Errorf("%s against %s: valid", inst, doc)
			}
		}
	}
}

var _ = jsonschema.Draft2020
