package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/segmentio/encoding/json"

	"github.com/mandatehq/mandate/catalog/strictjson"
	"github.com/mandatehq/mandate/enforce/api"
)

// BenchmarkDecodeAuthorize: the cost of the strict decoder (one linear
// pre-scan, then segmentio) against segmentio alone, the API's decoder
// before, on a single check and a batch of 100, in the same run.
//
//	go test -run '^$' -bench BenchmarkDecodeAuthorize -count 3 ./enforce/api
func BenchmarkDecodeAuthorize(b *testing.B) {
	check := `{"subject":"alice@example.com","actor":"coding-agent","privilege":"USE_CONNECTION",` +
		`"securable":{"type":"CONNECTION","name":"my_github_mcp"},"context":{"method":"tools/call","tool":"search_repos",` +
		`"arguments":{"query":"mandate","limit":10,"filters":{"lang":["go","rust"]}}},"at_least_revision":17}`
	var batch []string
	for i := range 100 {
		batch = append(batch, strings.Replace(check, `"limit":10`, fmt.Sprintf(`"limit":%d`, i), 1))
	}
	bodies := map[string][]byte{"single": []byte(check), "batch100": []byte(`{"checks":[` + strings.Join(batch, ",") + `]}`)}
	for _, name := range []string{"single", "batch100"} {
		body := bodies[name]
		b.Run(name+"/segmentio", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var req api.AuthorizeRequest
				if _, err := json.Parse(body, &req, json.DisallowUnknownFields); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/prescan", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := strictjson.Valid(body, strictjson.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/strictjson", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var req api.AuthorizeRequest
				if err := strictjson.Unmarshal(body, &req, strictjson.Options{DisallowUnknownFields: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
