#!/usr/bin/env python3
"""Server CPU per call by part, from `perf script -F pid,ip,sym` of one or
more mandate serve processes (perf record -g -p PID,...):

    perf script -i perf.data -F pid,ip,sym > perf.txt
    python3 parts.py perf.txt HZ CALLS PID=label [PID=label ...]

Each sample goes to the first part (in the order below) one of whose
frames its stack holds; samples / HZ / CALLS is the part's CPU per call
in microseconds. DuckDB's own threads and its code called from Go show
as C++ frames without a Go caller (DuckDB is built without frame
pointers), so the apply is the Go-side row plus most of the DuckDB row.
"""
import collections
import sys

PARTS = [
    ("audit: apply into DuckDB (applier, Go side)", ["auditwal.(*Log).apply", "auditwal.(*Log).applier", "duckstore.(*Store).ApplyLog"]),
    ("audit: read-side flush (queries)", ["auditwal.(*Log).Flush"]),
    ("audit: WAL append (encode, write; fsync with on)", ["auditwal.(*Log).append", "auditwal.(*Log).appendEvents", "auditwal.(*Log).AppendPrepared", "auditwal.(*Log).appendRecord"]),
    ("audit: background fsync (syncer, lazy)", ["auditwal.(*Log).syncNow", "auditwal.(*Log).syncer", "auditwal.(*Log).lazySync"]),
    ("audit: group commit writer (other)", ["catalog.(*AuditLog).writer", "catalog.(*AuditLog).writeNext", "catalog.(*AuditLog).fill"]),
    ("audit: request goroutine (event, Validate, queue)", ["catalog.(*AuditLog).queue1", "catalog.(*AuditLog).Submit", "catalog.(*AuditLog).Enqueue", "pipeline.(*Pipeline).complete", "pipeline.(*Pipeline).beginAudit", "pipeline.(*Call).event", "pipeline.(*Pipeline).waitAck"]),
    ("duckdb: C++ frames without a Go caller (apply, checkpoint)", ["duckdb::", "duckdb_"]),
    ("GC", ["runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.gcDrain"]),
    ("request path (net/http server side, pipeline)", ["net/http.(*conn).serve"]),
    ("upstream client (net/http transport)", ["net/http.(*persistConn)"]),
    ("scheduler, netpoll, timers", ["runtime.schedule", "runtime.findRunnable", "runtime.mcall", "runtime.sysmon", "runtime.netpoll", "runtime.park_m", "runtime.goexit0"]),
]


def main():
    path, hz, calls = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    pids = [a.split("=", 1) for a in sys.argv[4:]]
    per = collections.defaultdict(collections.Counter)
    pid, stack = None, []

    def flush():
        if pid is None or not stack:
            return
        s = "\n".join(stack)
        for name, keys in PARTS:
            if any(k in s for k in keys):
                per[pid][name] += 1
                return
        per[pid]["other"] += 1

    for line in open(path, errors="replace"):
        t = line.strip()
        if not t:
            flush()
            pid, stack = None, []
        elif t.isdigit():
            flush()
            pid, stack = t, []
        else:
            stack.append(t)
    flush()
    print("| part | " + " | ".join(label for _, label in pids) + " |")
    print("|---|" + "---:|" * len(pids))
    for name in [n for n, _ in PARTS] + ["other", "total"]:
        row = []
        for p, _ in pids:
            v = sum(per[p].values()) if name == "total" else per[p][name]
            row.append(f"{v / hz * 1e6 / calls:.0f}")
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
