package sensitive

import (
	"testing"

	"github.com/mandatehq/mandate/gateway/guard"
)

// FuzzFind: no panic; findings in range, sorted, not overlapping; JSON
// masking keeps valid JSON valid; a stream releases the masked whole.
func FuzzFind(f *testing.F) {
	for _, s := range []string{
		"mail bob@example.com card 4111 1111 1111 1111", "Authorization: Bearer ", "password=", "-----BEGIN PRIVATE KEY-----\nabc",
		"https://u:p@h.example/x?key=AIzaSyA1234567890abcdefghijklmnopqrstu", "fe80::1 00:1a:2b:3c:4d:5e", "+1 (", "DE89 3704",
		`{"password":"Xk9#mQ2$vL7pR4zz","a":[4111111111111111]}`, "eyJhbGciOiJIUzI1NiJ9.eyJ", "0x", "bc1q", "ghp_", "sk-ant-", "xoxb-1-",
	} {
		f.Add(s)
	}
	d := allDetector(f)
	g, _ := Compile(map[string]string{"action": "mask"})
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		fs := d.Find(nil, b)
		end := 0
		for _, x := range fs {
			if x.Start < end || x.End <= x.Start || x.End > len(b) {
				t.Fatalf("bad finding %+v after %d in %q", x, end, s)
			}
			end = x.End
		}
		if _, out, err := d.walkJSON(nil, b, NewMaskContext(), guard.Call); err == nil && out != nil {
			if _, _, err := d.walkJSON(nil, out, nil, 0); err != nil {
				t.Fatalf("masked JSON invalid: %v\n%q", err, out)
			}
		}
		want := g.Text(NewMaskContext(), guard.Result, b).Content
		if want == nil {
			want = b
		}
		st := g.Stream(NewMaskContext(), guard.Result)
		var got []byte
		for i := 0; i < len(b); i += 3 {
			got = append(got, st.Write(b[i:min(i+3, len(b))])...)
		}
		got = append(got, st.Flush()...)
		if string(got) != string(want) {
			t.Fatalf("stream %q\nwhole  %q", got, want)
		}
	})
}
