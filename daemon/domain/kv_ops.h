// KvOp and KvOpResult: one operation of a batch on a generation's key-value store (the coordinator's
// KeyBatch, a KeyOp in coordinator.proto) and its result, in the daemons' own types.
//
// Thread-safety: plain values.
#ifndef MESHD_DAEMON_DOMAIN_KV_OPS_H_
#define MESHD_DAEMON_DOMAIN_KV_OPS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/domain/limits.h"

namespace meshd::domain {

struct KvOp {
  enum class Kind : uint8_t { kSet, kGet, kAdd, kCompareSet, kWait, kCheck, kDelete, kCount };
  Kind kind = Kind::kGet;
  std::vector<std::string> keys;        // the key; a wait's or check's keys; none for a count
  std::string value;                    // set: the value; compare-set: the desired one
  std::optional<std::string> expected;  // compare-set: the value expected (none: absent)
  int64_t delta = 0;                    // add
  bool wait = false;                    // get: wait until the key is set

  // Whether it may wait: a get with `wait`, or a wait.
  bool Waits() const { return kind == Kind::kWait || (kind == Kind::kGet && wait); }
};

struct KvOpResult {
  absl::Status status;   // the operation's own error
  bool pending = false;  // not run, or not satisfied, in this answer: ask again
  std::string value;     // get: the value; compare-set: the value now stored
  int64_t number = 0;    // add: the counter; count: the keys set
  bool yes = false;      // check: all set; delete: it was set; compare-set: swapped
  bool present = false;  // compare-set: the key is set now
};

using BatchDone = std::function<void(absl::StatusOr<std::vector<KvOpResult>>)>;

// The values one batch's answer carries before the rest are left pending (one value is always
// answered, however large).
inline constexpr size_t kMaxBatchAnswerBytes = kMaxValueBytes;

}  // namespace meshd::domain

#endif  // MESHD_DAEMON_DOMAIN_KV_OPS_H_
