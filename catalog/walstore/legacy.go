package walstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/internal/wal"
)

// Data directories written before the catalog moved to change records and
// a snapshot kept the catalog in DuckDB tables, with catalog.wal in front
// of them: a write-ahead log of transactions (catalog rows, audit events
// and the store's bookkeeping row) applied to DuckDB in the background.
// What a crash left in it is read back here once, by the upgrade
// (catalog/embedded); nothing writes that format any more.

// LegacyRecord is one record of such a log.
type LegacyRecord struct {
	Seq   int64
	Ops   []catalog.ChangeOp // catalog rows, in order
	Audit []catalog.AuditEvent
	Meta  *catalog.Meta // the bookkeeping row after the record, if it set one
}

// legacyRecord and legacyOp are the JSON form of that log's records.
type legacyRecord struct {
	Ops  []legacyOp    `json:"ops"`
	Meta *catalog.Meta `json:"meta,omitempty"`
}

type legacyOp struct {
	catalog.ChangeOp
	A  []catalog.AuditEvent `json:"a,omitempty"`
	MT *catalog.Meta        `json:"mt,omitempty"`
}

// ReadLegacy reads the records of dir/catalog.wal if it was written in the
// older format (legacy is false, and nothing is returned, for a log of the
// current format or none). The records up to skipThrough were applied to
// the tables already and are not returned.
func ReadLegacy(dir string, skipThrough int64) (recs []LegacyRecord, legacy bool, err error) {
	f, err := os.Open(filepath.Join(dir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, catalog.Internal(err, "reading the catalog log")
	}
	defer f.Close()
	// Every body is read: the format is told by the first record's, and
	// the sequence numbers of the current format are not those of the old.
	raw, _, err := wal.Read(f, -1)
	if err != nil {
		return nil, false, err
	}
	if len(raw) == 0 || len(raw[0].Body) > 0 && raw[0].Body[0] == changesMagic {
		return nil, false, nil
	}
	for _, r := range raw {
		if r.Seq <= skipThrough { // applied already
			continue
		}
		lr := LegacyRecord{Seq: r.Seq}
		switch {
		case wal.IsAudit(r.Body):
			if lr.Audit, err = wal.DecodeAudit(r.Body); err != nil {
				return nil, true, catalog.Internal(err, fmt.Sprintf("catalog log record at offset %d is unreadable", r.Offset))
			}
		case len(r.Body) > 0 && r.Body[0] == '{':
			var jr legacyRecord
			if err := json.Unmarshal(r.Body, &jr); err != nil {
				return nil, true, catalog.Internal(err, fmt.Sprintf("catalog log record at offset %d is unreadable", r.Offset))
			}
			lr.Meta = jr.Meta
			for _, o := range jr.Ops {
				switch o.Kind {
				case "audit":
					lr.Audit = append(lr.Audit, o.A...)
				case "meta":
					if o.MT != nil {
						m := *o.MT
						lr.Meta = &m
					}
				default:
					lr.Ops = append(lr.Ops, o.ChangeOp)
				}
			}
		default:
			return nil, true, catalog.Errorf(catalog.CodeIncompatibleData, "catalog log record at offset %d has an unknown format", r.Offset)
		}
		recs = append(recs, lr)
	}
	return recs, true, nil
}

// SnapshotRevision returns the revision of the snapshot in dir (0 when
// there is none).
func SnapshotRevision(dir string) (catalog.Revision, error) { return readSnapshotRevision(dir) }

// RemoveLegacy empties dir/catalog.wal once an upgrade took everything
// from it (durably: the next start must not read it again).
func RemoveLegacy(dir string) error {
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return catalog.Internal(err, "emptying the catalog log")
	}
	defer f.Close()
	if err := f.Truncate(0); err != nil {
		return catalog.Internal(err, "emptying the catalog log")
	}
	if err := f.Sync(); err != nil {
		return catalog.Internal(err, "emptying the catalog log")
	}
	return nil
}
