// jemalloc's settings for meshd, read by jemalloc at start-up from this symbol. Linked into the
// daemon only when it links jemalloc (MESHD_JEMALLOC); MALLOC_CONF in the environment still
// overrides it.
//
// background_thread:true — jemalloc returns freed pages to the kernel (after its decay time, 10 s
// by default) on a thread of its own. Without it, a process returns them only while it allocates,
// so a coordinator that goes quiet after a burst keeps the burst's RSS. Measured by
// bench/soak_bench.cc (1,000 jobs and 10,000 node incarnations, all removed): without it the
// coordinator stayed at 1.31x its start RSS 40 s after it emptied; with it, back to 0.98x in 7 s.
// See docs/performance.md.

// The name and type jemalloc looks for (its je_malloc_conf, unprefixed in Debian's build).
extern "C" {
const char* malloc_conf = "background_thread:true";  // NOLINT(readability-identifier-naming)
}
