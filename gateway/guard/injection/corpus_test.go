package injection

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated corpus files")

const corpusDir = "../../../testdata/guardrails"

func TestCorpusIsGenerated(t *testing.T) {
	want := encodeInjectionCorpus(generateInjectionCorpus())
	path := filepath.Join(corpusDir, "injection.jsonl")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what the generator produces: run go test ./gateway/guard/injection -run TestCorpusIsGenerated -update", path)
	}
}

func loadCorpus(t *testing.T, names ...string) []corpusItem {
	t.Helper()
	if len(names) == 0 {
		names = []string{"injection.jsonl", "injection-handwritten.jsonl"}
	}
	var items []corpusItem
	for _, name := range names {
		f, err := os.Open(filepath.Join(corpusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for line := 1; sc.Scan(); line++ {
			var it corpusItem
			if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
				t.Fatalf("%s:%d: %v", name, line, err)
			}
			if it.Label != "attack" && it.Label != "benign" {
				t.Fatalf("%s:%d: label %q", name, line, it.Label)
			}
			items = append(items, it)
		}
		f.Close()
	}
	return items
}

type confusion struct{ tp, fp, fn, tn int }

func (c confusion) recall() float64    { return float64(c.tp) / float64(max(1, c.tp+c.fn)) }
func (c confusion) precision() float64 { return float64(c.tp) / float64(max(1, c.tp+c.fp)) }
func (c confusion) fpr() float64       { return float64(c.fp) / float64(max(1, c.fp+c.tn)) }

// TestCorpusQuality reports precision, recall and the false-positive rate
// on benign tool outputs at the default threshold and at 0.8, per hiding
// technique, and fails if the default threshold drops below the levels
// measured when the rules were written (recall 0.9, FPR 2 %).
func TestCorpusQuality(t *testing.T) {
	items := loadCorpus(t)
	s := NewScorer()
	thresholds := []float64{DefaultThreshold, 0.8}
	conf := make([]confusion, len(thresholds))
	perTech := map[string]*confusion{}
	var misses []string
	for _, it := range items {
		sc := s.Score([]byte(it.Text)).Score
		for i, th := range thresholds {
			hit := sc >= th
			switch {
			case it.Label == "attack" && hit:
				conf[i].tp++
			case it.Label == "attack":
				conf[i].fn++
			case hit:
				conf[i].fp++
			default:
				conf[i].tn++
			}
		}
		if it.Label == "attack" {
			c := perTech[it.Technique]
			if c == nil {
				c = &confusion{}
				perTech[it.Technique] = c
			}
			if sc >= DefaultThreshold {
				c.tp++
			} else {
				c.fn++
				misses = append(misses, fmt.Sprintf("MISS %.2f %s (%s) %.120q", sc, it.ID, it.Technique, it.Text))
			}
		} else if sc >= DefaultThreshold {
			misses = append(misses, fmt.Sprintf("FP   %.2f %s %s %.120q", sc, it.ID, it.Note, it.Text))
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%d items (%d attacks, %d benign)\n| threshold | precision | recall | false-positive rate | TP | FP | FN | TN |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
		len(items), conf[0].tp+conf[0].fn, conf[0].fp+conf[0].tn)
	for i, th := range thresholds {
		c := conf[i]
		fmt.Fprintf(&sb, "| %.1f | %.3f | %.3f | %.3f | %d | %d | %d | %d |\n", th, c.precision(), c.recall(), c.fpr(), c.tp, c.fp, c.fn, c.tn)
	}
	var techs []string
	for k := range perTech {
		techs = append(techs, k)
	}
	sort.Strings(techs)
	fmt.Fprintf(&sb, "\n| technique | attacks | recall at %.1f |\n|---|---:|---:|\n", DefaultThreshold)
	for _, k := range techs {
		c := perTech[k]
		fmt.Fprintf(&sb, "| %s | %d | %.3f |\n", k, c.tp+c.fn, c.recall())
	}
	t.Log(sb.String())
	if testing.Verbose() {
		for _, m := range misses {
			t.Log(m)
		}
	}
	if c := conf[0]; c.recall() < 0.9 || c.fpr() > 0.02 {
		t.Errorf("at threshold %.1f: recall %.3f (want ≥ 0.9), false-positive rate %.3f (want ≤ 0.02)", DefaultThreshold, c.recall(), c.fpr())
	}
}

// TestHoldout reports the scorer on sets written after the rules were
// frozen: injection-holdout.jsonl was written after the first rules and
// then used to find the kinds of phrasing they missed (the rules added for
// it are generic, but the set is no longer unseen: it now guards against
// regressions); injection-holdout2.jsonl was written after those rules
// were frozen and never used to tune them: the estimate of how the
// heuristic does on text it was not fitted to. It fails only on a
// collapse.
func TestHoldout(t *testing.T) {
	for _, set := range []struct {
		file              string
		minRecall, maxFPR float64
	}{
		{"injection-holdout.jsonl", 0.9, 0.05},
		{"injection-holdout2.jsonl", 0.3, 0.15},
	} {
		items := loadCorpus(t, set.file)
		s := NewScorer()
		var c confusion
		var misses []string
		for _, it := range items {
			sc := s.Score([]byte(it.Text)).Score
			hit := sc >= DefaultThreshold
			switch {
			case it.Label == "attack" && hit:
				c.tp++
			case it.Label == "attack":
				c.fn++
				misses = append(misses, fmt.Sprintf("MISS %.2f %s %.100q", sc, it.ID, it.Text))
			case hit:
				c.fp++
				misses = append(misses, fmt.Sprintf("FP   %.2f %s %.100q", sc, it.ID, it.Text))
			default:
				c.tn++
			}
		}
		t.Logf("%s: %d attacks, %d benign: precision %.3f recall %.3f false-positive rate %.3f (TP %d FP %d FN %d TN %d)",
			set.file, c.tp+c.fn, c.fp+c.tn, c.precision(), c.recall(), c.fpr(), c.tp, c.fp, c.fn, c.tn)
		if testing.Verbose() {
			for _, m := range misses {
				t.Log(m)
			}
		}
		if c.recall() < set.minRecall || c.fpr() > set.maxFPR {
			t.Errorf("%s collapsed: recall %.3f, false-positive rate %.3f", set.file, c.recall(), c.fpr())
		}
	}
}
