// The node's side of the group-id exchange (see mesh_relay.h).
#include "daemon/agent/core/mesh_relay.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/agent/core/mesh_request.h"

namespace meshd::agent {

void MeshRelay::Ask(v1::RankGroupsRequest request, uint32_t local_world, uint32_t first_rank,
                    absl::Time deadline, Answer<v1::ResolveGroupsResponse> done) {
  absl::Status refused;
  std::optional<v1::ResolveGroupsRequest> send;
  absl::Time send_by = deadline;
  MeshId id{request.job(), request.generation(), request.mesh_key()};
  {
    absl::MutexLock lock(&mu_);
    auto ended = ended_.find(request.job());
    if (ended != ended_.end() && ended->second >= request.generation()) {
      refused = absl::AbortedError(absl::StrCat("generation ", request.generation(), " of job '",
                                                request.job(), "' ended; re-attach"));
    } else {
      Mesh& mesh = meshes_[id];
      mesh.local_world = local_world;
      const uint32_t local_rank = request.local_rank();
      if (mesh.asks.contains(local_rank)) {
        refused = absl::AlreadyExistsError(absl::StrCat("local rank ", local_rank,
                                                        " already asked for mesh '",
                                                        request.mesh_key(), "'"));
      } else {
        mesh.asks.emplace(local_rank, Pending{std::move(request), std::move(done), deadline});
        if (mesh.asks.size() == local_world && !mesh.sent) {
          mesh.sent = true;
          std::map<uint32_t, const v1::RankGroupsRequest*> asks;
          for (const auto& [rank, ask] : mesh.asks) {
            asks.emplace(rank, &ask.request);
            send_by = std::max(send_by, ask.deadline);
          }
          send = MergeRankGroups(node_, first_rank, asks);
        }
      }
    }
  }
  if (!refused.ok()) return done(refused);
  if (send) Send(id, send_by, *std::move(send));
}

void MeshRelay::Send(const MeshId& id, absl::Time deadline, v1::ResolveGroupsRequest request) {
  resender_->Send<v1::ResolveGroupsResponse>(
      "ResolveGroups", deadline,
      [this, request = std::move(request)](CallOptions options,
                                           Answer<v1::ResolveGroupsResponse> answer) {
        client_->ResolveGroups(request, options, std::move(answer));
      },
      [this, id](absl::StatusOr<v1::ResolveGroupsResponse> answer) {
        Answered(id, std::move(answer));
      },
      /*resend_when_unregistered=*/true);
}

void MeshRelay::Answered(const MeshId& id, absl::StatusOr<v1::ResolveGroupsResponse> answer) {
  std::map<uint32_t, Pending> asks;
  {
    absl::MutexLock lock(&mu_);
    auto it = meshes_.find(id);
    if (it == meshes_.end()) return;  // ended meanwhile: answered then
    asks = std::move(it->second.asks);
    meshes_.erase(it);
  }
  if (!answer.ok()) {
    for (auto& [rank, ask] : asks) ask.done(answer.status());
    return;
  }
  const GroupIndex groups = IndexGroups(*answer);
  for (auto& [rank, ask] : asks) ask.done(AnswerFor(ask.request, groups));
}

void MeshRelay::End(const std::string& job, uint64_t generation, const absl::Status& why) {
  std::vector<Answer<v1::ResolveGroupsResponse>> answer;
  {
    absl::MutexLock lock(&mu_);
    uint64_t& ended = ended_[job];
    ended = std::max(ended, generation);
    for (auto it = meshes_.lower_bound(MeshId{job, 0, ""});
         it != meshes_.end() && std::get<0>(it->first) == job &&
         std::get<1>(it->first) <= generation;) {
      for (auto& [rank, ask] : it->second.asks) answer.push_back(std::move(ask.done));
      it = meshes_.erase(it);
    }
  }
  for (auto& done : answer) done(why);
}

void MeshRelay::Expire(absl::Time now) {
  std::vector<std::function<void()>> out;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = meshes_.begin(); it != meshes_.end();) {
      Mesh& mesh = it->second;
      if (mesh.sent) {  // the coordinator enforces the deadline
        ++it;
        continue;
      }
      const auto& [job, generation, key] = it->first;
      for (auto a = mesh.asks.begin(); a != mesh.asks.end();) {
        if (a->second.deadline > now) {
          ++a;
          continue;
        }
        out.push_back([done = std::move(a->second.done),
                       msg = absl::StrCat("only ", mesh.asks.size(), " of ", mesh.local_world,
                                          " local workers of job '", job, "' asked for mesh '",
                                          key, "' in time")] {
          done(absl::DeadlineExceededError(msg));
        });
        a = mesh.asks.erase(a);
      }
      it = mesh.asks.empty() ? meshes_.erase(it) : std::next(it);
    }
  }
  for (auto& f : out) f();
}

}  // namespace meshd::agent
