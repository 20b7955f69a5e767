// KvStore (see kv_store.h).
#include "daemon/coordinator/kv_store.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshd::coordinator {

void KvStore::Wake(const std::string& key, Completions& out) {
  auto [begin, end] = getters_.equal_range(key);
  for (auto it = begin; it != end; ++it) {
    out.push_back([done = std::move(it->second.done), value = values_[key]] { done(value); });
  }
  getters_.erase(begin, end);
}

void KvStore::Set(const std::string& key, std::string value, Completions& out) {
  values_[key] = std::move(value);
  Wake(key, out);
}

void KvStore::Get(const std::string& key, bool wait, absl::Time deadline, BytesDone done,
                  Completions& out) {
  if (auto it = values_.find(key); it != values_.end()) {
    out.push_back([done = std::move(done), value = it->second] { done(value); });
    return;
  }
  if (!wait) {
    out.push_back([done = std::move(done), key] {
      done(absl::NotFoundError(absl::StrCat("key '", key, "' is not set")));
    });
    return;
  }
  getters_.emplace(key, Getter{std::move(done), deadline});
}

absl::StatusOr<int64_t> KvStore::Add(const std::string& key, int64_t delta, Completions& out) {
  int64_t current = 0;
  if (auto it = values_.find(key); it != values_.end() && !absl::SimpleAtoi(it->second, &current)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key '", key, "' holds a value that is not an integer; KeyAdd needs a counter"));
  }
  current += delta;
  values_[key] = absl::StrCat(current);
  Wake(key, out);
  return current;
}

KvStore::CasResult KvStore::CompareSet(const std::string& key, const std::string* expected,
                                       std::string desired, Completions& out) {
  auto it = values_.find(key);
  const bool match =
      expected == nullptr ? it == values_.end() : it != values_.end() && it->second == *expected;
  if (!match) return {false, it == values_.end() ? "" : it->second};
  values_[key] = desired;
  Wake(key, out);
  return {true, std::move(desired)};
}

void KvStore::Barrier(const std::string& name, const std::string& participant, uint32_t count,
                      absl::Time deadline, StatusDone done, Completions& out) {
  BarrierState& b = barriers_[name];
  if (b.count == 0) b.count = count;
  if (b.count != count) {
    out.push_back([done = std::move(done), name, count, expected = b.count] {
      done(absl::InvalidArgumentError(
          absl::StrCat("barrier '", name, "' was entered with count ", expected, ", not ", count,
                       "; every participant must give the same count")));
    });
    return;
  }
  if (b.done) {
    if (b.arrived.contains(participant)) {
      out.push_back([done = std::move(done)] { done(absl::OkStatus()); });
    } else {
      out.push_back([done = std::move(done), name, count] {
        done(absl::FailedPreconditionError(absl::StrCat(
            "barrier '", name, "' already completed with its ", count, " participants")));
      });
    }
    return;
  }
  b.arrived.insert(participant);
  b.waiters.emplace_back(std::move(done), deadline);
  if (b.arrived.size() >= b.count) {
    b.done = true;
    for (auto& [waiter, unused] : b.waiters) {
      out.push_back([waiter = std::move(waiter)] { waiter(absl::OkStatus()); });
    }
    b.waiters.clear();
  }
}

absl::Time KvStore::ExpireWaits(absl::Time now, Completions& out) {
  absl::Time next = absl::InfiniteFuture();
  for (auto it = getters_.begin(); it != getters_.end();) {
    if (it->second.deadline > now) {
      next = std::min(next, it->second.deadline);
      ++it;
      continue;
    }
    out.push_back([done = std::move(it->second.done), key = it->first] {
      done(absl::DeadlineExceededError(absl::StrCat("key '", key, "' was not set in time")));
    });
    it = getters_.erase(it);
  }
  for (auto& [name, b] : barriers_) {
    for (auto it = b.waiters.begin(); it != b.waiters.end();) {
      if (it->second > now) {
        next = std::min(next, it->second);
        ++it;
        continue;
      }
      out.push_back(
          [done = std::move(it->first), name = name, arrived = b.arrived.size(), count = b.count] {
            done(absl::DeadlineExceededError(absl::StrCat("barrier '", name, "': ", arrived, " of ",
                                                          count, " participants arrived in time")));
          });
      it = b.waiters.erase(it);
    }
  }
  return next;
}

void KvStore::FailAll(const absl::Status& status, Completions& out) {
  for (auto& [key, g] : getters_)
    out.push_back([done = std::move(g.done), status] { done(status); });
  for (auto& [name, b] : barriers_) {
    for (auto& [done, unused] : b.waiters) {
      out.push_back([done = std::move(done), status] { done(status); });
    }
  }
  getters_.clear();
  barriers_.clear();
  values_.clear();
}

size_t KvStore::waiters() const {
  size_t n = getters_.size();
  for (const auto& [name, b] : barriers_) n += b.waiters.size();
  return n;
}

}  // namespace meshd::coordinator
