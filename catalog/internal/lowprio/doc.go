// Package lowprio runs a goroutine's work on an OS thread of lower CPU
// priority, so that under contention the kernel's scheduler gives the
// request path the core first.
//
// Lock locks the calling goroutine to its OS thread for good and raises
// that thread's nice value (Linux: setpriority(PRIO_PROCESS, tid), which
// applies to one thread; elsewhere the priority is left as it is). The
// goroutine must never call runtime.UnlockOSThread: when it returns, the
// runtime ends the thread with it, so the lowered priority never passes to
// another goroutine. Work that a caller waits for (queries, flushes) must
// not run on such a thread; background work (the audit log's applier) may,
// because a niced thread still gets its share of the CPU (CFS weights: a
// nice-10 thread gets about a tenth of a contended core, all of an idle
// one) and so is slowed down under contention, never starved.
package lowprio
