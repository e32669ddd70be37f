package sensitive

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/gateway/guard"
)

var update = flag.Bool("update", false, "rewrite the generated corpus files")

const corpusDir = "../../../testdata/guardrails"

func TestCorpusIsGenerated(t *testing.T) {
	want := encodeCorpus(generateCorpus())
	path := filepath.Join(corpusDir, "sensitive.jsonl")
	if *update {
		if err := os.MkdirAll(corpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what the generator produces: run go test ./gateway/guard/sensitive -run TestCorpusIsGenerated -update", path)
	}
}

func loadCorpus(t *testing.T, name string) []corpusItem {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var items []corpusItem
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var it corpusItem
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			t.Fatalf("%s:%d: %v", name, line, err)
		}
		// labels given by value only: every occurrence
		var labs []corpusLabel
		for _, l := range it.Entities {
			if l.End > 0 {
				if it.Text[l.Start:l.End] != l.Value {
					t.Fatalf("%s %s: label %q does not match text %q", name, it.ID, l.Value, it.Text[l.Start:l.End])
				}
				labs = append(labs, l)
				continue
			}
			off, n := 0, 0
			for {
				k := strings.Index(it.Text[off:], l.Value)
				if k < 0 {
					break
				}
				ll := l
				ll.Start, ll.End = off+k, off+k+len(l.Value)
				labs = append(labs, ll)
				off = ll.End
				n++
			}
			if n == 0 {
				t.Fatalf("%s %s: label %q not in text", name, it.ID, l.Value)
			}
		}
		it.Entities = labs
		items = append(items, it)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return items
}

type prCount struct{ tp, fp, fn int }

func (c prCount) precision() float64 {
	if c.tp+c.fp == 0 {
		return 1
	}
	return float64(c.tp) / float64(c.tp+c.fp)
}

func (c prCount) recall() float64 {
	if c.tp+c.fn == 0 {
		return 1
	}
	return float64(c.tp) / float64(c.tp+c.fn)
}

const checksummedSecret = "SECRET (checksummed)"

// TestCorpusQuality measures precision and recall per entity type on the
// labelled corpus and fails below 0.95 for the checksum-validated types.
func TestCorpusQuality(t *testing.T) {
	items := append(loadCorpus(t, "sensitive.jsonl"), loadCorpus(t, "sensitive-handwritten.jsonl")...)
	if len(items) < 300 {
		t.Fatalf("corpus has %d items", len(items))
	}
	d := allDetector(t)
	counts := map[string]*prCount{}
	get := func(k string) *prCount {
		if counts[k] == nil {
			counts[k] = &prCount{}
		}
		return counts[k]
	}
	for _, tp := range Builtins() {
		get(tp)
	}
	get(checksummedSecret)
	var misses []string
	for _, it := range items {
		var fs []Finding
		if it.Kind == "json" {
			var err error
			if fs, err = d.FindJSON(nil, []byte(it.Text)); err != nil {
				t.Fatalf("%s: %v", it.ID, err)
			}
		} else {
			fs = d.Find(nil, []byte(it.Text))
		}
		matched := make([]bool, len(it.Entities))
		for _, f := range fs {
			hit := false
			for i, l := range it.Entities {
				if l.Type == f.Entity && f.Start < l.End && l.Start < f.End && !matched[i] {
					matched[i], hit = true, true
					break
				}
			}
			if !hit {
				get(f.Entity).fp++
				if f.Entity == Secret && f.Checksummed() {
					get(checksummedSecret).fp++
				}
				misses = append(misses, fmt.Sprintf("FP %-11s %s: %q (%s)", f.Entity, it.ID, it.Text[f.Start:f.End], f.Rule))
			}
		}
		for i, l := range it.Entities {
			c := get(l.Type)
			if matched[i] {
				c.tp++
			} else {
				c.fn++
				misses = append(misses, fmt.Sprintf("FN %-11s %s: %q", l.Type, it.ID, l.Value))
			}
			if l.Checksummed {
				if matched[i] {
					get(checksummedSecret).tp++
				} else {
					get(checksummedSecret).fn++
				}
			}
		}
	}
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Strings(names)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%d items\n| entity | labels | TP | FP | FN | precision | recall |\n|---|---:|---:|---:|---:|---:|---:|\n", len(items))
	for _, k := range names {
		c := counts[k]
		fmt.Fprintf(&sb, "| %s | %d | %d | %d | %d | %.3f | %.3f |\n", k, c.tp+c.fn, c.tp, c.fp, c.fn, c.precision(), c.recall())
	}
	t.Log(sb.String())
	if testing.Verbose() {
		for _, m := range misses {
			t.Log(m)
		}
	}
	for _, k := range []string{CreditCard, IBAN, USSSN, Crypto, checksummedSecret} {
		c := counts[k]
		if c.tp+c.fn < 20 {
			t.Errorf("%s: only %d labels", k, c.tp+c.fn)
		}
		if c.precision() < 0.95 || c.recall() < 0.95 {
			t.Errorf("%s: precision %.3f recall %.3f, want ≥ 0.95", k, c.precision(), c.recall())
		}
	}
}

// TestCorpusStreams: for every text item, a stream fed in random chunks
// releases exactly the masked whole text.
func TestCorpusStreams(t *testing.T) {
	items := append(loadCorpus(t, "sensitive.jsonl"), loadCorpus(t, "sensitive-handwritten.jsonl")...)
	g := compile(t, map[string]string{"action": "mask"})
	r := rand.New(rand.NewPCG(1, 2))
	for _, it := range items {
		want := g.Text(NewMaskContext(), guard.Result, []byte(it.Text)).Content
		if want == nil {
			want = []byte(it.Text)
		}
		for range 3 {
			s := g.Stream(NewMaskContext(), guard.Result)
			var out []byte
			var chunks []string
			rest := it.Text
			for len(rest) > 0 {
				n := 1 + r.IntN(min(len(rest), 12))
				chunks = append(chunks, rest[:n])
				out = append(out, s.Write([]byte(rest[:n]))...)
				rest = rest[n:]
			}
			out = append(out, s.Flush()...)
			if !bytes.Equal(out, want) {
				t.Errorf("%s: stream released\n%q\nwant\n%q\nchunks %q", it.ID, out, want, chunks)
				break
			}
		}
	}
}
