// JobRecord: what JobRounds keeps of one job — its open round, standby nodes, running generation
// (members, KV store, mesh exchanges), the end of the last one, and a generation being recovered.
// Shared by the files that implement JobRounds (job_rounds.cc, job_recovery.cc, job_views.cc);
// internal to daemon/coordinator.
//
// Thread-safety: none; guarded by the Coordinator's lock.
#ifndef MESHD_DAEMON_COORDINATOR_JOB_RECORD_H_
#define MESHD_DAEMON_COORDINATOR_JOB_RECORD_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "daemon/coordinator/completions.h"
#include "daemon/coordinator/kv_store.h"
#include "daemon/coordinator/group_exchange.h"
#include "daemon/coordinator/mesh_exchange.h"
#include "daemon/coordinator/types.h"

namespace meshd::coordinator {

// The member list of a job with no running generation (shared, never freed).
inline const std::shared_ptr<const std::vector<Member>>& NoMembers() {
  static const auto* empty =
      new std::shared_ptr<const std::vector<Member>>(std::make_shared<const std::vector<Member>>());
  return *empty;
}

struct JobRecord {
  explicit JobRecord(KvStore::Limits kv_limits) : kv(kv_limits) {}

  struct Joiner {
    uint64_t incarnation = 0;
    std::vector<std::pair<JoinDone, absl::Time>> waiters;
    // Answers every wait with `status` (through `out`), leaving none.
    void Fail(const absl::Status& status, Completions& out) {
      for (auto& [waiter, unused] : waiters) {
        out.push_back([waiter = std::move(waiter), status] { waiter(status); });
      }
      waiters.clear();
    }
  };
  std::string name;
  NodeCount count;
  uint32_t local_world = 0;
  uint64_t generation = 1;
  JobPhase phase = JobPhase::kJoining;
  absl::Time phase_since;
  std::map<std::string, Joiner> joiners;  // the open round
  absl::Time round_opened;                // its first joiner came (while `joiners` is not empty)
  std::map<std::string, Joiner> standby;  // elastic job at its max: wait for the next round
  std::optional<absl::Time> last_call_deadline;
  std::vector<std::string> previous_members;
  // The running generation's members in rank order; one list shared with every answer of it.
  std::shared_ptr<const std::vector<Member>> members = NoMembers();
  absl::flat_hash_map<std::string, uint32_t> rank_of;  // member node -> node rank
  std::set<std::string> finished;  // members whose workers all detached cleanly (FinishJob)
  KvStore kv;
  std::map<std::string, MeshExchange> meshes;  // running generation, by mesh key
  std::optional<GroupExchange> groups;         // running generation, from its first ResolveGroups
  std::optional<GenerationEnd> last_end;
  // JobPhase::kRecovering: the generation its nodes report back after a coordinator restart.
  struct Recovery {
    uint32_t num_nodes = 0;
    std::map<uint32_t, std::string> node_at;                  // node rank -> node, as reported
    absl::flat_hash_map<std::string, uint32_t> rank_of_node;  // and back
    absl::Time deadline;                                      // the rest must report by then
  };
  std::optional<Recovery> recovery;

  std::vector<std::string> JoinerNames() const {
    std::vector<std::string> out;
    for (const auto& [n, j] : joiners) out.push_back(n);
    return out;
  }
  Assignment AssignmentFor(uint32_t node_rank) const {
    return Assignment{name,      generation,  static_cast<uint32_t>(members->size()) * local_world,
                      node_rank, local_world, static_cast<uint32_t>(members->size()),
                      members,   {}};
  }
  bool IsMember(const std::string& node) const { return rank_of.contains(node); }
  // What a call naming the generation gets while it recovers (kRecovering): retry in a moment.
  absl::Status RecoveringError() const {
    return absl::UnavailableError(
        absl::StrCat("generation ", generation, " of job '", name,
                     "' is being recovered after a coordinator restart (", recovery->node_at.size(),
                     " of ", recovery->num_nodes, " nodes reported it); retry in a moment"));
  }
};

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_JOB_RECORD_H_
