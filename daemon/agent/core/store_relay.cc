// The key-value store relayed for local workers (see store_relay.h).
#include "daemon/agent/core/store_relay.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/domain/limits.h"
#include "daemon/domain/quote.h"
#include "daemon/domain/validation.h"

namespace meshd::agent {
namespace {

// Per request type: its response, the coordinator method's name, and its place in a KeyOp and in
// a KeyOpResult.
template <typename Req>
struct Op;
#define MESHD_KEY_OP(Name, field)                                                           \
  template <>                                                                               \
  struct Op<v1::Name##Request> {                                                            \
    using Resp = v1::Name##Response;                                                        \
    static constexpr const char* kName = #Name;                                             \
    static v1::Name##Request* In(v1::KeyOp& op) { return op.mutable_##field(); }            \
    static const v1::Name##Request& Of(const v1::KeyOp& op) { return op.field(); }          \
    static bool Has(const v1::KeyOpResult& r) { return r.has_##field(); }                  \
    static v1::Name##Response* Out(v1::KeyOpResult& r) { return r.mutable_##field(); }      \
  };
MESHD_KEY_OP(KeySet, set)
MESHD_KEY_OP(KeyGet, get)
MESHD_KEY_OP(KeyAdd, add)
MESHD_KEY_OP(KeyCompareSet, compare_set)
MESHD_KEY_OP(KeyWait, wait)
MESHD_KEY_OP(KeyCheck, check)
MESHD_KEY_OP(KeyDelete, delete_key)
MESHD_KEY_OP(KeyCount, count)
#undef MESHD_KEY_OP

template <typename Req, typename Other>
constexpr bool kIs = std::is_same_v<Req, Other>;

// A batch's bytes: the coordinator's limit less room for the job and generation; each operation
// counts its framing too (kOpFraming).
constexpr size_t kBatchBytes = domain::kMaxBatchBytes - 1024;
constexpr size_t kOpFraming = 8;
// A waiter whose deadline is this close is ended rather than sent again.
constexpr absl::Duration kDeadlineSlack = absl::Milliseconds(5);

// Length-prefixed parts, so that no two different calls share a signature.
void AppendPart(std::string& out, absl::string_view part) {
  absl::StrAppend(&out, part.size(), ":", part);
}

// The signature identical waits share; empty for a call that does not wait.
template <typename Req>
std::string ShareSignature(const Req&) {
  return "";
}
template <>
std::string ShareSignature(const v1::KeyGetRequest& req) {
  if (!req.wait()) return "";
  std::string sig = "get|";
  AppendPart(sig, req.job());
  AppendPart(sig, absl::StrCat(req.generation()));
  AppendPart(sig, req.key());
  return sig;
}
template <>
std::string ShareSignature(const v1::KeyWaitRequest& req) {
  std::string sig = "wait|";
  AppendPart(sig, req.job());
  AppendPart(sig, absl::StrCat(req.generation()));
  for (const std::string& k : req.keys()) AppendPart(sig, k);
  return sig;
}

// The coordinator's checks of one operation, made before it joins a batch: a bad call gets its
// own INVALID_ARGUMENT at once instead of making its whole batch too large or unreadable.
absl::Status Validate(const v1::KeySetRequest& r) {
  absl::Status s = domain::ValidateKey(r.key());
  return s.ok() ? domain::ValidateValue(r.value()) : s;
}
absl::Status Validate(const v1::KeyGetRequest& r) { return domain::ValidateKey(r.key()); }
absl::Status Validate(const v1::KeyAddRequest& r) { return domain::ValidateKey(r.key()); }
absl::Status Validate(const v1::KeyCompareSetRequest& r) {
  absl::Status s = domain::ValidateKey(r.key());
  return s.ok() ? domain::ValidateCompareSet(r.expected(), r.desired()) : s;
}
absl::Status Validate(const v1::KeyWaitRequest& r) {
  return domain::ValidateKeys({r.keys().begin(), r.keys().end()});
}
absl::Status Validate(const v1::KeyCheckRequest& r) {
  return domain::ValidateKeys({r.keys().begin(), r.keys().end()});
}
absl::Status Validate(const v1::KeyDeleteRequest& r) { return domain::ValidateKey(r.key()); }
absl::Status Validate(const v1::KeyCountRequest&) { return absl::OkStatus(); }

template <typename Req>
std::string WaitedKeys(const Req&) {
  return "";
}
template <>
std::string WaitedKeys(const v1::KeyGetRequest& req) {
  return absl::StrCat("key ", domain::Quote(req.key()));
}
template <>
std::string WaitedKeys(const v1::KeyWaitRequest& req) {
  return absl::StrCat(req.keys_size() == 1 ? "key " : "keys ", domain::QuoteList(req.keys()));
}

// A worker's answer from its operation's result.
template <typename Req>
std::function<void(absl::StatusOr<v1::KeyOpResult>)> Typed(Answer<typename Op<Req>::Resp> done) {
  return [done = std::move(done)](absl::StatusOr<v1::KeyOpResult> r) {
    if (!r.ok()) return done(r.status());
    if (r->code() != 0) {
      return done(absl::Status(static_cast<absl::StatusCode>(r->code()), r->message()));
    }
    if (!Op<Req>::Has(*r)) {
      return done(absl::InternalError(absl::StrCat(
          "the coordinator answered a ", Op<Req>::kName, " in a batch with another kind's result")));
    }
    done(std::move(*Op<Req>::Out(*r)));
  };
}

// An operation's result from its own call's answer.
template <typename Req>
absl::StatusOr<v1::KeyOpResult> AsResult(absl::StatusOr<typename Op<Req>::Resp> r) {
  if (!r.ok()) return r.status();
  v1::KeyOpResult out;
  *Op<Req>::Out(out) = *std::move(r);
  return out;
}

std::string LaneKey(const std::string& job, uint64_t generation) {
  std::string key;
  AppendPart(key, job);
  absl::StrAppend(&key, generation);
  return key;
}

}  // namespace

void StoreRelay::ExpireWaiters(absl::Time now) {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [signature, shared] : shared_) {
      auto& waiters = shared.waiters;
      for (auto it = waiters.begin(); it != waiters.end();) {
        if (it->deadline > now) {
          ++it;
          continue;
        }
        out.push_back([done = std::move(it->done), what = shared.what] {
          done(absl::DeadlineExceededError(absl::StrCat(what, " not set in time")));
        });
        it = waiters.erase(it);
      }
      // An entry left without waiters goes when its operation comes back.
    }
    // Calls still queued behind a batch in flight (a coordinator slow to answer) end at their
    // deadline too.
    for (auto& [key, lane] : lanes_) {
      for (auto it = lane.queued.begin(); it != lane.queued.end();) {
        if (!it->shared.empty() || it->deadline > now) {
          ++it;
          continue;
        }
        out.push_back([done = std::move(it->done)] {
          done(absl::DeadlineExceededError(
              "the coordinator did not take the call in time (the agent's calls before it were "
              "still unanswered)"));
        });
        it = lane.queued.erase(it);
      }
    }
  }
  for (auto& f : out) f();
}

StoreRelay::Counts StoreRelay::counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

void StoreRelay::WriteAnswered(const std::string& job) {
  absl::MutexLock lock(&mu_);
  ++writes_[job];
}

template <typename Req, typename Resp>
void StoreRelay::Relay(Req req, absl::Time deadline, Answer<Resp> done,
                       std::optional<uint32_t> uid) {
  static_assert(kIs<Resp, typename Op<Req>::Resp>);
  constexpr bool kOnce = kIs<Req, v1::KeyAddRequest> || kIs<Req, v1::KeyCompareSetRequest> ||
                         kIs<Req, v1::KeyDeleteRequest>;
  constexpr bool kWrite = kOnce || kIs<Req, v1::KeySetRequest>;
  if (absl::Status scope = scope_(req.job(), req.generation(), uid); !scope.ok()) {
    return done(scope);
  }
  if (absl::Status valid = Validate(req); !valid.ok()) return done(valid);
  if constexpr (kWrite) {
    // Answered: later gets of local workers must see it (read your writes).
    done = [this, job = req.job(), done = std::move(done)](absl::StatusOr<Resp> r) {
      WriteAnswered(job);
      done(std::move(r));
    };
  }
  const std::string job = req.job();
  const uint64_t generation = req.generation();
  std::string signature = ShareSignature(req);
  Pending p;
  p.deadline = deadline;
  p.waits = !signature.empty();
  p.once = kOnce;
  req.clear_job();
  req.clear_generation();
  *Op<Req>::In(p.op) = std::move(req);
  p.bytes = p.op.ByteSizeLong() + kOpFraming;
  OpAnswer answer = Typed<Req>(std::move(done));
  {
    absl::MutexLock lock(&mu_);
    ++counts_.calls;
    if (p.waits) {
      if constexpr (kIs<Req, v1::KeyGetRequest>) absl::StrAppend(&signature, "#", writes_[job]);
      SharedWait& shared = shared_[signature];
      // An entry exists while its operation is queued or in flight (it is erased with it).
      const bool first = shared.what.empty();
      shared.waiters.push_back({std::move(answer), deadline});
      if (!first) {
        ++counts_.shared;
        return;
      }
      shared.what = WaitedKeys(Op<Req>::Of(p.op));
      p.shared = std::move(signature);
    } else {
      p.done = std::move(answer);
    }
  }
  Enqueue(job, generation, std::move(p));
}

void StoreRelay::Enqueue(const std::string& job, uint64_t generation, Pending p) {
  std::string key = LaneKey(job, generation);
  {
    absl::MutexLock lock(&mu_);
    Lane& lane = lanes_[key];
    lane.job = job;
    lane.generation = generation;
    lane.queued.push_back(std::move(p));
  }
  Flush(key);
}

bool StoreRelay::StillWaited(Pending& p) {
  auto it = shared_.find(p.shared);
  if (it == shared_.end()) return false;
  if (it->second.waiters.empty()) {
    shared_.erase(it);
    return false;
  }
  p.deadline = absl::InfinitePast();
  for (const auto& w : it->second.waiters) p.deadline = std::max(p.deadline, w.deadline);
  return true;
}

void StoreRelay::Flush(const std::string& key) {
  while (FlushOnce(key)) {
  }
}

bool StoreRelay::FlushOnce(const std::string& key) {
  std::vector<Pending> batch;
  std::vector<Pending> alone;
  v1::KeyBatchRequest request;
  bool immediate = false, once = false;
  absl::Time deadline = absl::InfiniteFuture();
  std::string job;
  uint64_t generation = 0;
  bool more = false;  // operations left queued (a batch at its limits)
  {
    absl::MutexLock lock(&mu_);
    auto it = lanes_.find(key);
    if (it == lanes_.end()) return false;
    Lane& lane = it->second;
    if (lane.busy || lane.handing_out > 0) return false;
    job = lane.job;
    generation = lane.generation;
    size_t bytes = 0;
    while (!lane.queued.empty() && batch.size() < domain::kMaxBatchOps) {
      Pending& p = lane.queued.front();
      if (!p.shared.empty() && !StillWaited(p)) {  // every waiter has ended
        lane.queued.pop_front();
        continue;
      }
      if (!batch_) {
        alone.push_back(std::move(p));
        lane.queued.pop_front();
        continue;
      }
      if (!batch.empty() && bytes + p.bytes > kBatchBytes) break;
      bytes += p.bytes;
      batch.push_back(std::move(p));
      lane.queued.pop_front();
    }
    if (batch.empty()) {
      if (lane.queued.empty()) lanes_.erase(it);
    } else {
      absl::Time latest = absl::InfinitePast();
      for (const Pending& p : batch) {
        immediate = immediate || !p.waits;
        once = once || p.once;
        latest = std::max(latest, p.deadline);
        deadline = std::min(deadline, p.deadline);
      }
      // A batch that answers at once may take as long as its latest worker allows; a held one
      // comes back by its earliest worker's deadline.
      if (immediate) {
        deadline = latest;
        lane.busy = true;
      }
      request.set_job(job);
      request.set_generation(generation);
      size_t fresh = 0;  // sent for the first time (the others were pending)
      for (Pending& p : batch) {
        *request.add_ops() = p.op;
        if (!p.sent) ++fresh;
        p.sent = true;
      }
      ++counts_.coordinator;
      if (fresh > 0) counts_.shared += fresh - 1;
      more = !lane.queued.empty();
    }
    counts_.coordinator += alone.size();
  }
  for (Pending& p : alone) SendAlone(job, generation, std::move(p));
  if (batch.empty()) return false;
  SendOne<v1::KeyBatchRequest, v1::KeyBatchResponse>(
      std::move(request), deadline,
      [this, key, job, generation, batch = std::move(batch), immediate](
          absl::StatusOr<v1::KeyBatchResponse> r) mutable {
        Answered(key, job, generation, std::move(batch), immediate, std::move(r));
      },
      once ? Resender::kSendOnce : 0);
  // A held batch does not hold the lane: what did not fit in it goes now too.
  return more && !immediate;
}

bool StoreRelay::Finish(Pending& p, absl::StatusOr<v1::KeyOpResult> r, absl::Time now,
                        Completions& out) {
  if (p.shared.empty()) {
    out.push_back([done = std::move(p.done), r = std::move(r)]() mutable { done(std::move(r)); });
    return false;
  }
  auto it = shared_.find(p.shared);
  if (it == shared_.end()) return false;
  auto& waiters = it->second.waiters;
  std::vector<SharedWait::Waiter> answer;
  if (r.status().code() == absl::StatusCode::kDeadlineExceeded) {
    // A wait that expired in the coordinator ends only the workers whose own deadline has come;
    // one that joined later with a later deadline waits on.
    std::vector<SharedWait::Waiter> left;
    for (auto& w : waiters) {
      (w.deadline > now + kDeadlineSlack ? left : answer).push_back(std::move(w));
    }
    waiters = std::move(left);
    r = absl::DeadlineExceededError(absl::StrCat(it->second.what, " not set in time"));
  } else {
    answer = std::move(waiters);
    waiters.clear();
  }
  for (auto& w : answer) {
    out.push_back([done = std::move(w.done), r] { done(r); });
  }
  if (!waiters.empty()) return true;
  shared_.erase(it);
  return false;
}

void StoreRelay::Answered(const std::string& key, const std::string& job, uint64_t generation,
                          std::vector<Pending> batch, bool immediate,
                          absl::StatusOr<v1::KeyBatchResponse> r) {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    const bool unimplemented = r.status().code() == absl::StatusCode::kUnimplemented;
    if (unimplemented) {
      batch_ = false;  // an older coordinator: every call on its own from now on
    } else if (r.ok() && static_cast<size_t>(r->results_size()) != batch.size()) {
      r = absl::InternalError(absl::StrCat("the coordinator answered ", r->results_size(),
                                           " results to a batch of ", batch.size()));
    }
    std::vector<Pending> again;
    for (size_t i = 0; i < batch.size(); ++i) {
      Pending& p = batch[i];
      // Sent again: what a coordinator without KeyBatch did not run, and what is pending.
      bool send_again = unimplemented || (r.ok() && r->results(static_cast<int>(i)).pending());
      if (!send_again) {
        send_again = r.ok() ? Finish(p, std::move(*r->mutable_results(static_cast<int>(i))), now,
                                     out)
                            : Finish(p, r.status(), now, out);
      }
      if (send_again) again.push_back(std::move(p));
    }
    // The lane of a held batch may have gone idle (and been removed) meanwhile.
    Lane& lane = lanes_[key];
    lane.job = job;
    lane.generation = generation;
    lane.queued.insert(lane.queued.begin(), std::make_move_iterator(again.begin()),
                       std::make_move_iterator(again.end()));
    if (immediate) lane.busy = false;
    ++lane.handing_out;
  }
  for (auto& f : out) f();
  {
    absl::MutexLock lock(&mu_);
    --lanes_[key].handing_out;
  }
  Flush(key);
}

void StoreRelay::SendAlone(const std::string& job, uint64_t generation, Pending p) {
  const auto send = [&](auto* kind) {
    using Req = std::remove_pointer_t<decltype(kind)>;
    using Resp = typename Op<Req>::Resp;
    Req req = Op<Req>::Of(p.op);
    req.set_job(job);
    req.set_generation(generation);
    const absl::Time deadline = p.deadline;
    const int attempt = p.once ? Resender::kSendOnce : 0;
    SendOne<Req, Resp>(
        std::move(req), deadline,
        [this, job, generation, p = std::move(p)](absl::StatusOr<Resp> r) mutable {
          Completions out;
          bool again;
          {
            absl::MutexLock lock(&mu_);
            again = Finish(p, AsResult<Req>(std::move(r)), clock_->Now(), out);
            if (again) again = StillWaited(p);
          }
          for (auto& f : out) f();
          if (again) SendAlone(job, generation, std::move(p));
        },
        attempt);
  };
  switch (p.op.op_case()) {
    case v1::KeyOp::kSet:
      return send(static_cast<v1::KeySetRequest*>(nullptr));
    case v1::KeyOp::kGet:
      return send(static_cast<v1::KeyGetRequest*>(nullptr));
    case v1::KeyOp::kAdd:
      return send(static_cast<v1::KeyAddRequest*>(nullptr));
    case v1::KeyOp::kCompareSet:
      return send(static_cast<v1::KeyCompareSetRequest*>(nullptr));
    case v1::KeyOp::kWait:
      return send(static_cast<v1::KeyWaitRequest*>(nullptr));
    case v1::KeyOp::kCheck:
      return send(static_cast<v1::KeyCheckRequest*>(nullptr));
    case v1::KeyOp::kDeleteKey:
      return send(static_cast<v1::KeyDeleteRequest*>(nullptr));
    case v1::KeyOp::kCount:
      return send(static_cast<v1::KeyCountRequest*>(nullptr));
    case v1::KeyOp::OP_NOT_SET:
      break;
  }
}

template <typename Req, typename Resp>
void StoreRelay::SendOne(Req req, absl::Time deadline, Answer<Resp> done, int attempt) {
  const char* name = "KeyBatch";
  if constexpr (!kIs<Req, v1::KeyBatchRequest>) name = Op<Req>::kName;
  resender_->Send<Resp>(
      name, deadline,
      [this, req = std::move(req)](CallOptions options, Answer<Resp> answer) {
        client_->Key(req, options, std::move(answer));
      },
      std::move(done), /*resend_when_unregistered=*/false, attempt);
}

#define MESHD_KEY_RELAY(Name)                                                              \
  template void StoreRelay::Relay<v1::Name##Request, v1::Name##Response>(                 \
      v1::Name##Request, absl::Time, Answer<v1::Name##Response>, std::optional<uint32_t>);
MESHD_KEY_RELAY(KeySet)
MESHD_KEY_RELAY(KeyGet)
MESHD_KEY_RELAY(KeyAdd)
MESHD_KEY_RELAY(KeyCompareSet)
MESHD_KEY_RELAY(KeyWait)
MESHD_KEY_RELAY(KeyCheck)
MESHD_KEY_RELAY(KeyDelete)
MESHD_KEY_RELAY(KeyCount)
#undef MESHD_KEY_RELAY

}  // namespace meshd::agent
