// The node's side of the group-id exchange (see mesh_relay.h).
#include "daemon/agent/core/mesh_relay.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "daemon/agent/core/mesh_request.h"

namespace meshd::agent {

void MeshRelay::Ask(v1::RankGroupsRequest request, uint32_t local_world, uint32_t first_rank,
                    absl::Time now, absl::Time deadline, Answer<v1::ResolveGroupsResponse> done) {
  absl::Status refused;
  std::optional<Outgoing> send;
  if (request.local_asks() > local_world) {
    return done(absl::InvalidArgumentError(
        absl::StrCat("local_asks ", request.local_asks(), " is above the node's ", local_world,
                     " workers")));
  }
  // The view's key within its root's (a view key is "<root>|<view>", but mesh names may hold any
  // byte: the root's key, length first, keeps two roots' views apart).
  MeshId id{request.job(), request.generation(),
            absl::StrCat(request.root_key().size(), ":", request.root_key(), request.mesh_key())};
  {
    absl::MutexLock lock(&mu_);
    auto ended = ended_.find(request.job());
    if (ended != ended_.end() && ended->second >= request.generation()) {
      refused = absl::AbortedError(absl::StrCat("generation ", request.generation(), " of job '",
                                                request.job(), "' ended; re-attach"));
    } else {
      auto [it, fresh] = collecting_.try_emplace(id);
      Batch& batch = it->second;
      if (fresh) {
        batch.local_world = local_world;
        batch.expected = request.local_asks() != 0 ? request.local_asks() : local_world;
        batch.first_rank = first_rank;
        batch.send_at = now + kBatchWindow;
      }
      const uint32_t local_rank = request.local_rank();
      if (batch.asks.contains(local_rank)) {
        refused = absl::AlreadyExistsError(absl::StrCat("local rank ", local_rank,
                                                        " already asked for mesh '",
                                                        request.mesh_key(), "'"));
      } else {
        batch.asks.emplace(local_rank, Pending{std::move(request), std::move(done), deadline});
        if (batch.asks.size() >= batch.expected) send = Close(it);
      }
    }
  }
  if (!refused.ok()) return done(refused);
  if (send) Send(*std::move(send));
}

absl::Time MeshRelay::LastDeadline(const std::map<uint32_t, Pending>& asks) {
  absl::Time last = absl::InfinitePast();
  for (const auto& [rank, ask] : asks) last = std::max(last, ask.deadline);
  return last;
}

MeshRelay::Outgoing MeshRelay::Close(std::map<MeshId, Batch>::iterator it) {
  Batch& batch = it->second;
  Outgoing out{next_batch_++, LastDeadline(batch.asks), {}};
  std::map<uint32_t, const v1::RankGroupsRequest*> asks;
  for (const auto& [rank, ask] : batch.asks) asks.emplace(rank, &ask.request);
  out.request = MergeRankGroups(node_, batch.first_rank, asks);
  out.request.set_partial_after_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(kPartialAfter)));
  Sent& sent = sent_[out.batch];
  sent.id = it->first;
  sent.asks = std::move(batch.asks);
  sent.request = out.request;
  collecting_.erase(it);
  return out;
}

void MeshRelay::Send(Outgoing out) {
  resender_->Send<v1::ResolveGroupsResponse>(
      "ResolveGroups", out.deadline,
      [this, request = std::move(out.request)](CallOptions options,
                                               Answer<v1::ResolveGroupsResponse> answer) {
        client_->ResolveGroups(request, options, std::move(answer));
      },
      [this, batch = out.batch](absl::StatusOr<v1::ResolveGroupsResponse> answer) {
        Answered(batch, std::move(answer));
      },
      /*resend_when_unregistered=*/true);
}

void MeshRelay::Answered(uint64_t batch, absl::StatusOr<v1::ResolveGroupsResponse> answer) {
  std::vector<std::function<void()>> out;
  std::optional<Outgoing> again;
  {
    absl::MutexLock lock(&mu_);
    auto it = sent_.find(batch);
    if (it == sent_.end()) return;  // answered at the end's grace
    Sent& sent = it->second;
    // Its generation ended meanwhile: ids are of no use, but the coordinator's own refusal is
    // more precise than the end.
    if (sent.ended && answer.status().code() != absl::StatusCode::kFailedPrecondition) {
      answer = *sent.ended;
    }
    if (!answer.ok()) {
      for (auto& [rank, ask] : sent.asks) {
        out.push_back([done = std::move(ask.done), s = answer.status()] { done(s); });
      }
      sent_.erase(it);
    } else {
      // A partial answer names the groups without ids yet; a whole one has every group's.
      absl::flat_hash_set<std::string> missing;
      for (v1::GroupIds& g : *answer->mutable_groups()) {
        if (g.ids_size() == 0) {
          missing.insert(g.key());
        } else {
          std::string key = g.key();
          sent.got.insert_or_assign(std::move(key), std::move(g));
        }
      }
      GroupIndex index;
      index.reserve(sent.got.size());
      for (const auto& [key, g] : sent.got) index.emplace(key, &g);
      for (auto a = sent.asks.begin(); a != sent.asks.end();) {
        const auto& groups = a->second.request.groups();
        const bool complete =
            missing.empty() || std::all_of(groups.begin(), groups.end(), [&](const auto& g) {
              return index.contains(g.key());
            });
        if (!complete) {
          ++a;
          continue;
        }
        out.push_back([done = std::move(a->second.done),
                       mine = AnswerFor(a->second.request, index)]() mutable {
          done(std::move(mine));
        });
        a = sent.asks.erase(a);
      }
      if (sent.asks.empty()) {
        if (!sent.ended) Remember(sent.id, sent.request);
        sent_.erase(it);
      } else {
        // Ask again for the groups still missing, and report again the ids this node minted:
        // answered at once, they reach a coordinator that restarted meanwhile, whose other
        // nodes may still wait for them.
        auto* groups = sent.request.mutable_groups();
        groups->erase(std::remove_if(groups->begin(), groups->end(),
                                     [&](const v1::GroupRequest& g) {
                                       return !missing.contains(g.key()) && g.minted().empty();
                                     }),
                      groups->end());
        // Until the last deadline of the workers still waiting.
        again = Outgoing{batch, LastDeadline(sent.asks), sent.request};
      }
    }
  }
  for (auto& f : out) f();
  if (again) Send(*std::move(again));
}

void MeshRelay::Remember(const MeshId& id, const v1::ResolveGroupsRequest& request) {
  auto [it, fresh] = reported_.try_emplace(id);
  v1::ResolveGroupsRequest& kept = it->second;
  if (fresh) {
    kept.set_job(request.job());
    kept.set_generation(request.generation());
    kept.set_node(request.node());
    kept.set_mesh_key(request.mesh_key());
    kept.set_partial_after_ms(request.partial_after_ms());
  }
  absl::flat_hash_set<uint32_t> ranks;
  for (const auto& r : kept.ranks()) ranks.insert(r.rank());
  for (const auto& r : request.ranks()) {
    if (ranks.insert(r.rank()).second) *kept.add_ranks() = r;
  }
  absl::flat_hash_map<std::string, v1::GroupRequest*> groups;
  for (v1::GroupRequest& g : *kept.mutable_groups()) groups.emplace(g.key(), &g);
  for (const auto& g : request.groups()) {
    // Only what the node minted: asking again for the groups it received would hold the report.
    if (g.minted().empty()) continue;
    auto [slot, first] = groups.emplace(g.key(), nullptr);
    if (first) {
      slot->second = kept.add_groups();
      *slot->second = g;
      continue;
    }
    // Another batch of the view minted other chunks of the same group: keep them all.
    absl::flat_hash_set<uint32_t> indices;
    for (const auto& m : slot->second->minted()) indices.insert(m.index());
    for (const auto& m : g.minted()) {
      if (indices.insert(m.index()).second) *slot->second->add_minted() = m;
    }
  }
}

size_t MeshRelay::Rereport() {
  std::vector<v1::ResolveGroupsRequest> reports;
  uint64_t round;
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    round = ++rereport_round_;
    for (const auto& [id, request] : reported_) reports.push_back(request);
    delay = kRereportDelay * absl::Uniform(gen_, 1.0, 2.0);
  }
  const size_t n = reports.size();
  if (n == 0) return 0;
  const absl::Time now = clock_->Now();
  timers_->At(now + delay, [this, reports = std::move(reports), until = now + kRereportFor,
                            round]() mutable {
    for (v1::ResolveGroupsRequest& request : reports) RereportOne(std::move(request), until, round);
  });
  return n;
}

void MeshRelay::RereportOne(v1::ResolveGroupsRequest request, absl::Time until, uint64_t round) {
  // Checked before each of the resender's sends: a later registration reports again itself, and
  // an ended generation needs no report.
  auto call = [this, request, round](CallOptions options,
                                     Answer<v1::ResolveGroupsResponse> answer) {
    {
      absl::MutexLock lock(&mu_);
      auto ended = ended_.find(request.job());
      if (round != rereport_round_ ||
          (ended != ended_.end() && ended->second >= request.generation())) {
        return answer(absl::CancelledError("reported again by a later registration, or ended"));
      }
    }
    client_->ResolveGroups(request, options, std::move(answer));
  };
  // The workers have their ids: the answer matters only while the coordinator still recovers the
  // generation (UNAVAILABLE past the resender's attempts). A NOT_FOUND is not sent again after a
  // registration: every registration reports again by itself.
  auto done = [this, request, until, round](absl::StatusOr<v1::ResolveGroupsResponse> r) mutable {
    if (r.status().code() != absl::StatusCode::kUnavailable || clock_->Now() >= until) return;
    RereportOne(std::move(request), until, round);
  };
  resender_->Send<v1::ResolveGroupsResponse>("ResolveGroups", until, std::move(call),
                                             std::move(done), /*resend_when_unregistered=*/false);
}

void MeshRelay::End(const std::string& job, uint64_t generation, const absl::Status& why) {
  std::vector<Answer<v1::ResolveGroupsResponse>> answer;
  {
    absl::MutexLock lock(&mu_);
    uint64_t& ended = ended_[job];
    ended = std::max(ended, generation);
    for (auto it = reported_.lower_bound(MeshId{job, 0, ""});
         it != reported_.end() && std::get<0>(it->first) == job &&
         std::get<1>(it->first) <= generation;) {
      it = reported_.erase(it);
    }
    for (auto it = collecting_.lower_bound(MeshId{job, 0, ""});
         it != collecting_.end() && std::get<0>(it->first) == job &&
         std::get<1>(it->first) <= generation;) {
      for (auto& [rank, ask] : it->second.asks) answer.push_back(std::move(ask.done));
      it = collecting_.erase(it);
    }
    // Sent ones wait for the coordinator's answer (or kEndGrace: see Expire), unless the agent is
    // stopping (CANCELLED): then nothing will answer them.
    for (auto it = sent_.begin(); it != sent_.end();) {
      const auto& [j, g, key] = it->second.id;
      if (j != job || g > generation) {
        ++it;
      } else if (why.code() == absl::StatusCode::kCancelled) {
        for (auto& [rank, ask] : it->second.asks) answer.push_back(std::move(ask.done));
        it = sent_.erase(it);
      } else {
        if (!it->second.ended) it->second.ended = why;
        ++it;
      }
    }
  }
  for (auto& done : answer) done(why);
}

void MeshRelay::Expire(absl::Time now) {
  std::vector<std::function<void()>> out;
  std::vector<Outgoing> send;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = collecting_.begin(); it != collecting_.end();) {
      Batch& batch = it->second;
      const auto& [job, generation, id_key] = it->first;
      const std::string key =
          batch.asks.empty() ? id_key : batch.asks.begin()->second.request.mesh_key();
      for (auto a = batch.asks.begin(); a != batch.asks.end();) {
        if (a->second.deadline > now) {
          ++a;
          continue;
        }
        out.push_back([done = std::move(a->second.done),
                       msg = absl::StrCat("only ", batch.asks.size(), " of ", batch.expected,
                                          " local workers of job '", job, "' asked for mesh '",
                                          key, "' in time")] {
          done(absl::DeadlineExceededError(msg));
        });
        a = batch.asks.erase(a);
      }
      if (batch.asks.empty()) {
        it = collecting_.erase(it);
      } else if (batch.send_at <= now) {
        send.push_back(Close(it++));
      } else {
        ++it;
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    for (auto it = sent_.begin(); it != sent_.end();) {
      Sent& sent = it->second;
      if (!sent.ended) {
        ++it;
        continue;
      }
      if (sent.answer_by == absl::InfiniteFuture()) sent.answer_by = now + kEndGrace;
      if (sent.answer_by > now) {
        ++it;
        continue;
      }
      for (auto& [rank, ask] : sent.asks) {
        out.push_back([done = std::move(ask.done), why = *sent.ended] { done(why); });
      }
      it = sent_.erase(it);
    }
  }
  for (auto& f : out) f();
  for (Outgoing& o : send) Send(std::move(o));
}

}  // namespace meshd::agent
