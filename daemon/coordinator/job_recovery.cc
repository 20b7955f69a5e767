// JobRounds: rebuilding running jobs after a coordinator restart (see job_rounds.h) from the
// generations the nodes' agents report when they register again.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "daemon/coordinator/job_record.h"
#include "daemon/coordinator/job_rounds.h"

namespace meshd::coordinator {

void JobRounds::Recover(const std::string& node, const std::vector<RunningJob>& running,
                        Completions& out) {
  const absl::Time now = clock_->Now();
  for (const RunningJob& r : running) {
    // With a membership key, only the coordinator's own signature of this place counts: a node
    // cannot claim a place in a job it was never given (nor create the job by claiming one).
    if (options_.sign_membership &&
        !SameSecret(r.membership_token, MembershipToken(r.job, r.generation, node, r.node_rank,
                                                       r.num_nodes, r.local_world))) {
      coordinator::Emit(
          *events_,
          Event{EventKind::kRecoveryRefused,
                absl::StrCat("node '", node, "' reports node rank ", r.node_rank, " of generation ",
                             r.generation, " without a valid membership token (another "
                             "coordinator's key, or not its place): ignored"),
                r.job.substr(0, 128), node, r.generation, absl::ZeroDuration(),
                EndReason::kNodeLost, {}},
          out);
      continue;
    }
    std::unique_ptr<JobRecord>& slot = jobs_[r.job];
    if (slot == nullptr) {
      slot = std::make_unique<JobRecord>(options_.kv_limits);
      JobRecord& j = *slot;
      j.name = r.job;
      j.count = r.nodes;
      j.local_world = r.local_world;
      j.generation = r.generation;
      j.phase = JobPhase::kRecovering;
      j.phase_since = now;
      j.kv.MarkRecovered();
      // Not emplace(): clang finds the nested Recovery (with member initializers) not yet
      // default-constructible inside JobRecord.
      j.recovery = JobRecord::Recovery{};
      j.recovery->num_nodes = r.num_nodes;
      j.recovery->deadline = now + std::max(options_.recovery_window, nodes_->FairTiming().timeout);
      waits_due_ = std::min(waits_due_, j.recovery->deadline);
      Emit(EventKind::kJobRecovering,
           absl::StrCat("node reports generation ", r.generation, " (", r.num_nodes,
                        " nodes) running, unknown here (the coordinator restarted): recovering it "
                        "as its nodes register again"),
           j, node, out);
    }
    JobRecord& j = *slot;
    if (j.phase != JobPhase::kRecovering || j.generation != r.generation) continue;  // known
    JobRecord::Recovery& rec = *j.recovery;
    if (rec.num_nodes != r.num_nodes || j.local_world != r.local_world || !(j.count == r.nodes)) {
      FailRecovery(
          j, node,
          absl::StrCat("node '", node, "' reports generation ", r.generation, " with ", r.num_nodes,
                       " nodes of ", r.local_world, " workers; other nodes reported ",
                       rec.num_nodes, " nodes of ", j.local_world),
          out);
      continue;
    }
    // Both checks before recording either, so that a refused report leaves no trace.
    auto at = rec.node_at.find(r.node_rank);
    if (at != rec.node_at.end() && at->second != node) {
      FailRecovery(j, node,
                   absl::StrCat("nodes '", at->second, "' and '", node, "' both report node rank ",
                                r.node_rank, " of generation ", r.generation),
                   out);
      continue;
    }
    auto mine = rec.rank_of_node.find(node);
    if (mine != rec.rank_of_node.end() && mine->second != r.node_rank) {
      FailRecovery(j, node,
                   absl::StrCat("node '", node, "' reports node ranks ", mine->second, " and ",
                                r.node_rank, " of generation ", r.generation),
                   out);
      continue;
    }
    rec.node_at.emplace(r.node_rank, node);
    rec.rank_of_node.emplace(node, r.node_rank);
    if (rec.node_at.size() == rec.num_nodes) FinishRecovery(j, out);
  }
}

std::vector<Member> JobRounds::ReportedMembers(const JobRecord& j) const {
  std::vector<Member> members;
  for (const auto& [rank, node] : j.recovery->node_at) {
    const NodeRegistry::Node& n = nodes_->Get(node);  // reported by a registered node
    members.push_back(Member{node, n.inventory.hostname, rank, j.local_world, n.clique});
  }
  return members;
}

void JobRounds::AdoptReportedGeneration(JobRecord& j) {
  j.rank_of = j.recovery->rank_of_node;
  j.members = std::make_shared<const std::vector<Member>>(ReportedMembers(j));
  j.phase = JobPhase::kRunning;
  j.recovery.reset();
}

absl::Time JobRounds::ExpireRecovery(JobRecord& j, absl::Time now, Completions& out) {
  if (j.phase != JobPhase::kRecovering) return absl::InfiniteFuture();
  if (j.recovery->deadline > now) return j.recovery->deadline;
  std::vector<uint32_t> missing;
  for (uint32_t r = 0; r < j.recovery->num_nodes && missing.size() < 64; ++r) {
    if (!j.recovery->node_at.contains(r)) missing.push_back(r);
  }
  FailRecovery(j, "",
               absl::StrCat("node ranks ", RankRanges(missing), " of ", j.recovery->num_nodes,
                            " did not report generation ", j.generation, " within ",
                            absl::FormatDuration(now - j.phase_since)),
               out);
  return absl::InfiniteFuture();
}

void JobRounds::FinishRecovery(JobRecord& j, Completions& out) {
  AdoptReportedGeneration(j);
  const absl::Duration took = clock_->Now() - j.phase_since;
  j.phase_since = clock_->Now();
  ++counters_.generations_recovered;
  Emit(EventKind::kGenerationRecovered,
       absl::StrCat("generation ", j.generation, " recovered after a coordinator restart: its ",
                    j.members->size(), " nodes reported it within ", absl::FormatDuration(took)),
       j, "", out);
}

void JobRounds::FailRecovery(JobRecord& j, const std::string& node, const std::string& message,
                             Completions& out) {
  // Ended as a running generation of the nodes that reported it, so that their watchers hear of
  // the end and the next round expects them.
  AdoptReportedGeneration(j);
  EndGeneration(j, EndReason::kNodeLost, node,
                absl::StrCat("not recovered after a coordinator restart: ", message), out);
}

}  // namespace meshd::coordinator
