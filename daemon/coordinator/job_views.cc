// JobRounds: the read-only views of the jobs (see job_rounds.h), for GetStatus, ListJobs, GetJob,
// ListNodes and the metrics.
#include "absl/strings/str_cat.h"
#include "daemon/coordinator/job_record.h"
#include "daemon/coordinator/job_rounds.h"
#include "daemon/domain/quote.h"

namespace meshd::coordinator {

JobView JobRounds::ViewOf(const JobRecord& j) const {
  JobView v;
  v.job = j.name;
  v.phase = j.phase;
  v.generation = j.generation;
  v.nodes = j.count;
  v.in_phase = clock_->Now() - j.phase_since;
  if (j.phase == JobPhase::kRunning) {
    v.members = *j.members;
    v.world_size = static_cast<uint32_t>(j.members->size()) * j.local_world;
  } else if (j.phase == JobPhase::kRecovering) {
    v.members = ReportedMembers(j);
    v.world_size = j.recovery->num_nodes * j.local_world;
  } else {
    for (const auto& [node, joiner] : j.joiners) {
      const NodeRegistry::Node& rec = nodes_->Get(node);
      v.members.push_back(Member{node, rec.inventory.hostname, 0, j.local_world, rec.clique});
    }
    for (const std::string& n : j.previous_members) {
      if (!j.joiners.contains(n)) v.missing.push_back(n);
    }
  }
  if (j.last_end) {
    v.has_last_end = true;
    v.last_end = *j.last_end;
  }
  return v;
}

std::vector<JobView> JobRounds::Views() const {
  std::vector<JobView> out;
  for (const auto& [name, job] : jobs_) out.push_back(ViewOf(*job));
  return out;
}

absl::StatusOr<JobView> JobRounds::View(const std::string& job, bool waited_keys) const {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", domain::Quote(job), " does not exist"));
  JobView v = ViewOf(*it->second);
  if (it->second->phase == JobPhase::kRunning) {
    // The store of the running generation: an operator's first look at a start that hangs.
    constexpr size_t kShownWaitedKeys = 8;
    v.has_store = true;
    v.store = it->second->kv.View(waited_keys ? kShownWaitedKeys : 0);
  }
  return v;
}

std::vector<std::string> JobRounds::JobsOf(const std::string& node) const {
  std::vector<std::string> out;
  for (const auto& [name, job] : jobs_) {
    // A recovering generation's reported nodes run it too (its view lists them as members).
    const bool reported = job->phase == JobPhase::kRecovering &&
                          job->recovery->rank_of_node.contains(node);
    if (job->IsMember(node) || reported || job->joiners.contains(node) ||
        job->standby.contains(node)) {
      out.push_back(name);
    }
  }
  return out;
}

void JobRounds::Tally(StatusView& s) const {
  for (const auto& [name, job] : jobs_) {
    // A recovering generation is running on its workers.
    (job->phase == JobPhase::kJoining ? s.jobs_joining : s.jobs_running)++;
    for (const auto* pool : {&job->joiners, &job->standby}) {
      for (const auto& [node, joiner] : *pool) s.waiting.join += joiner.waiters.size();
    }
    s.waiting.kv += job->kv.waiters();
    for (const auto& [key, mesh] : job->meshes) s.waiting.groups += mesh.waiters();
    if (job->groups) s.waiting.groups += job->groups->waiters();
  }
  s.waiting.watch = watchers_.size();
  s.counters = counters_;
}

}  // namespace meshd::coordinator
