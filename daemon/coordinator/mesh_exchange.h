// MeshExchange: the relay of one mesh's NCCL unique ids within one job generation, and the check
// that every rank asked for the same mesh under the same key. Nodes report their local ranks'
// specs, groups and minted ids; nobody is answered until all `world_size` ranks reported, so a spec
// mismatch reaches every rank and every leader's id is known before anyone is answered. Which
// groups a node may ask for, and which ids it may mint, follow from the mesh its ranks reported
// (MintRules): a group's ids only by the node holding each chunk's leader.
// Owned by the coordinator under its lock; completions go to `out` and run after the lock.
//
// Thread-safety: none; guarded by the owner.
#ifndef MESHD_DAEMON_COORDINATOR_MESH_EXCHANGE_H_
#define MESHD_DAEMON_COORDINATOR_MESH_EXCHANGE_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/status/statusor.h"
#include "daemon/coordinator/kv_store.h"
#include "daemon/coordinator/mint_rules.h"
#include "daemon/domain/limits.h"
#include "daemon/coordinator/types.h"

namespace meshd::coordinator {

class MeshExchange {
 public:
  static constexpr size_t kIdBytes = domain::kIdBytes;
  static constexpr uint32_t kMaxIdsPerGroup = domain::kMaxIdsPerGroup;

  // `counters` (the owner's, outliving the exchange) counts the ids and answers handed out.
  MeshExchange(std::string job, std::string mesh_key, uint32_t world_size, Counters* counters)
      : job_(std::move(job)),
        mesh_key_(std::move(mesh_key)),
        world_size_(world_size),
        counters_(counters),
        reported_(world_size, false) {}

  // One node's report. Ranks must be below world_size; reporting a rank again (a retry) is fine.
  // Errors (through `done`): INVALID_ARGUMENT malformed ids or ranks, a key that is not a group of
  // the mesh, a spec the coordinator cannot rebuild the mesh from (only when ids are asked for);
  // PERMISSION_DENIED a group none of the ranks is in, or an id or mint error of a chunk whose
  // leader the node does not hold (see MintRules); FAILED_PRECONDITION specs differ between ranks
  // (naming both and who asked for which) or a group's id was never minted. A rejected report
  // records nothing. `groups` is taken: its ids and keys move into the exchange.
  void Report(const std::string& node, const std::vector<RankSpec>& ranks,
              std::vector<GroupRequest> groups, absl::Time deadline, GroupsDone done,
              Completions& out);
  // Fails waits past `now` with DEADLINE_EXCEEDED naming the ranks still missing; returns the
  // earliest deadline of those left (InfiniteFuture when none).
  absl::Time ExpireWaits(absl::Time now, Completions& out);
  void FailAll(const absl::Status& status, Completions& out);
  size_t waiters() const { return waiters_.size(); }

 private:
  struct Group {
    std::vector<std::optional<std::string>> slots;  // by chunk, as minted
    SharedGroupIds answer;                          // once every slot is filled and asked for
  };
  using GroupEntry = std::pair<const std::string, Group>;  // key and group, at a stable address
  struct Waiter {
    std::vector<GroupEntry*> groups;  // as asked, in order
    GroupsDone done;
    absl::Time deadline;
  };
  void Fail(const absl::Status& status, Completions& out);
  void Answer(Waiter& w, Completions& out);
  // The rules of the mesh `fingerprint` describes, built once.
  const absl::StatusOr<MintRules>& RulesFor(const std::string& fingerprint);

  const std::string job_;
  const std::string mesh_key_;
  const uint32_t world_size_;
  Counters* const counters_;
  std::map<std::string, std::pair<std::string, std::vector<uint32_t>>>
      specs_;  // fp -> (desc, ranks)
  std::vector<bool> reported_;  // by rank
  uint32_t reported_count_ = 0;
  // Hash maps: a 131,072-rank mesh has ~100,000 groups, asked for by every node. Groups by node,
  // so that a waiter holds its groups themselves and its answer needs no lookups.
  absl::node_hash_map<std::string, Group> ids_;                                    // key -> ids
  absl::flat_hash_map<std::string, std::string> mint_errors_;                      // key -> why
  std::vector<Waiter> waiters_;
  std::optional<absl::Status> failed_;
  std::string rules_fingerprint_;                   // what rules_ was built from
  std::optional<absl::StatusOr<MintRules>> rules_;  // once a report asked for ids
};

// "0-7,16,18-23": ranks, compactly, capped at a few ranges.
std::string RankRanges(const std::vector<uint32_t>& sorted_ranks);

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_MESH_EXCHANGE_H_
