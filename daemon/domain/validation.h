// Request validation shared by the coordinator and the agent: names, sizes, inventories, keys. Every error is
// INVALID_ARGUMENT with a message that names the field, the value and what is allowed.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_DOMAIN_VALIDATION_H_
#define MESHD_DAEMON_DOMAIN_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/domain/limits.h"
#include "daemon/domain/types.h"

namespace meshd::domain {

// 1..max_bytes characters of [A-Za-z0-9._-]. `what` names the field in the message ("job", "node").
absl::Status ValidateName(absl::string_view what, absl::string_view name, size_t max_bytes);
absl::Status ValidateInventory(const NodeInventory& inventory, uint32_t max_gpus);
absl::Status ValidateNodeCount(const NodeCount& count, uint32_t max_nodes);
// 1..kMaxKeyBytes bytes of UTF-8 (the protocol's keys are proto strings).
absl::Status ValidateKey(absl::string_view key);
// The keys of one wait or check: 1..kMaxWaitKeys of them, each a valid key.
absl::Status ValidateKeys(const std::vector<std::string>& keys);
// A key-value store value of at most kMaxValueBytes.
absl::Status ValidateValue(absl::string_view value);
// A compare-set's values: together at most kMaxValueBytes (so that the call fits any batch).
absl::Status ValidateCompareSet(absl::string_view expected, absl::string_view desired);
// Generations an agent reports running (RegisterNode after a coordinator restart): names, sizes,
// and a rank and size a round could have given.
absl::Status ValidateRunningJobs(const std::vector<RunningJob>& running, uint32_t max_nodes);

}  // namespace meshd::domain

#endif  // MESHD_DAEMON_DOMAIN_VALIDATION_H_
