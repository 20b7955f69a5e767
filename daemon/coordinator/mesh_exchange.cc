// MeshExchange (see mesh_exchange.h).
#include "daemon/coordinator/mesh_exchange.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/domain/quote.h"

namespace meshd::coordinator {

std::string RankRanges(const std::vector<uint32_t>& r) {
  constexpr size_t kMaxRanges = 8;
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < r.size() && parts.size() < kMaxRanges) {
    size_t j = i;
    while (j + 1 < r.size() && r[j + 1] == r[j] + 1) ++j;
    parts.push_back(j == i ? absl::StrCat(r[i]) : absl::StrCat(r[i], "-", r[j]));
    i = j + 1;
  }
  std::string out = absl::StrJoin(parts, ",");
  if (i < r.size()) absl::StrAppend(&out, ",... (", r.size(), " ranks)");
  return out;
}

void MeshExchange::Fail(const absl::Status& status, Completions& out) {
  failed_ = status;
  for (Waiter& w : waiters_) out.push_back([done = std::move(w.done), status] { done(status); });
  waiters_.clear();
}

void MeshExchange::Answer(Waiter& w, Completions& out) {
  std::vector<SharedGroupIds> answer;
  answer.reserve(w.groups.size());
  for (GroupEntry* entry : w.groups) {
    const std::string& key = entry->first;
    Group& group = entry->second;
    if (group.answer != nullptr) {
      answer.push_back(group.answer);
      continue;
    }
    const std::vector<std::optional<std::string>>& slots = group.slots;
    auto g = std::make_shared<GroupIds>(GroupIds{key, {}});
    g->ids.reserve(slots.size());
    for (size_t i = 0; i < slots.size(); ++i) {
      if (!slots[i]) {
        auto why = mint_errors_.find(key);
        const absl::Status missing = absl::FailedPreconditionError(absl::StrCat(
            "mesh '", mesh_key_, "' of job '", job_, "': group '", key, "' has no id for chunk ", i,
            why != mint_errors_.end()
                ? absl::StrCat(": its leader could not mint one: ", why->second)
                : absl::StrCat(": its leader (the chunk's first member) did not ask for this "
                               "group, or asked with another number of ids per group")));
        out.push_back([done = std::move(w.done), missing] { done(missing); });
        return;
      }
      g->ids.push_back(*slots[i]);
    }
    group.answer = std::move(g);
    answer.push_back(group.answer);
  }
  ++counters_->groups_answered;
  for (const SharedGroupIds& g : answer) counters_->ids_relayed += g->ids.size();
  out.push_back([done = std::move(w.done), answer = std::move(answer)] { done(answer); });
}

const absl::StatusOr<MintRules>& MeshExchange::RulesFor(const std::string& fingerprint) {
  if (!rules_ || rules_fingerprint_ != fingerprint) {
    rules_fingerprint_ = fingerprint;
    rules_ = MintRules::Create(fingerprint, mesh_key_, world_size_,
                               absl::StrCat("mesh '", mesh_key_, "' of job '", job_, "'"));
  }
  return *rules_;
}

void MeshExchange::Report(const std::string& node, const std::vector<RankSpec>& ranks,
                          std::vector<GroupRequest> groups, absl::Time deadline, GroupsDone done,
                          Completions& out) {
  auto reject = [&](absl::Status s) { out.push_back([done = std::move(done), s] { done(s); }); };
  if (failed_) return reject(*failed_);
  for (const RankSpec& r : ranks) {
    if (r.rank >= world_size_) {
      return reject(absl::InvalidArgumentError(absl::StrCat(
          "node '", node, "' reports rank ", r.rank, " for a world of ", world_size_, " ranks")));
    }
  }
  // Validate the whole request before recording any of it: a rejected report leaves no trace.
  for (const GroupRequest& g : groups) {
    if (g.key.empty() || g.key.size() > KvStore::kMaxKeyBytes || g.num_ids < 1 ||
        g.num_ids > kMaxIdsPerGroup) {
      return reject(absl::InvalidArgumentError(absl::StrCat(
          "group key ", domain::Quote(g.key), " must be 1-1024 bytes with 1-", kMaxIdsPerGroup,
          " ids")));
    }
    auto known = ids_.find(g.key);
    if (known != ids_.end() && known->second.slots.size() != g.num_ids) {
      return reject(
          absl::InvalidArgumentError(absl::StrCat("group ", domain::Quote(g.key), " asked with ", g.num_ids,
                                                  " ids after ", known->second.slots.size())));
    }
    for (const auto& [index, id] : g.minted) {
      if (index >= g.num_ids || id.size() != kIdBytes) {
        return reject(absl::InvalidArgumentError(
            absl::StrCat("group '", g.key, "': minted id ", index, " must be one of ", g.num_ids,
                         " and ", kIdBytes, " bytes (got ", id.size(), ")")));
      }
    }
  }
  if (!groups.empty()) {
    // Who may ask for and mint which ids follows from the mesh the ranks asked for. A report whose
    // spec differs from the recorded one (or whose ranks differ) fails the exchange below, when
    // one of those ranks is new: none of its groups is recorded; with only old ranks it is refused.
    const std::string* spec = specs_.empty() ? nullptr : &specs_.begin()->first;
    bool differs = false, mismatch = false;
    for (const RankSpec& r : ranks) {
      if (spec == nullptr) spec = &r.fingerprint;
      if (r.fingerprint == *spec) continue;
      differs = true;
      if (!reported_[r.rank]) mismatch = true;
    }
    if (mismatch) {
      groups.clear();
    } else if (differs) {
      return reject(absl::FailedPreconditionError(absl::StrCat(
          "node '", node, "' reported its ranks of mesh '", mesh_key_, "' of job '", job_,
          "' again as another mesh than ", specs_.begin()->second.first)));
    } else {
      const absl::StatusOr<MintRules>& rules = RulesFor(*spec);
      if (!rules.ok()) return reject(rules.status());
      if (absl::Status s = rules->Check(node, ranks, groups); !s.ok()) return reject(s);
    }
  }
  for (const GroupRequest& g : groups) {
    if (g.minted.empty()) continue;
    auto known = ids_.find(g.key);
    if (known == ids_.end()) continue;
    for (const auto& [index, id] : g.minted) {
      if (known->second.slots[index] && *known->second.slots[index] != id) {
        return reject(absl::InvalidArgumentError(
            absl::StrCat("group '", g.key, "': chunk ", index,
                         " was minted again with another id; its leader mints it once")));
      }
    }
  }
  Waiter waiter{{}, std::move(done), deadline};
  waiter.groups.reserve(groups.size());
  for (GroupRequest& g : groups) {
    GroupEntry& entry = *ids_.try_emplace(std::move(g.key)).first;
    auto& slots = entry.second.slots;
    slots.resize(g.num_ids);
    if (!g.mint_error.empty()) mint_errors_.emplace(entry.first, g.mint_error);
    for (auto& [index, id] : g.minted) slots[index] = std::move(id);
    waiter.groups.push_back(&entry);
  }
  for (const RankSpec& r : ranks) {
    if (reported_[r.rank]) continue;  // a retry
    reported_[r.rank] = true;
    ++reported_count_;
    auto& [desc, asked] = specs_[r.fingerprint];
    if (desc.empty()) desc = r.description;
    asked.push_back(r.rank);
  }
  waiters_.push_back(std::move(waiter));

  if (specs_.size() > 1) {
    std::vector<std::string> who;
    for (auto& [fp, entry] : specs_) {
      std::sort(entry.second.begin(), entry.second.end());
      who.push_back(absl::StrCat("ranks ", RankRanges(entry.second), " asked for ", entry.first));
    }
    return Fail(absl::FailedPreconditionError(absl::StrCat(
                    "ranks of job '", job_, "' asked for different meshes as mesh '", mesh_key_,
                    "': ", absl::StrJoin(who, "; "),
                    ". Every rank must build the same mesh under the same name (or order)")),
                out);
  }
  if (reported_count_ < world_size_) return;
  for (Waiter& w : waiters_) Answer(w, out);
  waiters_.clear();
}

absl::Time MeshExchange::ExpireWaits(absl::Time now, Completions& out) {
  absl::Time next = absl::InfiniteFuture();
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->deadline > now) {
      next = std::min(next, it->deadline);
      ++it;
      continue;
    }
    std::vector<uint32_t> missing;
    for (uint32_t r = 0; r < world_size_ && missing.size() < 64; ++r) {
      if (!reported_[r]) missing.push_back(r);
    }
    out.push_back(
        [done = std::move(it->done),
         msg = absl::StrCat("mesh '", mesh_key_, "' of job '", job_, "': ", reported_count_, " of ",
                            world_size_, " ranks asked for it in time; missing ranks ",
                            RankRanges(missing))] { done(absl::DeadlineExceededError(msg)); });
    it = waiters_.erase(it);
  }
  return next;
}

void MeshExchange::FailAll(const absl::Status& status, Completions& out) { Fail(status, out); }

}  // namespace meshd::coordinator
