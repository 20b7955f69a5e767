// MeshExchange (see mesh_exchange.h).
#include "daemon/coordinator/mesh_exchange.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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

const absl::StatusOr<MintRules>& MeshExchange::Rules() {
  if (!rules_) {
    rules_ = MintRules::Create(specs_.begin()->first, mesh_key_, world_size_,
                               absl::StrCat("mesh '", mesh_key_, "' of job '", job_, "'"));
  }
  return *rules_;
}

MeshExchange::Recorded MeshExchange::Record(const std::string& node,
                                            const std::vector<RankSpec>& ranks,
                                            Completions& out) {
  if (failed_) return {*failed_, false};
  for (const RankSpec& r : ranks) {
    if (r.rank >= world_size_) {
      return {absl::InvalidArgumentError(absl::StrCat(
                  "node '", node, "' reports rank ", r.rank, " for a world of ", world_size_,
                  " ranks")),
              false};
    }
  }
  // A rank reporting again must report the same spec; a new rank with another spec is a
  // mismatch, recorded (so that the message names who asked for which) and failing the mesh.
  const std::string* spec = specs_.empty() ? nullptr : &specs_.begin()->first;
  bool mismatch = false;
  for (const RankSpec& r : ranks) {
    if (spec == nullptr) spec = &r.fingerprint;
    if (r.fingerprint == *spec) continue;
    if (reported_[r.rank]) {
      return {absl::FailedPreconditionError(absl::StrCat(
                  "node '", node, "' reported its ranks of mesh '", mesh_key_, "' of job '", job_,
                  "' again as another mesh than ", specs_.begin()->second.first)),
              false};
    }
    mismatch = true;
  }
  std::vector<uint32_t> fresh;
  for (const RankSpec& r : ranks) {
    if (reported_[r.rank]) continue;  // a retry
    reported_[r.rank] = true;
    auto& [desc, asked] = specs_[r.fingerprint];
    if (desc.empty()) desc = r.description.substr(0, 512);
    asked.push_back(r.rank);
    fresh.push_back(r.rank);
  }
  if (mismatch) {
    std::vector<std::string> who;
    for (auto& [fp, entry] : specs_) {
      std::sort(entry.second.begin(), entry.second.end());
      who.push_back(absl::StrCat(entry.second.size() == 1 ? "rank " : "ranks ",
                                 RankRanges(entry.second), " asked for ", entry.first));
    }
    const absl::Status status = absl::FailedPreconditionError(absl::StrCat(
        "ranks of job '", job_, "' asked for different meshes as mesh '", mesh_key_, "': ",
        absl::StrJoin(who, "; "),
        ". Every rank must build the same mesh under the same name (or order)"));
    Fail(status, out);
    return {status, answered_};
  }
  if (!fresh.empty() && Rules().ok()) {
    for (uint32_t r : fresh) in_mesh_reported_ += Rules()->InMesh(r) ? 1 : 0;
  }
  return {absl::OkStatus(), false};
}

bool MeshExchange::Complete() {
  return !specs_.empty() && Rules().ok() && in_mesh_reported_ == Rules()->mesh_ranks();
}

std::vector<uint32_t> MeshExchange::Missing(size_t limit) {
  const bool known = !specs_.empty() && Rules().ok();
  std::vector<uint32_t> missing;
  for (uint32_t r = 0; r < world_size_ && missing.size() < limit; ++r) {
    if (!reported_[r] && (!known || Rules()->InMesh(r))) missing.push_back(r);
  }
  return missing;
}

void MeshExchange::HoldCheck(absl::Time deadline, GroupsDone done, Completions& out) {
  if (failed_) {
    out.push_back([done = std::move(done), s = *failed_] { done(s); });
    return;
  }
  if (!specs_.empty() && !Rules().ok()) {
    out.push_back([done = std::move(done), s = Rules().status()] { done(s); });
    return;
  }
  waiters_.push_back(Waiter{std::move(done), deadline});
  if (!Complete()) return;
  answered_ = true;
  for (Waiter& w : waiters_) {
    out.push_back([done = std::move(w.done)] { done(std::vector<SharedGroupIds>{}); });
  }
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
    out.push_back([done = std::move(it->done),
                   msg = absl::StrCat("mesh '", mesh_key_, "' of job '", job_,
                                      "': not every rank of it asked for it in time; missing ranks ",
                                      RankRanges(Missing(64)))] {
      done(absl::DeadlineExceededError(msg));
    });
    it = waiters_.erase(it);
  }
  return next;
}

void MeshExchange::FailAll(const absl::Status& status, Completions& out) { Fail(status, out); }

}  // namespace meshd::coordinator
