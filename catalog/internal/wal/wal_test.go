package wal

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mandatehq/mandate/catalog"
)

// TestReadTail: what follows the last intact record decides between a
// torn tail (cut off) and corruption (refused): zeros (preallocated
// space) after a record or a torn one are a tail; anything after a bad
// record but zeros is corruption.
func TestReadTail(t *testing.T) {
	rec := func(seq int64, body string) []byte {
		buf := append(make([]byte, HeaderSize), body...)
		if err := Seal(buf, seq); err != nil {
			t.Fatal(err)
		}
		return buf
	}
	good := append(rec(1, "one"), rec(2, "two")...)
	torn := rec(3, "three, torn")[:HeaderSize+4]
	bad := rec(3, "three")
	bad[HeaderSize] ^= 0xff
	zeros := make([]byte, 4096)
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	tests := []struct {
		name    string
		file    []byte
		records int
		corrupt bool
	}{
		{"records only", good, 2, false},
		{"zeros after the last record", cat(good, zeros), 2, false},
		{"a torn record", cat(good, torn), 2, false},
		{"a torn record in zeros", cat(good, torn, zeros), 2, false},
		{"a bad record, then zeros", cat(good, bad, zeros), 2, false},
		{"a bad record, then a record", cat(good, bad, rec(4, "four")), 0, true},
		{"zeros, then a record", cat(good, zeros, rec(3, "three")), 0, true},
		{"a bad record, zeros, a byte", cat(good, bad, zeros, []byte{1}), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			recs, end, err := Read(f, 0)
			if tt.corrupt {
				if !catalog.IsCode(err, catalog.CodeIncompatibleData) {
					t.Fatalf("Read = %v, want a refusal (corruption)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tt.records || end != int64(len(good)) {
				t.Fatalf("Read: %d records ending at %d, want %d ending at %d", len(recs), end, tt.records, len(good))
			}
		})
	}
}
