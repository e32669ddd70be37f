package catalog

import "slices"

// cowTable is an array indexed by ID in pages of cowPage entries, copied
// on write per epoch: freeze copies the slice of pages (one pointer per
// cowPage entries) and shares the pages; the Model copies a page before it
// changes one of an older epoch than its own (a Snapshot may share it). A
// revision therefore costs a Snapshot len/cowPage pointers and a copy of
// each page it changed, not a copy of every principal's and securable's
// pointer.
type cowTable[T any] struct {
	pages []*cowPageOf[T]
	n     int // the length: entries 0..n-1
}

// cowPage is the number of entries of a page of a cowTable.
const (
	cowPageBits = 8
	cowPage     = 1 << cowPageBits
)

type cowPageOf[T any] struct {
	epoch uint64
	v     [cowPage]T
}

// len is the table's length.
func (t *cowTable[T]) len() int { return t.n }

// at returns entry i (0 <= i < len).
func (t *cowTable[T]) at(i int) T { return t.pages[i>>cowPageBits].v[i&(cowPage-1)] }

// set stores v at i in epoch, growing the table to i+1 entries if needed.
func (t *cowTable[T]) set(i int, v T, epoch uint64) {
	for i>>cowPageBits >= len(t.pages) {
		t.pages = append(t.pages, &cowPageOf[T]{epoch: epoch})
	}
	p := t.pages[i>>cowPageBits]
	if p.epoch != epoch {
		cp := *p
		cp.epoch = epoch
		p = &cp
		t.pages[i>>cowPageBits] = p
	}
	p.v[i&(cowPage-1)] = v
	t.n = max(t.n, i+1)
}

// grow extends the table to n entries (zero values).
func (t *cowTable[T]) grow(n int, epoch uint64) {
	if n <= t.n {
		return
	}
	for (n-1)>>cowPageBits >= len(t.pages) {
		t.pages = append(t.pages, &cowPageOf[T]{epoch: epoch})
	}
	t.n = n
}

// appendv stores v at len.
func (t *cowTable[T]) appendv(v T, epoch uint64) { t.set(t.n, v, epoch) }

// freeze returns a table that shares t's pages; t's owner must start a
// new epoch before it changes t again.
func (t *cowTable[T]) freeze() cowTable[T] {
	return cowTable[T]{pages: slices.Clone(t.pages), n: t.n}
}

// all yields the entries in order.
func (t *cowTable[T]) all(yield func(int, T) bool) {
	for k, p := range t.pages {
		for j := range p.v {
			i := k<<cowPageBits | j
			if i >= t.n || !yield(i, p.v[j]) {
				return
			}
		}
	}
}
