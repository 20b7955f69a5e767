// KvStore (see kv_store.h).
#include "daemon/coordinator/kv_store.h"

#include <algorithm>
#include <cstddef>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "daemon/domain/quote.h"

namespace meshd::coordinator {

std::string KvStore::NotSet(absl::string_view what) const {
  return absl::StrCat(what, missing_note_);
}

absl::Status KvStore::KeyNotSet(const std::string& key) const {
  return absl::NotFoundError(NotSet(absl::StrCat("key ", domain::Quote(key), " is not set")));
}

absl::Status KvStore::Room(size_t more_keys, size_t more_bytes) const {
  const size_t keys = values_.size() + barriers_.size();
  if (more_keys > 0 && keys + more_keys > limits_.max_keys) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the generation's key-value store holds ", keys, " keys and barriers, its limit "
        "(the coordinator's --kv-max-keys ", limits_.max_keys, "); delete keys it no longer needs"));
  }
  if (bytes_ + more_bytes > limits_.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the generation's key-value store holds ", bytes_, " bytes; ", more_bytes,
        " more would pass its limit (the coordinator's --kv-max-bytes ", limits_.max_bytes,
        "); delete keys it no longer needs or store less"));
  }
  return absl::OkStatus();
}

absl::Status KvStore::RoomToWait(size_t more) const {
  if (waiters() + more > limits_.max_waits) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the generation's key-value store already holds ", waiters(),
        " waits, its limit (the coordinator's --kv-max-waits ", limits_.max_waits, ")"));
  }
  return absl::OkStatus();
}

absl::Status KvStore::Put(const std::string& key, std::string value) {
  auto it = values_.find(key);
  if (it == values_.end()) {
    if (absl::Status s = Room(1, key.size() + value.size()); !s.ok()) return s;
    bytes_ += key.size() + value.size();
    values_.emplace(key, std::move(value));
    return absl::OkStatus();
  }
  if (value.size() > it->second.size()) {
    if (absl::Status s = Room(0, value.size() - it->second.size()); !s.ok()) return s;
  }
  bytes_ = bytes_ - it->second.size() + value.size();
  it->second = std::move(value);
  return absl::OkStatus();
}

void KvStore::Wake(const std::string& key, Completions& out) {
  if (deferred_wakes_ != nullptr) {  // a batch runs: its keys wake its waiters once it has run
    deferred_wakes_->push_back(key);
    return;
  }
  auto value = values_.find(key);
  if (value == values_.end()) return;  // deleted again before its wake (never in a batch)
  auto [begin, end] = getters_.equal_range(key);
  for (auto it = begin; it != end; ++it) {
    out.push_back([done = std::move(it->second.done), v = value->second] { done(v); });
  }
  getters_.erase(begin, end);
  // Taken out first: answering a held batch removes its entries of other keys.
  auto [wbegin, wend] = waiting_.equal_range(key);
  std::vector<uint64_t> ids;
  for (auto it = wbegin; it != wend; ++it) ids.push_back(it->second);
  waiting_.erase(wbegin, wend);
  for (uint64_t id : ids) {
    auto w = key_waiters_.find(id);
    if (w == key_waiters_.end()) {
      AnswerHeld(id, key, out);
      continue;
    }
    w->second.missing.erase(key);
    if (!w->second.missing.empty()) continue;
    out.push_back([done = std::move(w->second.done)] { done(absl::OkStatus()); });
    key_waiters_.erase(w);
  }
}

void KvStore::Unwait(uint64_t id, const std::set<std::string>& keys) {
  for (const std::string& k : keys) {
    auto [b, e] = waiting_.equal_range(k);
    for (auto w = b; w != e; ++w) {
      if (w->second == id) {
        waiting_.erase(w);
        break;
      }
    }
  }
}

void KvStore::Wait(const std::vector<std::string>& keys, absl::Time deadline, StatusDone done,
                   Completions& out) {
  KeyWaiter w;
  for (const std::string& k : keys) {
    if (!values_.contains(k)) w.missing.insert(k);
  }
  if (w.missing.empty()) {
    out.push_back([done = std::move(done)] { done(absl::OkStatus()); });
    return;
  }
  if (absl::Status s = RoomToWait(); !s.ok()) {
    out.push_back([done = std::move(done), s] { done(s); });
    return;
  }
  const uint64_t id = next_waiter_++;
  for (const std::string& k : w.missing) waiting_.emplace(k, id);
  w.keys = keys.size();
  w.done = std::move(done);
  w.deadline = deadline;
  key_waiters_.emplace(id, std::move(w));
}

bool KvStore::Check(const std::vector<std::string>& keys) const {
  for (const std::string& k : keys) {
    if (!values_.contains(k)) return false;
  }
  return true;
}

bool KvStore::Delete(const std::string& key) {
  auto it = values_.find(key);
  if (it == values_.end()) return false;
  bytes_ -= it->first.size() + it->second.size();
  values_.erase(it);
  return true;
}

absl::Status KvStore::Set(const std::string& key, std::string value, Completions& out) {
  if (absl::Status s = Put(key, std::move(value)); !s.ok()) return s;
  Wake(key, out);
  return absl::OkStatus();
}

void KvStore::Get(const std::string& key, bool wait, absl::Time deadline, BytesDone done,
                  Completions& out) {
  if (auto it = values_.find(key); it != values_.end()) {
    out.push_back([done = std::move(done), value = it->second] { done(value); });
    return;
  }
  if (!wait) {
    out.push_back([done = std::move(done), status = KeyNotSet(key)] { done(status); });
    return;
  }
  if (absl::Status s = RoomToWait(); !s.ok()) {
    out.push_back([done = std::move(done), s] { done(s); });
    return;
  }
  getters_.emplace(key, Getter{std::move(done), deadline});
}

absl::StatusOr<int64_t> KvStore::Add(const std::string& key, int64_t delta, Completions& out) {
  int64_t current = 0;
  if (auto it = values_.find(key); it != values_.end() && !absl::SimpleAtoi(it->second, &current)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key ", domain::Quote(key), " holds a value that is not an integer; KeyAdd needs a counter"));
  }
  if (__builtin_add_overflow(current, delta, &current)) {
    return absl::OutOfRangeError(absl::StrCat("adding ", delta, " to key ", domain::Quote(key),
                                              " overflows a 64-bit counter"));
  }
  if (absl::Status s = Put(key, absl::StrCat(current)); !s.ok()) return s;
  Wake(key, out);
  return current;
}

absl::StatusOr<KvStore::CasResult> KvStore::CompareSet(const std::string& key,
                                                       const std::string* expected,
                                                       std::string desired, Completions& out) {
  auto it = values_.find(key);
  const bool match =
      expected == nullptr ? it == values_.end() : it != values_.end() && it->second == *expected;
  if (!match) {
    if (it == values_.end()) return CasResult{false, "", false};
    return CasResult{false, it->second, true};
  }
  if (absl::Status s = Put(key, desired); !s.ok()) return s;
  Wake(key, out);
  return CasResult{true, std::move(desired), true};
}

void KvStore::Barrier(const std::string& name, const std::string& participant, uint32_t count,
                      absl::Time deadline, StatusDone done, Completions& out) {
  auto found = barriers_.find(name);
  absl::Status room = RoomToWait();
  if (room.ok() && found == barriers_.end()) room = Room(1, name.size() + participant.size());
  if (room.ok() && found != barriers_.end() && !found->second.arrived.contains(participant)) {
    room = Room(0, participant.size());
  }
  if (!room.ok()) {
    out.push_back([done = std::move(done), room] { done(room); });
    return;
  }
  BarrierState& b = barriers_[name];
  if (b.count == 0) {
    b.count = count;
    bytes_ += name.size();
  }
  if (b.count != count) {
    out.push_back([done = std::move(done), name, count, expected = b.count] {
      done(absl::InvalidArgumentError(
          absl::StrCat("barrier ", domain::Quote(name), " was entered with count ", expected, ", not ", count,
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
            "barrier ", domain::Quote(name), " already completed with its ", count, " participants")));
      });
    }
    return;
  }
  if (b.arrived.insert(participant).second) bytes_ += participant.size();
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
    out.push_back([done = std::move(it->second.done),
                   message = NotSet(absl::StrCat("key ", domain::Quote(it->first),
                                                 " was not set in time"))] {
      done(absl::DeadlineExceededError(message));
    });
    it = getters_.erase(it);
  }
  for (auto it = key_waiters_.begin(); it != key_waiters_.end();) {
    if (it->second.deadline > now) {
      next = std::min(next, it->second.deadline);
      ++it;
      continue;
    }
    out.push_back([done = std::move(it->second.done),
                   message = NotSet(absl::StrCat(it->second.missing.size(), " of ",
                                                 it->second.keys, " keys were not set in time: ",
                                                 domain::QuoteList(it->second.missing)))] {
      done(absl::DeadlineExceededError(message));
    });
    Unwait(it->first, it->second.missing);
    it = key_waiters_.erase(it);
  }
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->second.deadline > now) {
      next = std::min(next, it->second.deadline);
      ++it;
      continue;
    }
    std::set<std::string> missing;
    for (const auto& keys : it->second.missing) missing.insert(keys.begin(), keys.end());
    out.push_back([done = std::move(it->second.done),
                   message = NotSet(absl::StrCat("none of ", it->second.ops.size(),
                                                 " waiting operations was satisfied in time: ",
                                                 domain::QuoteList(missing), " not set"))] {
      done(absl::DeadlineExceededError(message));
    });
    Unwait(it->first, it->second.registered);
    held_ops_ -= it->second.ops.size();
    it = held_.erase(it);
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
            done(absl::DeadlineExceededError(absl::StrCat("barrier ", domain::Quote(name), ": ", arrived, " of ",
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
  for (auto& [id, w] : key_waiters_)
    out.push_back([done = std::move(w.done), status] { done(status); });
  for (auto& [id, h] : held_) out.push_back([done = std::move(h.done), status] { done(status); });
  held_.clear();
  held_ops_ = 0;
  getters_.clear();
  key_waiters_.clear();
  waiting_.clear();
  barriers_.clear();
  values_.clear();
  bytes_ = 0;
  missing_note_.clear();  // the next generation's store starts whole
}

domain::StoreView KvStore::View(size_t shown) const {
  domain::StoreView v;
  v.keys = values_.size();
  v.bytes = bytes_;
  v.waiting = waiters();
  if (shown == 0) return v;
  // Operations waiting, by key: held gets, key waits (one per key they miss), held batches' (one
  // per operation and key it misses). Views of the keys held here: nothing is copied but the
  // `shown` keys answered.
  absl::flat_hash_map<absl::string_view, uint32_t> waiting;
  for (const auto& [key, getter] : getters_) ++waiting[key];
  for (const auto& [key, id] : waiting_) {
    if (key_waiters_.contains(id)) ++waiting[key];
  }
  for (const auto& [id, held] : held_) {
    for (const std::set<std::string>& keys : held.missing) {
      for (const std::string& key : keys) ++waiting[key];
    }
  }
  std::vector<std::pair<absl::string_view, uint32_t>> all(waiting.begin(), waiting.end());
  const size_t n = std::min(shown, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                    [](const auto& a, const auto& b) {
                      return a.second != b.second ? a.second > b.second : a.first < b.first;
                    });
  for (size_t i = 0; i < n; ++i) v.most_waited.push_back({std::string(all[i].first), all[i].second});
  return v;
}

size_t KvStore::waiters() const {
  size_t n = getters_.size() + key_waiters_.size() + held_ops_;
  for (const auto& [name, b] : barriers_) n += b.waiters.size();
  return n;
}

}  // namespace meshd::coordinator
