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
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/coordinator/completions.h"
#include "daemon/coordinator/types.h"
#include "daemon/domain/limits.h"
#include "daemon/domain/views.h"

namespace meshd::coordinator {

// What one generation's store may hold, so that no job can take the coordinator's memory: keys and
// barriers together, their bytes (keys, values, barrier names and participants), and the waits
// held at once. Past one, a call that would grow it gets RESOURCE_EXHAUSTED naming the limit and
// its flag; nothing is stored.
struct KvStoreLimits {
  size_t max_keys = domain::kDefaultStoreKeys;
  size_t max_bytes = domain::kDefaultStoreBytes;
  size_t max_waits = domain::kDefaultStoreWaits;
};

class KvStore {
 public:
  // Limits, checked by the callers' validation: key 1..1024 bytes, value up to 4 MiB.
  static constexpr size_t kMaxKeyBytes = domain::kMaxKeyBytes;
  static constexpr size_t kMaxValueBytes = domain::kMaxValueBytes;
  using Limits = KvStoreLimits;

  explicit KvStore(Limits limits = {}) : limits_(limits) {}

  absl::Status Set(const std::string& key, std::string value, Completions& out);
  // Waits until `deadline` when `wait`; else NOT_FOUND at once. A wait past Limits::max_waits
  // gets RESOURCE_EXHAUSTED.
  void Get(const std::string& key, bool wait, absl::Time deadline, BytesDone done,
           Completions& out);
  // Calls `done` once every key is set (at once if they are), or DEADLINE_EXCEEDED at `deadline`
  // naming the keys still missing.
  void Wait(const std::vector<std::string>& keys, absl::Time deadline, StatusDone done,
            Completions& out);
  // Whether every key is set.
  bool Check(const std::vector<std::string>& keys) const;
  // Removes a key; whether it was set. Waits that saw it set stay satisfied (as TCPStore's).
  bool Delete(const std::string& key);
  // Keys set.
  int64_t Count() const { return static_cast<int64_t>(values_.size()); }
  // Bytes held (keys, values, barrier names and participants).
  size_t bytes() const { return bytes_; }
  // Adds to an integer counter (absent = 0). INVALID_ARGUMENT when the value is not an integer;
  // OUT_OF_RANGE when the sum overflows int64.
  absl::StatusOr<int64_t> Add(const std::string& key, int64_t delta, Completions& out);
  // Swaps when the current value equals `expected` (or is absent, with expect_absent).
  struct CasResult {
    bool swapped = false;
    std::string value;     // the value now stored ("" when absent)
    bool present = false;  // whether the key is set now
  };
  absl::StatusOr<CasResult> CompareSet(const std::string& key, const std::string* expected,
                                       std::string desired, Completions& out);
  void Barrier(const std::string& name, const std::string& participant, uint32_t count,
               absl::Time deadline, StatusDone done, Completions& out);
  // Runs `ops` in order — those that do not wait first — each as its own method would
  // (kv_batch.cc; KeyBatchRequest in coordinator.proto): answers at once when one does not wait
  // or a waiting one is satisfied; else holds them until one is (then answers every satisfied
  // one), or DEADLINE_EXCEEDED at `deadline`.
  // Waiting operations not satisfied, and those after the answer's kMaxBatchAnswerBytes of values,
  // are answered pending. Held, each waiting operation counts as a wait: past Limits::max_waits,
  // RESOURCE_EXHAUSTED.
  void Batch(std::vector<KvOp> ops, absl::Time deadline, BatchDone done, Completions& out);

  // Fails waits past `now` with DEADLINE_EXCEEDED; returns the earliest deadline of those left
  // (InfiniteFuture when none).
  absl::Time ExpireWaits(absl::Time now, Completions& out);
  // Fails every wait with `status` (generation ended, shutdown) and forgets everything (a
  // recovered generation's note too).
  void FailAll(const absl::Status& status, Completions& out);
  size_t waiters() const;
  // The store of a generation recovered after a coordinator restart: the keys set before the
  // restart are gone, and every "not set" answer says so (a rank waiting for one would otherwise
  // see only its timeout).
  void MarkRecovered() { missing_note_ = kRecoveredNote; }
  static constexpr const char* kRecoveredNote =
      " (the coordinator restarted during this generation: keys set before the restart are lost)";
  // What it holds and the `shown` keys most waited for (a key-value store at GetJob). O(waits).
  domain::StoreView View(size_t shown) const;

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
  struct KeyWaiter {
    std::set<std::string> missing;  // keys not set yet
    size_t keys = 0;                // how many it waits for
    StatusDone done;
    absl::Time deadline;
  };
  struct HeldBatch {
    std::vector<KvOp> ops;                     // every one waits
    std::vector<std::set<std::string>> missing;  // by op: its keys not seen set yet
    std::set<std::string> registered;            // its keys in waiting_
    BatchDone done;
    absl::Time deadline;
  };
  void Wake(const std::string& key, Completions& out);
  // Runs one operation of a batch into `r`; false when it waits and is not satisfied (pending).
  bool RunOp(KvOp& op, KvOpResult& r, Completions& out);
  // The bytes of value `op` would answer with now.
  size_t AnswerBytes(const KvOp& op) const;
  // `woken` was set: answers held batch `id` if one of its operations is satisfied now (its
  // entries in waiting_ for `woken` were taken out by the caller).
  void AnswerHeld(uint64_t id, const std::string& woken, Completions& out);
  // Removes the entries of waiter (or held batch) `id` in waiting_ for `keys`.
  void Unwait(uint64_t id, const std::set<std::string>& keys);
  // Stores `value` at `key` within the limits (RESOURCE_EXHAUSTED, nothing stored, past one).
  absl::Status Put(const std::string& key, std::string value);
  // OK when `more_keys` more entries of `more_bytes` more bytes stay within the limits.
  absl::Status Room(size_t more_keys, size_t more_bytes) const;
  // OK when `more` more waits stay within the limit.
  absl::Status RoomToWait(size_t more = 1) const;

  // "... not set" plus missing_note_.
  std::string NotSet(absl::string_view what) const;
  // NOT_FOUND for a get of `key` that does not wait (Get, Batch).
  absl::Status KeyNotSet(const std::string& key) const;

  Limits limits_;
  std::string missing_note_;
  size_t bytes_ = 0;
  absl::flat_hash_map<std::string, std::string> values_;
  std::multimap<std::string, Getter> getters_;
  std::map<uint64_t, KeyWaiter> key_waiters_;     // by id
  std::multimap<std::string, uint64_t> waiting_;  // missing key -> key waiter id
  uint64_t next_waiter_ = 1;
  std::map<std::string, BarrierState> barriers_;
  std::map<uint64_t, HeldBatch> held_;  // by id (shared with key_waiters_ in waiting_)
  size_t held_ops_ = 0;                 // their operations: each counts as a wait
  // While a batch runs, the keys it set, woken once it has run (a held batch waiting on several
  // of them is answered with all of them, not with the first alone).
  std::vector<std::string>* deferred_wakes_ = nullptr;
};

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_KV_STORE_H_
