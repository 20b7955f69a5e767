// GroupExchange (see group_exchange.h).
#include "daemon/coordinator/group_exchange.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/domain/limits.h"
#include "daemon/domain/quote.h"

namespace meshd::coordinator {

absl::Status GroupExchange::Validate(const std::vector<GroupRequest>& groups) const {
  size_t fresh = 0, fresh_ids = 0, asked_ids = 0;
  absl::flat_hash_set<absl::string_view> seen;
  seen.reserve(groups.size());
  for (const GroupRequest& g : groups) {
    if (g.key.empty() || g.key.size() > domain::kMaxKeyBytes || g.num_ids < 1 ||
        g.num_ids > domain::kMaxIdsPerGroup) {
      return absl::InvalidArgumentError(absl::StrCat("group key ", domain::Quote(g.key),
                                                     " must be 1-", domain::kMaxKeyBytes,
                                                     " bytes with 1-", domain::kMaxIdsPerGroup,
                                                     " ids"));
    }
    if (!seen.insert(g.key).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "group ", domain::Quote(g.key), " is asked for twice in one request; once each"));
    }
    if ((asked_ids += g.num_ids) > kMaxIdsPerRequest) {
      return absl::InvalidArgumentError(absl::StrCat(
          "one request asks for more than ", kMaxIdsPerRequest, " ids in all"));
    }
    auto known = groups_.find(g.key);
    if (known == groups_.end()) {
      ++fresh;
      fresh_ids += g.num_ids;
    }
    if (known != groups_.end() && known->second.slots.size() != g.num_ids) {
      return absl::InvalidArgumentError(absl::StrCat("group ", domain::Quote(g.key), " asked with ",
                                                     g.num_ids, " ids after ",
                                                     known->second.slots.size()));
    }
    std::vector<bool> chunk_seen(g.minted.size() > 1 ? g.num_ids : 0);
    for (const auto& [index, id] : g.minted) {
      if (index >= g.num_ids || id.size() != domain::kIdBytes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "group ", domain::Quote(g.key), ": minted id ", index, " must be one of ", g.num_ids,
            " and ", domain::kIdBytes, " bytes (got ", id.size(), ")"));
      }
      if (!chunk_seen.empty() && chunk_seen[index]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "group ", domain::Quote(g.key), ": chunk ", index, " is minted twice in one request"));
      }
      if (!chunk_seen.empty()) chunk_seen[index] = true;
    }
  }
  if (ids_ + fresh_ids > kMaxIds) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "job '", job_, "': the generation's exchange holds ", ids_, " ids; at most ", kMaxIds));
  }
  if (groups_.size() + fresh > kMaxGroups) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "job '", job_, "': the generation's exchange holds ", groups_.size(),
        " groups; at most ", kMaxGroups, " (build fewer meshes, or reuse their views)"));
  }
  return absl::OkStatus();
}

absl::Status GroupExchange::CheckMints(const std::vector<GroupRequest>& groups) const {
  for (const GroupRequest& g : groups) {
    auto known = groups_.find(g.key);
    if (known == groups_.end()) continue;
    for (const auto& [index, id] : g.minted) {
      if (known->second.slots[index] &&
          *known->second.slots[index] != id) {
        return absl::InvalidArgumentError(
            absl::StrCat("group ", domain::Quote(g.key), ": chunk ", index,
                         " was minted again with another id; its leader mints it once"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status GroupExchange::MintFailed(const std::string& job, const GroupEntry& entry) {
  return absl::FailedPreconditionError(
      absl::StrCat("job '", job, "': group '", entry.first,
                   "' has no NCCL id: its leader could not mint one: ", *entry.second.mint_error));
}

absl::Time GroupExchange::Report(std::vector<GroupRequest> groups,
                                 std::vector<std::vector<uint32_t>> leaders, absl::Time now,
                                 Hold hold, GroupsDone done, Completions& out) {
  if (failed_) {
    out.push_back([done = std::move(done), s = *failed_] { done(s); });
    return absl::InfiniteFuture();
  }
  const uint64_t id = next_waiter_++;
  Waiter& w = waiters_[id];
  w.done = std::move(done);
  w.hold = hold;
  w.arrived = now;
  w.groups.reserve(groups.size());
  std::vector<GroupEntry*> completed;
  for (size_t i = 0; i < groups.size(); ++i) {
    GroupRequest& g = groups[i];
    GroupEntry& entry = *groups_.try_emplace(std::move(g.key)).first;
    Group& group = entry.second;
    if (group.slots.empty()) {
      group.slots.resize(g.num_ids);
      group.leaders = std::move(leaders[i]);
      ids_ += g.num_ids;
    }
    if (group.slots.size() != g.num_ids) continue;  // Validate refuses it; never index past
    const bool was_settled = group.answer != nullptr || group.mint_error.has_value();
    for (auto& [index, bytes] : g.minted) {
      if (group.slots[index]) continue;  // a retry
      group.slots[index] = std::move(bytes);
      ++group.filled;
      last_minted_ = now;
    }
    if (!g.mint_error.empty() && !group.mint_error) group.mint_error = std::move(g.mint_error);
    w.groups.push_back(&entry);
    if (group.filled == group.slots.size() && group.answer == nullptr) {
      auto ids = std::make_shared<GroupIds>(GroupIds{entry.first, {}});
      ids->ids.reserve(group.slots.size());
      for (const auto& slot : group.slots) ids->ids.push_back(*slot);
      group.answer = std::move(ids);
    }
    const bool settled = group.answer != nullptr || group.mint_error.has_value();
    if (!settled) {
      ++w.incomplete;
      group.waiting.push_back(id);
    } else if (!was_settled) {
      completed.push_back(&entry);
    }
  }
  // This waiter's own groups are counted already; the others waiting on what it completed are
  // answered now (it too, below, if nothing is missing).
  for (GroupEntry* entry : completed) Settle(*entry, now, out);
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return absl::InfiniteFuture();
  const bool failed = std::any_of(it->second.groups.begin(), it->second.groups.end(),
                                  [](const GroupEntry* e) { return e->second.mint_error; });
  if (failed || it->second.incomplete == 0) {
    Answer(id, out);
    return absl::InfiniteFuture();
  }
  return std::min(hold.deadline, PartialDue(it->second));
}

void GroupExchange::Settle(GroupEntry& entry, absl::Time now, Completions& out) {
  std::vector<uint64_t> waiting = std::move(entry.second.waiting);
  entry.second.waiting.clear();
  for (uint64_t id : waiting) {
    auto it = waiters_.find(id);
    if (it == waiters_.end()) continue;  // answered or expired
    // Failed, complete, or past its partial answer's time (Answer says which).
    if (entry.second.mint_error || --it->second.incomplete == 0 ||
        PartialDue(it->second) <= now) {
      Answer(id, out);
    }
  }
}

absl::Time GroupExchange::PartialDue(const Waiter& w) const {
  const absl::Duration after = w.hold.partial_after;
  if (after <= absl::ZeroDuration()) return absl::InfiniteFuture();
  return std::min(std::max(w.arrived + after, last_minted_ + after / kQuietShare),
                  w.arrived + kPartialCap * after);
}

void GroupExchange::Answer(uint64_t id, Completions& out) {
  auto it = waiters_.find(id);
  Waiter w = std::move(it->second);
  waiters_.erase(it);
  std::vector<SharedGroupIds> answer;
  answer.reserve(w.groups.size());
  uint64_t ids = 0;
  bool partial = false;
  for (GroupEntry* entry : w.groups) {
    if (entry->second.mint_error) {
      out.push_back([done = std::move(w.done), s = MintFailed(job_, *entry)] { done(s); });
      return;
    }
    if (entry->second.answer == nullptr) {  // a partial answer: named, with no ids
      answer.push_back(std::make_shared<const GroupIds>(GroupIds{entry->first, {}}));
      partial = true;
      continue;
    }
    answer.push_back(entry->second.answer);
    ids += entry->second.answer->ids.size();
  }
  ++(partial ? counters_->partial_answers : counters_->groups_answered);
  counters_->ids_relayed += ids;
  out.push_back([done = std::move(w.done), answer = std::move(answer)] { done(answer); });
}

absl::Time GroupExchange::ExpireWaits(absl::Time now, Completions& out) {
  absl::Time next = absl::InfiniteFuture();
  std::vector<uint64_t> expired, partial;
  for (const auto& [id, w] : waiters_) {
    if (w.hold.deadline <= now) {
      expired.push_back(id);
      continue;
    }
    next = std::min(next, w.hold.deadline);
    const absl::Time due = PartialDue(w);
    if (due > now) {
      next = std::min(next, due);
    } else if (w.incomplete < w.groups.size()) {
      partial.push_back(id);
    } else {
      // Nothing to hand on yet: the group that completes first comes with a mint, after which
      // the answer is due once the exchange is quiet again (or at once past the cap).
      next = std::min(next, now + w.hold.partial_after / kQuietShare);
    }
  }
  for (uint64_t id : partial) Answer(id, out);
  for (uint64_t id : expired) {
    auto it = waiters_.find(id);
    std::vector<std::string> missing;
    for (const GroupEntry* entry : it->second.groups) {
      const Group& g = entry->second;
      if (g.answer != nullptr) continue;
      std::vector<std::string> ranks;
      for (size_t c = 0; c < g.slots.size() && ranks.size() < 8; ++c) {
        if (!g.slots[c]) ranks.push_back(absl::StrCat(g.leaders[c]));
      }
      missing.push_back(absl::StrCat("'", entry->first, "' (minted by rank ",
                                     absl::StrJoin(ranks, ", rank "), ")"));
      if (missing.size() == 8) break;
    }
    out.push_back([done = std::move(it->second.done),
                   msg = absl::StrCat(
                       "job '", job_, "': ", it->second.incomplete, " of ",
                       it->second.groups.size(),
                       " groups asked for have no ids yet: their leaders have not asked for them: ",
                       absl::StrJoin(missing, ", "))] { done(absl::DeadlineExceededError(msg)); });
    waiters_.erase(it);
  }
  return next;
}

void GroupExchange::FailAll(const absl::Status& status, Completions& out) {
  failed_ = status;
  for (auto& [id, w] : waiters_) {
    out.push_back([done = std::move(w.done), status] { done(status); });
  }
  waiters_.clear();
}

}  // namespace meshd::coordinator
