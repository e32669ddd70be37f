// Package proctest starts the long-lived child processes of tests (the
// PostgreSQL postmaster of pgtest, "mandate serve" and "mandate gateway"
// in the end-to-end tests, the servers other tests check against) so that
// they die with the test process: a test binary killed by -timeout, a
// panic or kill -9 leaves none of them running.
//
// Start sets the child's death signal (Linux: PR_SET_PDEATHSIG, sent by
// the kernel when the parent dies). Linux sends it when the *thread* that
// forked the child ends, not the process, and the Go runtime ends an OS
// thread whenever a goroutine that locked it (runtime.LockOSThread) returns
// without unlocking, as catalog/internal/lowprio's niced threads do. A
// child forked from any thread the runtime might later hand to such a
// goroutine could be signalled in the middle of a test. So Start forks the
// child from a goroutine of its own, locked to its thread, which then
// waits for the child and unlocks only once the child has exited: the
// forking thread lives exactly as long as the child.
//
// RunOnEndingThread runs a function on a thread that ends when it returns,
// and waits for the end: the tests of Start and of pgtest use it to show
// that a child survives the thread its starter ran on.
//
// RunInTempDir runs a package's tests (from TestMain) with TMPDIR set to a
// directory of the test process's own, removed at the end; a test process
// killed before it could remove it leaves it behind, and the next test
// process of any package removes it (RemoveStaleTempDirs): so neither
// the processes nor the files of a killed test binary outlive it for long.
//
// Elsewhere than Linux, Start starts the child without a death signal.
package proctest
