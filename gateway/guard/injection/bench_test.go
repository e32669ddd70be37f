package injection

import (
	"strings"
	"testing"
)

func benchText() []byte {
	var sb strings.Builder
	sb.WriteString("Issue #4471 Checkout page times out (opened by carol@example.org)\n")
	for sb.Len() < 4096 {
		sb.WriteString("Steps: add three items to the cart, click checkout; the payment page spins. Logs show upstream timeouts from the payments service after 30 s. ")
		sb.WriteString("See https://wiki.corp.example/runbooks/payments for the runbook. Assigned to bo@example.com. ")
	}
	return []byte(sb.String()[:4096])
}

func BenchmarkScore4KB(b *testing.B) {
	text := benchText()
	s := NewScorer()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		s.Score(text)
	}
}

func BenchmarkNormalize4KB(b *testing.B) {
	text := benchText()
	var n normalized
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		n.normalize(text)
	}
}

func BenchmarkMarkers4KB(b *testing.B) {
	text := benchText()
	b.SetBytes(int64(len(text)))
	var sigs []Signal
	for b.Loop() {
		sigs = charSignals(sigs[:0], text)
		hiddenRegions(text)
	}
}
