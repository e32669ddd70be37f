// Package wal holds what Mandate's two log files share: the framing of a
// record, reading a log back with its torn tail cut off, and the binary
// encoding of audit events. catalog/walstore (the catalog's change
// records) and catalog/auditwal (the event stream's log in front of
// DuckDB) use it.
//
// A record is framed as
//
//	[length u32][CRC-32C of seq+body u32][seq u64][body]
//
// (little endian). The first byte of the body says what it holds: a
// binary audit body (AuditMagic, AuditMagic2, AuditMagic3, see audit.go), or a format
// of the log that wrote it.
package wal

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/mandatehq/mandate/catalog"
)

// HeaderSize is the size of a record's header.
const HeaderSize = 16

// MaxRecord bounds one record's body (a corrupt length must not allocate
// gigabytes).
const MaxRecord = 1 << 30

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Seal fills in the header of buf, whose first HeaderSize bytes are
// reserved for it and the rest is the body.
func Seal(buf []byte, seq int64) error {
	body := buf[HeaderSize:]
	if len(body) > MaxRecord {
		return catalog.Errorf(catalog.CodeInvalidArgument, "log record of %d bytes is larger than the limit of %d", len(body), MaxRecord)
	}
	binary.LittleEndian.PutUint32(buf[:4], uint32(len(body)))
	binary.LittleEndian.PutUint64(buf[8:], uint64(seq))
	binary.LittleEndian.PutUint32(buf[4:8], crc32.Update(crc32.Checksum(buf[8:HeaderSize], crcTable), crcTable, body))
	return nil
}

// Record is one record read back.
type Record struct {
	Seq    int64
	Body   []byte // nil when skipped (see Read)
	Offset int64  // of its header in the file
	Size   int64  // header and body
}

// Read reads every intact record of f from the start and returns them
// and the offset after the last one. The bodies of records with a
// sequence number up to skipThrough are not kept. A bad record is a torn
// tail (a crash during an append that was never acknowledged) only if it
// is the last thing in the file but zeros (space a writer preallocated,
// catalog/auditwal; a record is never all zeros): the caller cuts the
// file at the offset returned. Anything else after a bad record means
// corruption, which must not silently drop acknowledged data:
// CodeIncompatibleData.
func Read(f *os.File, skipThrough int64) ([]Record, int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, catalog.Internal(err, "reading "+f.Name())
	}
	st, err := f.Stat()
	if err != nil {
		return nil, 0, catalog.Internal(err, "reading "+f.Name())
	}
	size := st.Size()
	br := bufio.NewReaderSize(f, 1<<20)
	var (
		recs []Record
		off  int64
		hdr  [HeaderSize]byte
	)
	torn := func(end int64) ([]Record, int64, error) {
		if end < size {
			if zero, err := Zero(f, end, size); err != nil || zero {
				return recs, off, err
			}
			return nil, 0, &catalog.Error{Code: catalog.CodeIncompatibleData,
				Msg: fmt.Sprintf("log %s is corrupt at offset %d (%d bytes follow); refusing to start", f.Name(), off, size-off)}
		}
		return recs, off, nil
	}
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return recs, off, nil // EOF or a torn header at the end
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		if n > MaxRecord {
			return torn(off + HeaderSize)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return recs, off, nil
		}
		end := off + HeaderSize + int64(n)
		c := crc32.Update(crc32.Checksum(hdr[8:], crcTable), crcTable, body)
		if c != binary.LittleEndian.Uint32(hdr[4:8]) {
			return torn(end)
		}
		r := Record{Seq: int64(binary.LittleEndian.Uint64(hdr[8:])), Offset: off, Size: end - off}
		if r.Seq > skipThrough {
			r.Body = body
		}
		recs = append(recs, r)
		off = end
	}
}

// Zero reports whether f holds only zero bytes from from to to.
func Zero(f *os.File, from, to int64) (bool, error) {
	buf := make([]byte, min(to-from, 1<<16))
	for from < to {
		n, err := f.ReadAt(buf[:min(to-from, int64(len(buf)))], from)
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		from += int64(n)
		if err != nil {
			if err == io.EOF {
				return true, nil
			}
			return false, catalog.Internal(err, "reading "+f.Name())
		}
	}
	return true, nil
}

// ReadAt reads the body of the record at off (of size bytes) and checks it.
func ReadAt(f *os.File, off, size int64) ([]byte, error) {
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, catalog.Internal(err, "reading "+f.Name())
	}
	n := binary.LittleEndian.Uint32(buf[:4])
	if int64(n)+HeaderSize != size ||
		crc32.Update(crc32.Checksum(buf[8:HeaderSize], crcTable), crcTable, buf[HeaderSize:]) != binary.LittleEndian.Uint32(buf[4:8]) {
		return nil, &catalog.Error{Code: catalog.CodeIncompatibleData, Msg: fmt.Sprintf("log %s: record at offset %d is corrupt", f.Name(), off)}
	}
	return buf[HeaderSize:], nil
}

// SyncDir fsyncs a directory (a new or renamed file's name survives a
// crash).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
