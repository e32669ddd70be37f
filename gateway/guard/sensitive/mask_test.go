package sensitive

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/gateway/guard"
)

func compile(t *testing.T, opts map[string]string) *Guard {
	t.Helper()
	g, err := Compile(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestMaskSamePlaceholderAndRestore(t *testing.T) {
	g := compile(t, map[string]string{"entities": "EMAIL,CREDIT_CARD", "action": "mask", "restore": "true"})
	mc := NewMaskContext()
	in := "Mail bob@example.com and alice@example.org, again bob@example.com; card 4111 1111 1111 1111."
	o := g.Text(mc, guard.Call, []byte(in))
	want := "Mail <EMAIL_1> and <EMAIL_2>, again <EMAIL_1>; card <CREDIT_CARD_1>."
	if string(o.Content) != want {
		t.Fatalf("masked %q, want %q", o.Content, want)
	}
	if fmt.Sprint(o.Summary) != "[{CREDIT_CARD 1} {EMAIL 3}]" {
		t.Errorf("summary %v", o.Summary)
	}
	// the model echoes placeholders; the caller gets its values back
	answer := "I wrote to <EMAIL_2> and <EMAIL_1>; <EMAIL_9> is unknown; <CREDIT_CARD_1> charged."
	got := string(g.RestoreText(mc, []byte(answer)))
	if got != "I wrote to alice@example.org and bob@example.com; <EMAIL_9> is unknown; 4111 1111 1111 1111 charged." {
		t.Errorf("restored %q", got)
	}
	// a value first seen on the result (from a tool) is masked but never
	// restored (it is not the caller's own)
	r := g.Text(mc, guard.Result, []byte("tool says carol@example.net"))
	if string(r.Content) != "tool says <EMAIL_3>" {
		t.Errorf("result masked %q", r.Content)
	}
	if got := string(g.RestoreText(mc, []byte("<EMAIL_3>"))); got != "<EMAIL_3>" {
		t.Errorf("restored a result-phase placeholder: %q", got)
	}
	// a fresh request starts over
	mc2 := NewMaskContext()
	if got := string(g.Text(mc2, guard.Call, []byte("alice@example.org")).Content); got != "<EMAIL_1>" {
		t.Errorf("new context: %q", got)
	}
	if got := string(g.RestoreText(mc2, []byte("<EMAIL_2>"))); got != "<EMAIL_2>" {
		t.Errorf("context leaked: %q", got)
	}
}

func TestActions(t *testing.T) {
	in := []byte("ssn 536-22-8371")
	deny := compile(t, map[string]string{"action": "deny"}).Text(NewMaskContext(), guard.Call, in)
	if !deny.Deny || deny.Content != nil {
		t.Errorf("deny: %+v", deny)
	}
	mon := compile(t, map[string]string{"action": "monitor"}).Text(NewMaskContext(), guard.Call, in)
	if mon.Deny || mon.Content != nil || len(mon.Findings) != 1 || mon.Findings[0].Entity != USSSN {
		t.Errorf("monitor: %+v", mon)
	}
	clean := compile(t, nil).Text(NewMaskContext(), guard.Call, []byte("nothing here"))
	if clean.Found() || clean.Content != nil || clean.Deny {
		t.Errorf("clean: %+v", clean)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		opts map[string]string
		err  string
	}{
		{map[string]string{"entities": "EMAIL, phone"}, ""},
		{map[string]string{"entities": "EMAIL,FOO"}, `unknown entity "FOO"`},
		{map[string]string{"action": "block"}, `"block" is not one of mask, deny, monitor`},
		{map[string]string{"restore": "maybe"}, "not a boolean"},
		{map[string]string{"entitys": "EMAIL"}, "unknown option entitys"},
		{map[string]string{"custom": "EMPLOYEE_ID=E[0-9]{6}, PROJECT_CODE=PRJ-[A-Z]{3}-[0-9]{4}", "entities": "EMAIL,EMPLOYEE_ID"}, ""},
		{map[string]string{"custom": "EMAIL=x+"}, "clashes with a built-in"},
		{map[string]string{"custom": "X=a(b"}, "missing closing )"},
		{map[string]string{"custom": "X=a*"}, "matches the empty string"},
		{map[string]string{"custom": "lower=abc"}, ""},
		{map[string]string{"custom": "9X=abc"}, "use upper-case"},
		{map[string]string{"words": "CODENAME=apollo|artemis, CLIENT=Acme Corp|Globex"}, ""},
		{map[string]string{"custom": "nameless"}, "expected NAME=value"},
	} {
		_, err := Compile(tc.opts)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v: err %v, want %q", tc.opts, err, tc.err)
		}
	}
}

func TestCustomEntitiesAndWords(t *testing.T) {
	g := compile(t, map[string]string{
		"entities": "EMAIL",
		"custom":   "EMPLOYEE_ID=E[0-9]{6}, PROJECT_CODE=PRJ-[A-Z]{3}-[0-9]{4}, RANGE=R[0-9]{2,3}",
		"words":    "CODENAME=Apollo|Blue Harbor, CLIENT=Globex",
	})
	in := "E123456 on PRJ-ABC-1234 (R12, XE1234567, E1234567) for apollo and blue harbor at globex; mail x@example.com; 4111111111111111"
	var got []string
	for _, f := range g.Detector().Find(nil, []byte(in)) {
		got = append(got, f.Entity+":"+in[f.Start:f.End])
	}
	want := "[EMPLOYEE_ID:E123456 PROJECT_CODE:PRJ-ABC-1234 RANGE:R12 CODENAME:apollo CODENAME:blue harbor CLIENT:globex EMAIL:x@example.com]"
	if fmt.Sprint(got) != want {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestMaskJSON(t *testing.T) {
	g := compile(t, map[string]string{"action": "mask"})
	mc := NewMaskContext()
	in := `{"to":"bob@example.com","note":"card 4111111111111111 \u0026 mail bob\u0040example.com","n":4111111111111111,` +
		`"nested":[{"password":"Xk9#mQ2$vL7pR4zz"},{"ok":"nothing \"quoted\" here"}],"bob@example.com":true, "emoji":"\ud83d\ude00 ok"}`
	o, err := g.JSON(mc, guard.Call, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(o.Content, &v); err != nil {
		t.Fatalf("masked JSON invalid: %v\n%s", err, o.Content)
	}
	want := `{"to":"<EMAIL_1>","note":"card <CREDIT_CARD_1> & mail <EMAIL_1>","n":"<CREDIT_CARD_1>",` +
		`"nested":[{"password":"<SECRET_1>"},{"ok":"nothing \"quoted\" here"}],"<EMAIL_1>":true, "emoji":"\ud83d\ude00 ok"}`
	if string(o.Content) != want {
		t.Errorf("masked:\n%s\nwant\n%s", o.Content, want)
	}
	// ranges are in the raw document
	for _, f := range o.Findings {
		if f.Entity == Email && !strings.Contains(in[f.Start:f.End], "bob") {
			t.Errorf("range %d-%d = %q", f.Start, f.End, in[f.Start:f.End])
		}
	}
	if got := in[o.Findings[2].Start:o.Findings[2].End]; got != `bob\u0040example.com` {
		t.Errorf("escaped range: %q", got)
	}
	// nothing found: the same bytes back
	clean := []byte(`{"a":[1,2,{"b":"c"}]}`)
	o2, err := g.JSON(mc, guard.Call, clean)
	if err != nil || o2.Content != nil || o2.Found() {
		t.Errorf("clean: %+v %v", o2, err)
	}
	// malformed JSON is an error
	for _, bad := range []string{`{"a":`, `{"a" 1}`, `["\x"]`, `{"a":1}x`, strings.Repeat("[", 600) + strings.Repeat("]", 600)} {
		if _, err := g.JSON(mc, guard.Call, []byte(bad)); err == nil {
			t.Errorf("%.20q: no error", bad)
		}
	}
	// restore inside JSON
	r, err := mc.RestoreJSON([]byte(`{"reply":"sent to <EMAIL_1>","n":1}`))
	if err != nil || string(r) != `{"reply":"sent to bob@example.com","n":1}` {
		t.Errorf("restore JSON: %s %v", r, err)
	}
}

// TestStreamSplitEntities feeds every two-way and a three-way split of a
// text full of entities: the released text, concatenated, equals the
// masked whole text, whatever the split.
func TestStreamSplitEntities(t *testing.T) {
	g := compile(t, map[string]string{"action": "mask", "restore": "true"})
	f := newFaker(3)
	text := "Hi, card " + group4(f.card("visa"), " ") + " and mail bob@example.com; iban " + group4(f.iban("DE"), " ") +
		"\npassword: Xk9#mQ2$vL7pR4zz\nAuthorization: Bearer " + "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcDEF123_-x" +
		" call +1 (415) 555-0132 bye <EMAIL_1>"
	want := string(g.Text(NewMaskContext(), guard.Result, []byte(text)).Content)
	for cut := 1; cut < len(text); cut++ {
		for _, cut2 := range []int{cut, (cut + len(text)) / 2} {
			mc := NewMaskContext()
			s := g.Stream(mc, guard.Result)
			var out strings.Builder
			out.Write(s.Write([]byte(text[:cut])))
			out.Write(s.Write([]byte(text[cut:cut2])))
			out.Write(s.Write([]byte(text[cut2:])))
			out.Write(s.Flush())
			if out.String() != want {
				t.Fatalf("split at %d,%d:\n got %q\nwant %q", cut, cut2, out.String(), want)
			}
		}
	}
}

// TestStreamRestoresSplitPlaceholder: a placeholder of the call that the
// answer's stream splits across chunks is restored, wherever the cut.
func TestStreamRestoresSplitPlaceholder(t *testing.T) {
	g := compile(t, map[string]string{"entities": "EMAIL", "action": "mask", "restore": "true"})
	mc := NewMaskContext()
	if got := string(g.Text(mc, guard.Call, []byte("mail bob@example.com")).Content); got != "mail <EMAIL_1>" {
		t.Fatalf("call masked to %q", got)
	}
	text := "sent to <EMAIL_1>, done <EMAIL_9> <EMAIL_1>"
	want := "sent to bob@example.com, done <EMAIL_9> bob@example.com"
	for cut := 1; cut < len(text); cut++ {
		s := g.Stream(mc, guard.Result)
		got := string(s.Write([]byte(text[:cut]))) + string(s.Write([]byte(text[cut:]))) + string(s.Flush())
		if got != want {
			t.Fatalf("split at %d: got %q, want %q", cut, got, want)
		}
	}
}

// TestStreamReleasesEarly: text before a space is released without
// waiting for the end of the stream.
func TestStreamReleasesEarly(t *testing.T) {
	g := compile(t, map[string]string{"action": "mask"})
	s := g.Stream(NewMaskContext(), guard.Result)
	if got := string(s.Write([]byte("Hello there, how"))); got != "Hello there, " {
		t.Errorf("released %q", got)
	}
	if got := string(s.Write([]byte(" are you? My card is 4111"))); got != "how are you? My card is " {
		t.Errorf("released %q", got)
	}
	if got := string(s.Write([]byte(" 1111 1111 1111 thanks"))); got != "<CREDIT_CARD_1> " {
		t.Errorf("released %q", got)
	}
	if got := string(s.Flush()); got != "thanks" {
		t.Errorf("flushed %q", got)
	}
	if s.Pending() != 0 || len(s.Findings()) != 1 || s.Findings()[0].Start != len("Hello there, how are you? My card is ") {
		t.Errorf("findings %+v", s.Findings())
	}
	// a long run without spaces is released in bounded pieces
	s2 := g.Stream(NewMaskContext(), guard.Result)
	total := 0
	for range 10 {
		total += len(s2.Write([]byte(strings.Repeat("x", 1000))))
	}
	if s2.Pending() > MaxHold || total+s2.Pending() != 10000 {
		t.Errorf("pending %d released %d", s2.Pending(), total)
	}
}

// TestMaskContextConcurrent: parallel tool results of one request share a
// context; every value keeps one placeholder (run with -race).
func TestMaskContextConcurrent(t *testing.T) {
	g := compile(t, map[string]string{"entities": "EMAIL", "restore": "true"})
	mc := NewMaskContext()
	done := make(chan string, 8)
	for i := range 8 {
		go func() {
			o := g.Text(mc, guard.Call, []byte(fmt.Sprintf("a%d@example.com and shared@example.com", i%4)))
			done <- string(o.Content)
		}()
	}
	seen := map[string]bool{}
	for range 8 {
		out := <-done
		_, shared, _ := strings.Cut(out, " and ")
		seen[shared] = true
	}
	if len(seen) != 1 || mc.Len() != 5 {
		t.Errorf("shared value got %d placeholders; %d values", len(seen), mc.Len())
	}
	if got := string(g.RestoreText(mc, []byte("x <EMAIL_1> <EMAIL_5>"))); strings.Contains(got, "<EMAIL_") {
		t.Errorf("restore: %q", got)
	}
}

// TestStreamHoldsOnlyWhereAnEntityCanStart: a chunk that ends in a byte no
// built-in entity is made of is released whole at once; a partial word
// is held (it could be an e-mail's local part), and so are a key and its
// value, and a URL; with custom entities the whole last word is held.
func TestStreamHoldsOnlyWhereAnEntityCanStart(t *testing.T) {
	g, _ := Compile(nil)
	cu, _ := Compile(map[string]string{"custom": "CODE=X-[0-9]+!"})
	for _, tc := range []struct {
		g     *Guard
		chunk string
		held  int
	}{
		{g, "Hello!", 0},
		{g, "Sure, here it is:", 3},
		{g, "Hello", 5},
		{g, "Done; next", 4},
		{g, "contact bob.", 4},
		{g, "(see", 4},
		{g, "«quoted»", 0},
		{g, "password: x!y", 13},
		{g, `"api_key"`, 9},
		{g, "go to https://ex!ample", 16},
		{cu, "Hello!", 6},
	} {
		s := tc.g.Stream(NewMaskContext(), guard.Result)
		out := s.Write([]byte(tc.chunk))
		if s.Pending() != tc.held || len(out)+s.Pending() != len(tc.chunk) {
			t.Errorf("%q: released %q, held %d, want %d held", tc.chunk, out, s.Pending(), tc.held)
		}
	}
}
