package sse

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// benchStream is an OpenAI chat stream: 64 content chunks, the usage
// chunk and [DONE].
func benchStream() []byte {
	var b bytes.Buffer
	for i := range 64 {
		fmt.Fprintf(&b, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token %d of the answer \"},\"finish_reason\":null}]}\n\n", i)
	}
	b.WriteString("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4.1\",\"choices\":[],\"usage\":{\"prompt_tokens\":250,\"completion_tokens\":64,\"total_tokens\":314}}\n\ndata: [DONE]\n\n")
	return b.Bytes()
}

// BenchmarkReader reads a 66-event stream (b.SetBytes: its size).
func BenchmarkReader(b *testing.B) {
	stream := benchStream()
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(bytes.NewReader(stream), 1<<20)
		for {
			if err := r.NextContent(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
		r.Release()
	}
}
