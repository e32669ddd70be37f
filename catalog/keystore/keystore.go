package keystore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/mandatehq/mandate/catalog/privfile"
)

var (
	// ErrNotFound: no blob has that name.
	ErrNotFound = errors.New("keystore: not found")
	// ErrConflict: CompareAndSwap's expected version is no longer the
	// stored one (another writer was first).
	ErrConflict = errors.New("keystore: the blob was changed by another writer")
	// ErrWrongKey: a sealed blob does not open with this master key.
	ErrWrongKey = errors.New("MANDATE_MASTER_KEY differs from the one that sealed it, or the store was tampered with")
)

// MaxBlob bounds one blob (keys and tokens are a few KiB).
const MaxBlob = 1 << 20

// Blob is a stored value and its version (never 0 for a stored blob).
type Blob struct {
	Name    string
	Data    []byte
	Version int64
}

// Store keeps named blobs (see the package documentation). Implementations
// are safe for concurrent use.
type Store interface {
	Get(ctx context.Context, name string) (Blob, error)
	// Create stores data under name unless a blob is there, and returns
	// the stored blob (data, or what was there first).
	Create(ctx context.Context, name string, data []byte) (Blob, error)
	// CompareAndSwap replaces name's blob if its version is version (0:
	// create it if absent) and returns the new blob, else ErrConflict.
	CompareAndSwap(ctx context.Context, name string, version int64, data []byte) (Blob, error)
	Delete(ctx context.Context, name string) error
	// List returns the blobs whose names start with prefix, by name.
	List(ctx context.Context, prefix string) ([]Blob, error)
	// Lock takes the exclusive lock of name (it need not exist) for every
	// process sharing the store, waiting while another holds it (up to
	// ctx). unlock releases it.
	Lock(ctx context.Context, name string) (unlock func(), err error)
}

// GetOrCreate returns the blob stored under name, generating and storing
// one with gen when there is none. Concurrent callers (processes sharing
// s) all get the one blob that was stored first.
func GetOrCreate(ctx context.Context, s Store, name string, gen func() ([]byte, error)) (Blob, error) {
	b, err := s.Get(ctx, name)
	if !errors.Is(err, ErrNotFound) {
		return b, err
	}
	data, err := gen()
	if err != nil {
		return Blob{}, err
	}
	return s.Create(ctx, name, data)
}

// CheckName refuses names a store cannot hold: empty, longer than 512
// bytes, or with control characters.
func CheckName(name string) error {
	if name == "" || len(name) > 512 {
		return fmt.Errorf("keystore: a name must have 1 to 512 bytes")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("keystore: name %q has a control character", name)
		}
	}
	return nil
}

func checkBlob(name string, data []byte) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if len(data) > MaxBlob {
		return fmt.Errorf("keystore: %s: a blob is at most %d bytes", name, MaxBlob)
	}
	return nil
}

// --- the data directory ---

type dirStore struct {
	dir string
	mu  sync.Mutex // serializes writes and CompareAndSwap
	// locks are the per-name locks (one process owns the directory).
	lmu   sync.Mutex
	locks map[string]chan struct{}
}

// Dir returns the Store of a data directory: the blob named n is the file
// dir/n (mode 0600). Names are file names: no path separator, not "." or
// "..". The directory is created (0700) at the first write.
func Dir(dir string) Store {
	return &dirStore{dir: dir, locks: map[string]chan struct{}{}}
}

func (d *dirStore) path(name string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." || strings.HasPrefix(name, ".tmp") {
		return "", fmt.Errorf("keystore: %q is not a file name", name)
	}
	return filepath.Join(d.dir, name), nil
}

// version derives a non-zero version from the content.
func version(data []byte) int64 {
	sum := sha256.Sum256(data)
	v := int64(binary.BigEndian.Uint64(sum[:8]) >> 1)
	if v == 0 {
		v = 1
	}
	return v
}

func (d *dirStore) read(name string) (Blob, error) {
	p, err := d.path(name)
	if err != nil {
		return Blob{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return Blob{}, ErrNotFound
	}
	if err != nil {
		return Blob{}, fmt.Errorf("keystore: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Blob{}, fmt.Errorf("keystore: %w", err)
	}
	if fi.Size() > MaxBlob {
		return Blob{}, fmt.Errorf("keystore: %s is larger than %d bytes", p, MaxBlob)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && fi.Size() > 0 {
		return Blob{}, fmt.Errorf("keystore: %w", err)
	}
	return Blob{Name: name, Data: data, Version: version(data)}, nil
}

func (d *dirStore) Get(_ context.Context, name string) (Blob, error) { return d.read(name) }

func (d *dirStore) Create(_ context.Context, name string, data []byte) (Blob, error) {
	if err := checkBlob(name, data); err != nil {
		return Blob{}, err
	}
	p, _ := d.path(name)
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return Blob{}, fmt.Errorf("keystore: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := privfile.Create(p, data); err != nil && !errors.Is(err, os.ErrExist) {
		return Blob{}, fmt.Errorf("keystore: %w", err)
	}
	return d.read(name)
}

func (d *dirStore) CompareAndSwap(_ context.Context, name string, ver int64, data []byte) (Blob, error) {
	if err := checkBlob(name, data); err != nil {
		return Blob{}, err
	}
	p, _ := d.path(name)
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return Blob{}, fmt.Errorf("keystore: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.read(name)
	switch {
	case errors.Is(err, ErrNotFound):
		if ver != 0 {
			return Blob{}, ErrConflict
		}
	case err != nil:
		return Blob{}, err
	case cur.Version != ver:
		return Blob{}, ErrConflict
	}
	if err := privfile.Write(p, data); err != nil {
		return Blob{}, fmt.Errorf("keystore: %w", err)
	}
	return Blob{Name: name, Data: append([]byte(nil), data...), Version: version(data)}, nil
}

func (d *dirStore) Delete(_ context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("keystore: %w", err)
	}
	return nil
}

func (d *dirStore) List(_ context.Context, prefix string) ([]Blob, error) {
	ents, err := os.ReadDir(d.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	var out []Blob
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, prefix) || strings.HasPrefix(n, ".tmp") {
			continue
		}
		b, err := d.read(n)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (d *dirStore) Lock(ctx context.Context, name string) (func(), error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	for {
		d.lmu.Lock()
		ch, held := d.locks[name]
		if !held {
			mine := make(chan struct{})
			d.locks[name] = mine
			d.lmu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					d.lmu.Lock()
					delete(d.locks, name)
					d.lmu.Unlock()
					close(mine)
				})
			}, nil
		}
		d.lmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// --- sealing ---

// Sealer encrypts and decrypts with additional data (catalog.Keyring).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

type sealed struct {
	inner Store
	k     Sealer
}

// Sealed returns a Store that seals every blob with k (the name as
// additional data) before inner sees it, and opens it on the way back.
func Sealed(inner Store, k Sealer) Store { return &sealed{inner: inner, k: k} }

func aad(name string) []byte { return []byte("mandate/keystore/" + name) }

func (s *sealed) open(b Blob, err error) (Blob, error) {
	if err != nil {
		return b, err
	}
	pt, err := s.k.Open(b.Data, aad(b.Name))
	if err != nil {
		return Blob{}, fmt.Errorf("keystore: %s does not decrypt with this master key (%w)", b.Name, ErrWrongKey)
	}
	b.Data = pt
	return b, nil
}

func (s *sealed) seal(name string, data []byte) ([]byte, error) {
	if err := checkBlob(name, data); err != nil {
		return nil, err
	}
	return s.k.Seal(data, aad(name))
}

func (s *sealed) Get(ctx context.Context, name string) (Blob, error) {
	return s.open(s.inner.Get(ctx, name))
}

func (s *sealed) Create(ctx context.Context, name string, data []byte) (Blob, error) {
	ct, err := s.seal(name, data)
	if err != nil {
		return Blob{}, err
	}
	return s.open(s.inner.Create(ctx, name, ct))
}

func (s *sealed) CompareAndSwap(ctx context.Context, name string, ver int64, data []byte) (Blob, error) {
	ct, err := s.seal(name, data)
	if err != nil {
		return Blob{}, err
	}
	b, err := s.inner.CompareAndSwap(ctx, name, ver, ct)
	if err != nil {
		return b, err
	}
	b.Data = append([]byte(nil), data...)
	return b, nil
}

func (s *sealed) Delete(ctx context.Context, name string) error { return s.inner.Delete(ctx, name) }

func (s *sealed) List(ctx context.Context, prefix string) ([]Blob, error) {
	bs, err := s.inner.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for i := range bs {
		if bs[i], err = s.open(bs[i], nil); err != nil {
			return nil, err
		}
	}
	return bs, nil
}

func (s *sealed) Lock(ctx context.Context, name string) (func(), error) {
	return s.inner.Lock(ctx, name)
}
