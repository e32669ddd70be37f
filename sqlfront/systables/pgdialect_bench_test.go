package systables

import (
	"fmt"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// BenchmarkPGRows: the JSON parameter of a virtual table on PostgreSQL,
// 1,000 rows of information_schema.columns' shape.
func BenchmarkPGRows(b *testing.B) {
	r := relations["information_schema.columns"]
	rows := make([][]any, 1000)
	for i := range rows {
		row := make([]any, len(r.cols))
		for j, c := range r.cols {
			switch c.Type.Data {
			case catalog.DataInt32:
				row[j] = int32(i)
			case catalog.DataInt64:
				row[j] = int64(i)
			case catalog.DataBool:
				row[j] = i%2 == 0
			case catalog.DataTimestamptz:
				row[j] = time.Unix(int64(i), 0)
			default:
				row[j] = fmt.Sprintf("value_%d_%d", i, j)
			}
		}
		rows[i] = row
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(pgRows(r.cols, rows))
	}
	b.ReportMetric(float64(n), "bytes")
}
