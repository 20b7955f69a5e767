// HandOff / TakeOver: an ordering that gRPC makes between two threads, told to ThreadSanitizer.
//
// gRPC's core (Debian's build) is not instrumented, so TSan cannot see that a call's callback runs
// after the call was started, that a reactor's OnDone runs after its last operation, or that a
// completion-queue tag comes back after it was queued: what meshd does on either side of such a
// handoff looks unordered to it. The thread handing an object to gRPC calls HandOff(object) just
// before (starting the call, Finish, StartWrite, queueing the tag); the thread gRPC gives it back
// to calls TakeOver(object) first thing. Without TSan both are nothing.
//
// Only for orderings gRPC guarantees (its API's contract): a HandOff/TakeOver pair where gRPC
// makes no such promise would hide a real race.
//
// Thread-safety: thread-safe.
#ifndef MESHD_COMMON_SYNC_HANDOFF_H_
#define MESHD_COMMON_SYNC_HANDOFF_H_

#if defined(__SANITIZE_THREAD__)
#define MESHD_HANDOFF_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MESHD_HANDOFF_TSAN 1
#endif
#endif

#ifdef MESHD_HANDOFF_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace meshd::sync {

// What this thread did before happens before what a thread does after TakeOver(object).
inline void HandOff(const void* object) {
#ifdef MESHD_HANDOFF_TSAN
  __tsan_release(const_cast<void*>(object));
#else
  (void)object;
#endif
}

// What a thread did before HandOff(object) happens before what this thread does next.
inline void TakeOver(const void* object) {
#ifdef MESHD_HANDOFF_TSAN
  __tsan_acquire(const_cast<void*>(object));
#else
  (void)object;
#endif
}

}  // namespace meshd::sync

#endif  // MESHD_COMMON_SYNC_HANDOFF_H_
