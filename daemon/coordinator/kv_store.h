// KvStore: the key-value store and named barriers of one job generation. Owned by the coordinator
// under its lock; never calls a callback itself — completions are appended to `out` and the caller
// runs them after releasing its lock.
//
// Thread-safety: none; guarded by the owner.
#ifndef MESHD_DAEMON_COORDINATOR_KV_STORE_H_
#define MESHD_DAEMON_COORDINATOR_KV_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "daemon/coordinator/types.h"

namespace meshd::coordinator {

using Completions = std::vector<std::function<void()>>;

class KvStore {
 public:
  // Limits, checked by the callers' validation: key 1..1024 bytes, value up to 4 MiB.
  static constexpr size_t kMaxKeyBytes = 1024;
  static constexpr size_t kMaxValueBytes = 4 << 20;

  void Set(const std::string& key, std::string value, Completions& out);
  // Waits until `deadline` when `wait`; else NOT_FOUND at once.
  void Get(const std::string& key, bool wait, absl::Time deadline, BytesDone done,
           Completions& out);
  // Adds to an integer counter (absent = 0). INVALID_ARGUMENT when the value is not an integer.
  absl::StatusOr<int64_t> Add(const std::string& key, int64_t delta, Completions& out);
  // Swaps when the current value equals `expected` (or is absent, with expect_absent).
  struct CasResult {
    bool swapped = false;
    std::string value;
  };
  CasResult CompareSet(const std::string& key, const std::string* expected, std::string desired,
                       Completions& out);
  void Barrier(const std::string& name, const std::string& participant, uint32_t count,
               absl::Time deadline, StatusDone done, Completions& out);

  // Fails waits past `now` with DEADLINE_EXCEEDED; returns the earliest deadline of those left
  // (InfiniteFuture when none).
  absl::Time ExpireWaits(absl::Time now, Completions& out);
  // Fails every wait with `status` (generation ended, shutdown) and forgets everything.
  void FailAll(const absl::Status& status, Completions& out);
  size_t waiters() const;

 private:
  struct Getter {
    BytesDone done;
    absl::Time deadline;
  };
  struct BarrierState {
    uint32_t count = 0;
    std::set<std::string> arrived;
    bool done = false;
    std::vector<std::pair<StatusDone, absl::Time>> waiters;
  };
  void Wake(const std::string& key, Completions& out);

  absl::flat_hash_map<std::string, std::string> values_;
  std::multimap<std::string, Getter> getters_;
  std::map<std::string, BarrierState> barriers_;
};

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_KV_STORE_H_
