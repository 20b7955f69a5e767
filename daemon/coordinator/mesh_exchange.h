// MeshExchange: the check that every rank asked for the same mesh under one key (a mesh's name, or
// "#n" for the n-th unnamed one) within one job generation, and the rules its groups' ids follow
// (MintRules, from the spec the ranks share). Reports that ask for ids are not held here: their
// groups go to the generation's GroupExchange at once. A report that only checks the spec is held
// until every rank of the mesh reported it. A rank whose spec differs is refused
// FAILED_PRECONDITION at once, naming both specs and who asked for which; the ranks held are told
// the same, and when ranks of the mesh were already answered the owner ends the generation
// (Recorded::end_generation) so that they learn it too.
// Owned by the coordinator under its lock; completions go to `out` and run after the lock.
//
// Thread-safety: none; guarded by the owner.
#ifndef MESHD_DAEMON_COORDINATOR_MESH_EXCHANGE_H_
#define MESHD_DAEMON_COORDINATOR_MESH_EXCHANGE_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/coordinator/mint_rules.h"
#include "daemon/coordinator/completions.h"
#include "daemon/coordinator/types.h"

namespace meshd::coordinator {

class MeshExchange {
 public:
  MeshExchange(std::string job, std::string mesh_key, uint32_t world_size)
      : job_(std::move(job)),
        mesh_key_(std::move(mesh_key)),
        world_size_(world_size),
        reported_(world_size, false) {}

  struct Recorded {
    absl::Status status;          // OK: the ranks' specs agree with the mesh's
    bool end_generation = false;  // a mismatch that ranks already answered must learn
  };
  // One node's ranks' specs. Ranks must be below world_size; reporting a rank again (a retry) is
  // fine with the same spec. Errors: INVALID_ARGUMENT a rank beyond the world; FAILED_PRECONDITION
  // a spec that differs from the mesh's (then every held check fails the same way and later
  // reports are refused), or a rank reporting again with another spec.
  Recorded Record(const std::string& node, const std::vector<RankSpec>& ranks, Completions& out);
  // A report of it went on to the group exchange: its ranks may be answered before a mismatch.
  void WentOn() { answered_ = true; }
  // The rules of the recorded spec. @pre a Record that returned OK.
  const absl::StatusOr<MintRules>& Rules();
  // Holds a spec-only check until every rank of the mesh reported (at once if they have).
  void HoldCheck(absl::Time deadline, GroupsDone done, Completions& out);
  // Fails held checks past `now` with DEADLINE_EXCEEDED naming the ranks still missing; returns
  // the earliest deadline of those left (InfiniteFuture when none).
  absl::Time ExpireWaits(absl::Time now, Completions& out);
  void FailAll(const absl::Status& status, Completions& out);
  size_t waiters() const { return waiters_.size(); }

 private:
  struct Waiter {
    GroupsDone done;
    absl::Time deadline;
  };
  void Fail(const absl::Status& status, Completions& out);
  // Ranks of the mesh that have not reported (all when the rules are unknown), at most `limit`.
  std::vector<uint32_t> Missing(size_t limit);
  bool Complete();

  const std::string job_;
  const std::string mesh_key_;
  const uint32_t world_size_;
  std::map<std::string, std::pair<std::string, std::vector<uint32_t>>>
      specs_;                   // fp -> (desc, ranks)
  std::vector<bool> reported_;  // by rank
  int64_t in_mesh_reported_ = 0;  // of them, the ranks in the mesh
  bool answered_ = false;       // some rank went on (ids asked, or a check answered)
  std::vector<Waiter> waiters_;
  std::optional<absl::Status> failed_;
  std::optional<absl::StatusOr<MintRules>> rules_;  // of specs_'s only spec, once asked
};

// "0-7,16,18-23": ranks, compactly, capped at a few ranges.
std::string RankRanges(const std::vector<uint32_t>& sorted_ranks);

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_MESH_EXCHANGE_H_
