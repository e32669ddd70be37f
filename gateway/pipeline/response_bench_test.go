package pipeline

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkResponseWrite: what the write deadline adds to each event of a
// stream (a 70-byte write and a flush on a real HTTP/1.1 connection), with
// no deadline (timeout 0, the writer before Config.WriteTimeout) and with
// DefaultWriteTimeout.
//
//	go test -run '^$' -bench ResponseWrite -benchtime 200000x ./gateway/pipeline/
func BenchmarkResponseWrite(b *testing.B) {
	ev := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"a token\"}}],\"x\":\"0123456789\"}\n\n")
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{{"no-deadline", 0}, {"deadline", DefaultWriteTimeout}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rw := newResponse(w, tc.timeout)
				rw.WriteHeader(http.StatusOK)
				b.ResetTimer()
				for range b.N {
					if _, err := rw.Write(ev); err != nil {
						b.Error(err)
						return
					}
					if err := rw.FlushError(); err != nil {
						b.Error(err)
						return
					}
				}
				b.StopTimer()
			}))
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
}
