package auditwal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directBlock is the unit of the log's direct writes: the filesystem's
// block, a multiple of every disk's logical block.
const directBlock = 4096

// directWriter appends to the log with O_DIRECT, in whole blocks: the
// last partial block is kept in memory and written again, with the new
// record after it, by the next append. A durable append is one pwritev2
// with RWF_DSYNC: the data goes to the disk and one cache flush makes it
// durable, with no page cache to write back first. Measured on the VM of
// BENCHMARKS.md (BenchmarkDurableAppend, ext4 on virtio, no FUA) it was
// the fastest durable append, in p50 and p99, of fdatasync into
// fallocated space, into written zeros and of an O_DSYNC descriptor.
// Records not written durably are on the disk (in its cache) when the
// write returns, so a process crash keeps them, and the next flush (a
// durable append's, an fdatasync's) makes them durable in order.
type directWriter struct {
	f *os.File // O_DIRECT
	// buf is block aligned; buf[:tail] is the log's last partial block
	// as on disk, which starts at end-tail.
	buf  []byte
	tail int
	end  int64
}

// openDirect opens path for direct appends after its first size bytes,
// read through f. It returns nil where the filesystem refuses O_DIRECT
// (the log then writes through the page cache and fdatasyncs).
func openDirect(path string, f *os.File, size int64) (*directWriter, error) {
	df, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	d := &directWriter{f: df, buf: alignedBlocks(2 * directBlock)}
	if err := d.load(f, size); err != nil {
		df.Close()
		return nil, err
	}
	// A first write, of the last block as it is (or of a block of zeros
	// after the end): a filesystem that opens with O_DIRECT but refuses
	// the writes is found here.
	if _, err := d.write(f, size, 0); err != nil {
		df.Close()
		if errors.Is(err, unix.EINVAL) {
			return nil, nil
		}
		return nil, err
	}
	return d, nil
}

// load reads the last partial block before end from f (after the log
// was truncated or an append failed, the kept block may be stale).
func (d *directWriter) load(f *os.File, end int64) error {
	d.tail = int(end % directBlock)
	if _, err := f.ReadAt(d.buf[:d.tail], end-int64(d.tail)); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	d.end = end
	return nil
}

// write writes p at off, the log's end, in whole blocks (zeros after p;
// at least one block), durable when it returns if flags holds RWF_DSYNC,
// and returns the end of the blocks written. f is the log read through
// the page cache, for a kept block that is not at off.
func (d *directWriter) write(f *os.File, off int64, flags int, p ...byte) (int64, error) {
	if off != d.end {
		if err := d.load(f, off); err != nil {
			return 0, err
		}
	}
	end := d.tail + len(p)
	n := max((end+directBlock-1)/directBlock*directBlock, directBlock)
	if n > len(d.buf) {
		nb := alignedBlocks(2 * n)
		copy(nb, d.buf[:d.tail])
		d.buf = nb
	}
	copy(d.buf[d.tail:], p)
	clear(d.buf[end:n])
	start := off - int64(d.tail)
	err := onFD(d.f, func(fd int) error {
		w, err := unix.Pwritev2(fd, [][]byte{d.buf[:n]}, start, flags)
		if err == nil && w != n {
			err = fmt.Errorf("short direct write: %d of %d bytes", w, n)
		}
		return err
	})
	if err != nil {
		d.end = -1 // the kept block is read again
		return 0, err
	}
	full := end / directBlock * directBlock
	d.tail = copy(d.buf, d.buf[full:end])
	d.end = off + int64(len(p))
	return start + int64(n), nil
}

func (d *directWriter) close() error { return d.f.Close() }

// alignedBlocks returns n zero bytes starting on a block boundary.
func alignedBlocks(n int) []byte {
	b := make([]byte, n+directBlock)
	skip := (directBlock - int(uintptr(unsafe.Pointer(&b[0]))%directBlock)) % directBlock
	return b[skip : skip+n]
}
