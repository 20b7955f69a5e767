// KvStore::Batch: several operations on a generation's store in one call (see kv_store.h), and the
// holding of a batch whose operations all wait.
#include <algorithm>
#include <iterator>
#include <set>

#include "absl/strings/str_cat.h"
#include "daemon/coordinator/kv_store.h"
#include "daemon/domain/validation.h"

namespace meshd::coordinator {

size_t KvStore::AnswerBytes(const KvOp& op) const {
  if (op.keys.empty()) return 0;
  auto it = values_.find(op.keys.front());
  const size_t stored = it == values_.end() ? 0 : it->second.size();
  switch (op.kind) {
    case KvOp::Kind::kGet:
      return stored;
    case KvOp::Kind::kCompareSet:
      return std::max(stored, op.value.size());
    default:
      return 0;
  }
}

bool KvStore::RunOp(KvOp& op, KvOpResult& r, Completions& out) {
  using Kind = KvOp::Kind;
  const bool many = op.kind == Kind::kWait || op.kind == Kind::kCheck;
  if (many) {
    r.status = domain::ValidateKeys(op.keys);
  } else if (op.kind != Kind::kCount) {
    r.status = op.keys.size() == 1 ? domain::ValidateKey(op.keys.front())
                                   : absl::InvalidArgumentError("the operation names no key");
  }
  if (!r.status.ok()) return true;
  switch (op.kind) {
    case Kind::kSet:
      r.status = domain::ValidateValue(op.value);
      if (r.status.ok()) r.status = Set(op.keys.front(), std::move(op.value), out);
      return true;
    case Kind::kGet: {
      auto it = values_.find(op.keys.front());
      if (it != values_.end()) {
        r.value = it->second;
        return true;
      }
      if (op.wait) return false;
      r.status = KeyNotSet(op.keys.front());
      return true;
    }
    case Kind::kAdd: {
      absl::StatusOr<int64_t> v = Add(op.keys.front(), op.delta, out);
      r.status = v.status();
      if (v.ok()) r.number = *v;
      return true;
    }
    case Kind::kCompareSet: {
      r.status = domain::ValidateCompareSet(op.expected ? *op.expected : "", op.value);
      if (!r.status.ok()) return true;
      absl::StatusOr<CasResult> c = CompareSet(
          op.keys.front(), op.expected ? &*op.expected : nullptr, std::move(op.value), out);
      r.status = c.status();
      if (c.ok()) {
        r.yes = c->swapped;
        r.value = std::move(c->value);
        r.present = c->present;
      }
      return true;
    }
    case Kind::kWait:
      return Check(op.keys);
    case Kind::kCheck:
      r.yes = Check(op.keys);
      return true;
    case Kind::kDelete:
      if (deferred_wakes_ != nullptr) {
        // A set earlier in the batch wakes its waiters before the key goes, as apart it would.
        std::vector<std::string>* deferred = deferred_wakes_;
        auto it = std::find(deferred->begin(), deferred->end(), op.keys.front());
        if (it != deferred->end()) {
          deferred->erase(it);
          deferred_wakes_ = nullptr;
          Wake(op.keys.front(), out);
          deferred_wakes_ = deferred;
        }
      }
      r.yes = Delete(op.keys.front());
      return true;
    case Kind::kCount:
      r.number = Count();
      return true;
  }
  return true;
}

void KvStore::Batch(std::vector<KvOp> ops, absl::Time deadline, BatchDone done,
                    Completions& out) {
  std::vector<KvOpResult> results(ops.size());
  bool answer = false;
  size_t bytes = 0;
  std::vector<std::string> woken;
  deferred_wakes_ = &woken;
  // The operations that do not wait first, in order, then the waiting ones: they come from
  // different workers (a worker waits for each answer), so a wait behind a set of its key in the
  // same batch is satisfied by it instead of coming back pending.
  bool full = false;
  for (const bool waits : {false, true}) {
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].Waits() != waits) continue;
      const size_t more = AnswerBytes(ops[i]);
      full = full || (bytes > 0 && bytes + more > kMaxBatchAnswerBytes);
      if (full) {  // the answer is full: the rest are not run
        results[i].pending = true;
        continue;
      }
      if (RunOp(ops[i], results[i], out)) {
        answer = true;
        bytes += results[i].value.size();
      } else {
        results[i].pending = true;
      }
    }
  }
  deferred_wakes_ = nullptr;
  for (const std::string& key : woken) Wake(key, out);
  if (answer) {
    out.push_back([done = std::move(done), results = std::move(results)]() mutable {
      done(std::move(results));
    });
    return;
  }
  // Every operation waits and none is satisfied: hold them (each counts as a wait).
  if (absl::Status s = RoomToWait(ops.size()); !s.ok()) {
    out.push_back([done = std::move(done), s] { done(s); });
    return;
  }
  const uint64_t id = next_waiter_++;
  HeldBatch held;
  for (const KvOp& op : ops) {
    std::set<std::string>& missing = held.missing.emplace_back();
    for (const std::string& k : op.keys) {
      if (!values_.contains(k)) missing.insert(k);
    }
    held.registered.insert(missing.begin(), missing.end());
  }
  for (const std::string& k : held.registered) waiting_.emplace(k, id);
  held_ops_ += ops.size();
  held.ops = std::move(ops);
  held.done = std::move(done);
  held.deadline = deadline;
  held_.emplace(id, std::move(held));
}

void KvStore::AnswerHeld(uint64_t id, const std::string& woken, Completions& out) {
  auto it = held_.find(id);
  if (it == held_.end()) return;
  HeldBatch& held = it->second;
  // A wait is satisfied once each of its keys was set, even if one went again since (as a
  // KeyWait's); a get once its key is set. Keys set whose wake is yet to come (a batch's) count.
  held.registered.erase(woken);
  std::vector<KvOpResult> results(held.ops.size());
  bool answer = false;
  size_t bytes = 0;
  for (size_t i = 0; i < held.ops.size(); ++i) {
    held.missing[i].erase(woken);
    for (auto k = held.missing[i].begin(); k != held.missing[i].end();) {
      k = values_.contains(*k) ? held.missing[i].erase(k) : std::next(k);
    }
    const KvOp& op = held.ops[i];
    bool satisfied = held.missing[i].empty();
    const std::string* value = nullptr;
    if (satisfied && op.kind == KvOp::Kind::kGet) {
      auto v = values_.find(op.keys.front());
      satisfied = v != values_.end();
      if (satisfied) {
        value = &v->second;
      } else {  // gone again: wait for it anew
        held.missing[i].insert(op.keys.front());
        if (held.registered.insert(op.keys.front()).second) waiting_.emplace(op.keys.front(), id);
      }
    }
    if (!satisfied || (value != nullptr && bytes > 0 &&
                       bytes + value->size() > kMaxBatchAnswerBytes)) {
      results[i].pending = true;
      continue;
    }
    answer = true;
    if (value != nullptr) {
      results[i].value = *value;
      bytes += value->size();
    }
  }
  if (!answer) return;  // a wait of several keys still misses some
  Unwait(id, held.registered);
  held_ops_ -= held.ops.size();
  out.push_back([done = std::move(held.done), results = std::move(results)]() mutable {
    done(std::move(results));
  });
  held_.erase(it);
}

}  // namespace meshd::coordinator
