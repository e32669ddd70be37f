package builtin_test

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/exfil"
	"github.com/mandatehq/mandate/gateway/guard/injection"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
	"github.com/mandatehq/mandate/gateway/guard/sensitive"
)

// corpusDocs are JSON documents made of the labelled corpora's texts (as
// tool results with a text block and a structured copy) plus the
// benchmark's.
func corpusDocs(t *testing.T) [][]byte {
	t.Helper()
	docs := [][]byte{toolResult(), answerJSON()}
	for _, path := range []string{"../../../testdata/guardrails/sensitive.jsonl", "../../../testdata/guardrails/injection.jsonl"} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var item struct{ Text string }
			if err := json.Unmarshal(sc.Bytes(), &item); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(map[string]any{"content": []any{map[string]any{"type": "text", "text": item.Text}},
				"structuredContent": map[string]any{"body": item.Text, "password": "hunter2-" + item.Text[:min(8, len(item.Text))], "n": 4111111111111111}})
			docs = append(docs, b)
		}
		f.Close()
	}
	return docs
}

// TestSharedDecodingAgrees: each engine gives the same answer on a
// document decoded once (jsonwalk.Doc) as on the raw document.
func TestSharedDecodingAgrees(t *testing.T) {
	sens, err := sensitive.Compile(map[string]string{"action": "mask"})
	if err != nil {
		t.Fatal(err)
	}
	inj, _ := injection.Compile(nil)
	exf, _ := exfil.Compile(map[string]string{"allowed_domains": "example.com, *.corp.example"})
	doc := jsonwalk.GetDoc()
	defer jsonwalk.PutDoc(doc)
	for _, raw := range corpusDocs(t) {
		if err := doc.Parse(raw); err != nil {
			t.Fatal(err)
		}
		o1, err1 := sens.JSON(sensitive.NewMaskContext(), guard.Result, raw)
		o2, err2 := sens.JSONDoc(sensitive.NewMaskContext(), guard.Result, doc)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(o1.Findings, o2.Findings) || string(o1.Content) != string(o2.Content) {
			t.Fatalf("sensitive differs on %s:\n%+v %s\n%+v %s", raw, o1.Findings, o1.Content, o2.Findings, o2.Content)
		}
		v1, _ := inj.EvaluateJSON(t.Context(), raw, nil)
		v2, _ := inj.EvaluateDoc(t.Context(), doc, nil)
		if v1.Score != v2.Score || v1.Block != v2.Block {
			t.Fatalf("injection differs on %s: %v %v", raw, v1.Score, v2.Score)
		}
		l1, _ := exf.CheckJSON(raw)
		l2, _ := exf.CheckDoc(doc)
		if !reflect.DeepEqual(l1, l2) {
			t.Fatalf("exfil differs on %s: %v %v", raw, l1, l2)
		}
	}
}
