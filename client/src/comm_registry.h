// CommRegistry<T>: the communicators a client made, without owning them (weak references):
//   - a cache per key ("<group key>|<mode>"): Acquire answers the live one, or reserves the key
//     for the caller (who makes it, then Release()s it); others asking meanwhile wait for that
//     maker, so one key never gets two communicators at once;
//   - AbortAll(why) at the generation's end: aborts every live one it knows (cached or Track()ed);
//     one made after that is aborted as it is registered.
// Each key also counts its attempts (Acquire that reserves), the <attempt> of the arrival keys.
// T is meshd::Communicator in the client and a plain type in tests; `abort(T&, why)` and
// `usable(const T&)` say how to abort one and whether it is still usable (not aborted).
//
// Thread-safety: every method may be called from any thread; `abort` runs without the lock.
#ifndef MESHD_CLIENT_SRC_COMM_REGISTRY_H_
#define MESHD_CLIENT_SRC_COMM_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace meshd::client_internal {

template <typename T>
class CommRegistry {
 public:
  using AbortFn = std::function<void(T&, const absl::Status&)>;
  using UsableFn = std::function<bool(const T&)>;

  CommRegistry(AbortFn abort, UsableFn usable)
      : abort_(std::move(abort)), usable_(std::move(usable)) {}

  struct Lookup {
    std::shared_ptr<T> cached;  // the live one: use it
    int64_t attempt = 0;        // else: the caller holds the key; this is its attempt (1, 2, ...)
  };

  // The live communicator for `key`, or the key reserved for the caller (cached null; the caller
  // must Release it). Waits while another caller holds the key, until `deadline`
  // (DEADLINE_EXCEEDED). ABORTED after AbortAll.
  absl::StatusOr<Lookup> Acquire(const std::string& key, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    Slot& slot = slots_[key];
    auto free_or_ended = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !slot.making || !ended_.ok();
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&free_or_ended), deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("another thread of this worker is still making the communicator ", key));
    }
    if (!ended_.ok()) return ended_;
    if (std::shared_ptr<T> live = slot.comm.lock(); live != nullptr && usable_(*live)) {
      return Lookup{std::move(live), 0};
    }
    slot.making = true;
    return Lookup{nullptr, ++slot.attempts};
  }

  // Ends the caller's hold on `key`, with what it made (null: it failed). A communicator made after
  // AbortAll is aborted here and the answer is the generation's end (ABORTED).
  absl::Status Release(const std::string& key, const std::shared_ptr<T>& made) {
    absl::Status ended;
    {
      absl::MutexLock lock(&mu_);
      Slot& slot = slots_[key];
      slot.making = false;
      if (made != nullptr) slot.comm = made;
      ended = ended_;
    }
    if (!ended.ok() && made != nullptr) abort_(*made, ended);
    return ended;
  }

  // Known for AbortAll without a cache key (the world communicator). ABORTED, and aborted at
  // once, after AbortAll.
  absl::Status Track(const std::shared_ptr<T>& made) {
    absl::Status ended;
    {
      absl::MutexLock lock(&mu_);
      ended = ended_;
      if (ended.ok()) {
        // Forget the ones that are gone, so the list stays as long as what lives.
        std::vector<std::weak_ptr<T>> live;
        for (auto& w : tracked_)
          if (!w.expired()) live.push_back(std::move(w));
        live.push_back(made);
        tracked_.swap(live);
      }
    }
    if (!ended.ok()) abort_(*made, ended);
    return ended;
  }

  // Aborts every live communicator with `why` (once; later calls do nothing). Callers waiting in
  // Acquire get `why`.
  void AbortAll(const absl::Status& why) {
    std::vector<std::shared_ptr<T>> live;
    absl::Status reason;
    {
      absl::MutexLock lock(&mu_);
      if (!ended_.ok()) return;
      ended_ = why.ok() ? absl::AbortedError("the generation ended") : why;
      reason = ended_;
      for (auto& [key, slot] : slots_)
        if (auto c = slot.comm.lock()) live.push_back(std::move(c));
      for (auto& w : tracked_)
        if (auto c = w.lock()) live.push_back(std::move(c));
    }
    for (auto& c : live) abort_(*c, reason);
  }

  // Live communicators known (tests, diagnostics).
  size_t live() const {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& [key, slot] : slots_) n += slot.comm.expired() ? 0 : 1;
    for (const auto& w : tracked_) n += w.expired() ? 0 : 1;
    return n;
  }

 private:
  struct Slot {
    std::weak_ptr<T> comm;
    bool making = false;
    int64_t attempts = 0;
  };

  const AbortFn abort_;
  const UsableFn usable_;
  mutable absl::Mutex mu_;
  std::map<std::string, Slot> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<T>> tracked_ ABSL_GUARDED_BY(mu_);
  absl::Status ended_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::client_internal

#endif  // MESHD_CLIENT_SRC_COMM_REGISTRY_H_
