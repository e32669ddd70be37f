package sensitive

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time: on a shared machine,
// bytes per CPU-second is the per-core throughput regardless of how much
// of the core other jobs take.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loopCPU runs the benchmark loop and reports MB per CPU-second.
func loopCPU(b *testing.B, size int, body func()) {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	c0 := cpuTime()
	n := 0
	for b.Loop() {
		body()
		n++
	}
	if c := cpuTime() - c0; c > 0 {
		b.ReportMetric(float64(size)*float64(n)/1e6/c.Seconds(), "MB/cpu-s")
	}
}

// baselinePatterns are the built-in entities as plain regular expressions
// (shape only, no checksums): the side-by-side baseline "the same
// patterns as one Go regexp alternation".
var baselinePatterns = []string{
	`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`,                        // EMAIL
	`\b(?:\d[ -]?){12,18}\d\b`,                                              // CREDIT_CARD
	`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b`,           // IBAN
	`\b\d{3}[- ]\d{2}[- ]\d{4}\b`,                                           // US_SSN
	`\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b`, // IPv4
	`\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b|\b(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}\b`, // IPv6
	`\b[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}\b`,                                      // MAC
	`(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}\b`,                          // PHONE
	`\b[13][a-km-zA-HJ-NP-Z1-9]{25,34}\b|\bbc1[a-z0-9]{39,59}\b|\b0x[a-fA-F0-9]{40}\b`, // CRYPTO
	`https?://[^\s<>"']+|www\.[^\s<>"']+`,                                              // URL
	`\b(?:AKIA|ASIA)[A-Z2-7]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36}\b|\bgithub_pat_\w{82}\b|\bglpat-[\w-]{20,}|\bxox[bpares]-[\w-]{10,}|\b[sr]k_live_[A-Za-z0-9]{24,}|\bsk-(?:proj-|ant-)?[\w-]{32,}|\bAIza[\w-]{35}|\beyJ[\w-]+\.eyJ[\w-]+\.[\w-]*|-----BEGIN [A-Z ]*PRIVATE KEY-----|(?i:password|passwd|pwd|secret|token|api_?key)\s*[:=]\s*["']?[^\s"']{8,}`, // SECRET
}

func baselineRegexp() *regexp.Regexp {
	return regexp.MustCompile(`(?:` + strings.Join(baselinePatterns, `)|(?:`) + `)`)
}

var benchProse = []string{
	"The quarterly review covers the migration of the billing service to the new cluster, which finished two weeks ahead of schedule.",
	"Please make sure the release notes mention the change to the retry policy; several customers asked about it in the last sprint.",
	"We measured the latency of the search endpoint under load and found that the cache hit ratio dropped after the deploy on Tuesday.",
	"The design document proposes splitting the monolith along the order, inventory and payment boundaries, with events in between.",
	"In the meantime the on-call engineer rolled back version 2.14.3 to 2.14.1 and opened ticket OPS-4471 to track the regression.",
	"Our onboarding guide explains how to request access to the staging environment and which team owns each dashboard.",
}

var benchCode = []string{
	"func (s *Server) handle(ctx context.Context, req *Request) (*Response, error) {\n\tif err := s.validate(req); err != nil {\n\t\treturn nil, fmt.Errorf(\"validate: %w\", err)\n\t}\n\treturn s.next.Handle(ctx, req)\n}\n",
	"for i := 0; i < len(items); i++ {\n\ttotal += items[i].Price * float64(items[i].Quantity)\n}\n",
	"const config = { retries: 3, timeoutMs: 2500, region: 'eu-west-1', bucket: 'reports-archive' };\n",
	"SELECT o.id, o.created_at, sum(l.amount) FROM orders o JOIN lines l ON l.order_id = o.id WHERE o.status = 'open' GROUP BY 1, 2;\n",
}

var benchLog = []string{
	"2024-03-18T09:12:44.117Z INFO  request completed method=GET path=/api/v2/orders status=200 duration_ms=42 trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n",
	"2024-03-18T09:12:45.902Z WARN  slow query table=invoices rows=18234 elapsed=1.82s build=8c1f2e7\n",
	`{"ts":"2024-03-18T09:12:46Z","level":"info","msg":"job finished","job":"nightly-export","records":48211,"bytes":91827364,"version":"3.9.0"}` + "\n",
}

// benchCorpus returns about size bytes of mixed prose, code, logs and JSON
// with an entity every ~16 KB (few hits).
func benchCorpus(size int) []byte {
	r := rand.New(rand.NewPCG(7, 7))
	f := newFaker(7)
	var sb strings.Builder
	next := 16 << 10
	for sb.Len() < size {
		switch r.IntN(3) {
		case 0:
			sb.WriteString(benchProse[r.IntN(len(benchProse))])
			sb.WriteString(" ")
		case 1:
			sb.WriteString(benchCode[r.IntN(len(benchCode))])
		default:
			sb.WriteString(benchLog[r.IntN(len(benchLog))])
		}
		if sb.Len() > next {
			next += 16 << 10
			switch r.IntN(4) {
			case 0:
				fmt.Fprintf(&sb, " contact: jane.doe%d@example.com ", r.IntN(100))
			case 1:
				fmt.Fprintf(&sb, " card %s ", f.card("visa"))
			case 2:
				fmt.Fprintf(&sb, " client_ip=10.%d.%d.%d ", r.IntN(255), r.IntN(255), r.IntN(255))
			default:
				fmt.Fprintf(&sb, " see https://wiki.example.com/page/%d ", r.IntN(1000))
			}
		}
	}
	return []byte(sb.String())
}

func BenchmarkDetect(b *testing.B) {
	corpus := benchCorpus(1 << 20)
	d := allDetector(b)
	re := baselineRegexp()
	b.Run("detector", func(b *testing.B) {
		buf := make([]Finding, 0, 256)
		hits := 0
		loopCPU(b, len(corpus), func() { hits = len(d.Find(buf[:0], corpus)) })
		b.ReportMetric(float64(hits), "hits")
	})
	b.Run("regexp-baseline", func(b *testing.B) {
		hits := 0
		loopCPU(b, len(corpus), func() { hits = len(re.FindAllIndex(corpus, -1)) })
		b.ReportMetric(float64(hits), "hits")
	})
	// the fairer practical baseline: one compiled regexp per entity type
	var res []*regexp.Regexp
	for _, p := range baselinePatterns {
		res = append(res, regexp.MustCompile(p))
	}
	b.Run("regexp-per-entity", func(b *testing.B) {
		hits := 0
		loopCPU(b, len(corpus), func() {
			hits = 0
			for _, r := range res {
				hits += len(r.FindAllIndex(corpus, -1))
			}
		})
		b.ReportMetric(float64(hits), "hits")
	})
	// no hits at all: the zero-allocation path
	clean := []byte(strings.Repeat(benchProse[0]+" "+benchCode[0]+benchLog[0], 1<<20/(len(benchProse[0])+len(benchCode[0])+len(benchLog[0]))))
	b.Run("detector-nohit", func(b *testing.B) {
		loopCPU(b, len(clean), func() {
			if n := len(d.Find(nil, clean)); n != 0 {
				b.Fatalf("%d hits", n)
			}
		})
	})
}

// BenchmarkStream is the added time per SSE text delta on a masked
// stream (what time to first token and inter-token latency pay), and how
// many bytes a stream holds back on average.
func BenchmarkStream(b *testing.B) {
	g, err := Compile(map[string]string{"action": "mask"})
	if err != nil {
		b.Fatal(err)
	}
	f := newFaker(9)
	var sb strings.Builder
	for sb.Len() < 4096 {
		sb.WriteString("The refund for your order was sent to the card you used, and a confirmation went to the address on file. ")
		if sb.Len()%5 == 0 {
			fmt.Fprintf(&sb, "Card %s, mail jane.doe@example.com. ", group4(f.card("visa"), " "))
		}
	}
	text := []byte(sb.String())
	const chunk = 16 // a typical text delta is a token or two
	b.ReportAllocs()
	var d []time.Duration
	held, writes := 0, 0
	for b.Loop() {
		s := g.Stream(NewMaskContext(), 2)
		for i := 0; i < len(text); i += chunk {
			t0 := time.Now()
			s.Write(text[i:min(i+chunk, len(text))])
			d = append(d, time.Since(t0))
			held += s.Pending()
			writes++
		}
		s.Flush()
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns/delta")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns/delta")
	b.ReportMetric(float64(held)/float64(writes), "held-bytes")
}
