// The key-value store relayed for local workers (see store_relay.h).
#include "daemon/agent/core/store_relay.h"

#include <optional>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/domain/validation.h"

namespace meshd::agent {
namespace {

// Per request type: the coordinator method's name.
template <typename Req>
struct KeyMethod;
#define MESHD_KEY_METHOD(Name)                          \
  template <>                                           \
  struct KeyMethod<v1::Name##Request> {                 \
    static constexpr const char* kName = #Name;         \
  };
MESHD_KEY_METHOD(KeySet)
MESHD_KEY_METHOD(KeyGet)
MESHD_KEY_METHOD(KeyAdd)
MESHD_KEY_METHOD(KeyCompareSet)
MESHD_KEY_METHOD(KeyWait)
MESHD_KEY_METHOD(KeyCheck)
MESHD_KEY_METHOD(KeyDelete)
MESHD_KEY_METHOD(KeyCount)
#undef MESHD_KEY_METHOD

// Length-prefixed parts, so that no two different calls share a signature.
void AppendPart(std::string& out, absl::string_view part) {
  absl::StrAppend(&out, part.size(), ":", part);
}

// "kind|" and the request's job, generation and key: what identical calls on one key share.
template <typename Req>
std::string KeySignature(absl::string_view kind, const Req& req) {
  std::string sig = absl::StrCat(kind, "|");
  AppendPart(sig, req.job());
  AppendPart(sig, absl::StrCat(req.generation()));
  AppendPart(sig, req.key());
  return sig;
}

// The signature of a call that may share a coordinator call with identical ones; empty when it
// may not (only waits share: KeyGet with wait, KeyWait).
template <typename Req>
std::string ShareSignature(const Req&) {
  return "";
}
template <>
std::string ShareSignature(const v1::KeyGetRequest& req) {
  return req.wait() ? KeySignature("get", req) : "";
}
template <>
std::string ShareSignature(const v1::KeyWaitRequest& req) {
  std::string sig = "wait|";
  AppendPart(sig, req.job());
  AppendPart(sig, absl::StrCat(req.generation()));
  for (const std::string& k : req.keys()) AppendPart(sig, k);
  return sig;
}

std::string QuotedKey(absl::string_view key) {
  return absl::StrCat("'", key.size() <= 64 ? key : key.substr(0, 64),
                      key.size() <= 64 ? "" : "...", "'");
}
std::string WaitedKeys(const v1::KeyGetRequest& req) {
  return absl::StrCat("key ", QuotedKey(req.key()));
}
std::string WaitedKeys(const v1::KeyWaitRequest& req) {
  std::string out = req.keys_size() == 1 ? "key " : "keys ";
  for (int i = 0; i < req.keys_size() && i < 4; ++i)
    absl::StrAppend(&out, i ? ", " : "", QuotedKey(req.keys(i)));
  if (req.keys_size() > 4) absl::StrAppend(&out, " and ", req.keys_size() - 4, " more");
  return out;
}

template <typename Req, typename Resp>
constexpr bool kIs = std::is_same_v<Req, Resp>;

}  // namespace

template <>
std::map<std::string, StoreRelay::SharedWait<v1::KeyGetResponse>>& StoreRelay::SharedWaits() {
  return shared_gets_;
}
template <>
std::map<std::string, StoreRelay::SharedWait<v1::KeyWaitResponse>>& StoreRelay::SharedWaits() {
  return shared_key_waits_;
}
template <>
std::map<std::string, StoreRelay::MergedWrites<v1::KeyAddResponse>>& StoreRelay::Merged() {
  return merged_adds_;
}
template <>
std::map<std::string, StoreRelay::MergedWrites<v1::KeySetResponse>>& StoreRelay::Merged() {
  return merged_sets_;
}

template <typename Resp>
void StoreRelay::Expire(absl::Time now, Completions& out) {
  for (auto& [signature, shared] : SharedWaits<Resp>()) {
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
    // An entry left without waiters stays until its coordinator call returns (and erases it).
  }
}

void StoreRelay::ExpireWaiters(absl::Time now) {
  Completions out;
  {
    absl::MutexLock lock(&mu_);
    Expire<v1::KeyGetResponse>(now, out);
    Expire<v1::KeyWaitResponse>(now, out);
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
  constexpr bool kShareable = kIs<Resp, v1::KeyGetResponse> || kIs<Resp, v1::KeyWaitResponse>;
  constexpr bool kMergeable = kIs<Resp, v1::KeyAddResponse> || kIs<Resp, v1::KeySetResponse>;
  constexpr bool kWrite =
      kMergeable || kIs<Resp, v1::KeyCompareSetResponse> || kIs<Resp, v1::KeyDeleteResponse>;
  std::string signature = ShareSignature(req);
  absl::Status scope;
  if constexpr (kMergeable) {
    // Checked here too: a merged set sends only the last value, so a bad one must not hide in it.
    scope = domain::ValidateKey(req.key());
    if constexpr (kIs<Resp, v1::KeySetResponse>) {
      if (scope.ok()) scope = domain::ValidateValue(req.value());
    }
  }
  if (scope.ok()) scope = scope_(req.job(), req.generation(), uid);
  if constexpr (kWrite) {
    // Answered: later gets of local workers must see it (read your writes).
    done = [this, job = req.job(), done = std::move(done)](absl::StatusOr<Resp> r) {
      WriteAnswered(job);
      done(std::move(r));
    };
  }
  bool first = true;
  std::string merge_signature;
  {
    absl::MutexLock lock(&mu_);
    ++counts_.calls;
    if constexpr (kIs<Resp, v1::KeyGetResponse>) {
      if (scope.ok() && !signature.empty()) absl::StrAppend(&signature, "#", writes_[req.job()]);
    }
    if constexpr (kShareable) {
      if (scope.ok() && !signature.empty()) {
        auto& shared = SharedWaits<Resp>()[signature];
        if (shared.what.empty()) shared.what = WaitedKeys(req);
        first = shared.waiters.empty();
        if (!first) ++counts_.shared;
        shared.waiters.push_back({std::move(done), deadline});
      }
    }
    if constexpr (kMergeable) {
      if (scope.ok()) {
        merge_signature = KeySignature("write", req);
        auto& merged = Merged<Resp>()[merge_signature];
        typename MergedWrites<Resp>::Writer w;
        if constexpr (kIs<Resp, v1::KeyAddResponse>) {
          w.delta = req.delta();
        } else {
          w.value = std::move(*req.mutable_value());
        }
        w.done = std::move(done);
        w.deadline = deadline;
        merged.queued.push_back(std::move(w));
        first = !merged.in_flight;
        merged.in_flight = true;
        if (!first) ++counts_.shared;
      }
    }
  }
  if (!scope.ok()) return done(scope);
  if constexpr (kShareable) {
    if (!signature.empty()) {
      if (first) SendSharedWait<Req, Resp>(signature, std::move(req), deadline);
      return;
    }
  }
  if constexpr (kMergeable) {
    if (first) SendMergedWrites<Req, Resp>(merge_signature, std::move(req));
    return;
  }
  SendOne<Req, Resp>(std::move(req), deadline, std::move(done), kWrite ? Resender::kSendOnce : 0);
}

template <typename Req, typename Resp>
void StoreRelay::SendOne(Req req, absl::Time deadline, Answer<Resp> done, int attempt) {
  resender_->Send<Resp>(
      KeyMethod<Req>::kName, deadline,
      [this, req = std::move(req)](CallOptions options, Answer<Resp> answer) {
        client_->Key(req, options, std::move(answer));
      },
      std::move(done), /*resend_when_unregistered=*/false, attempt);
}

template <typename Req, typename Resp>
void StoreRelay::SendMergedWrites(const std::string& signature, Req request) {
  using Writer = typename MergedWrites<Resp>::Writer;
  constexpr bool kAdd = kIs<Resp, v1::KeyAddResponse>;
  std::vector<Writer> batch;
  int64_t sum = 0;
  absl::Time deadline = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = Merged<Resp>().find(signature);
    if (it == Merged<Resp>().end()) return;
    MergedWrites<Resp>& m = it->second;
    if (m.queued.empty()) {
      Merged<Resp>().erase(it);
      return;
    }
    // Adds: a run of deltas of one sign (so that every partial sum lies between the counter and
    // its final value: if the merged add does not overflow, none of the adds one by one would
    // have) whose sum fits int64; at least one. One alone after a merged add overflowed the
    // counter, so that each gets the answer it would have got by itself.
    size_t take = m.queued.size();
    if (m.alone > 0) {
      take = 1;
      --m.alone;
      if constexpr (kAdd) sum = m.queued.front().delta;
    } else if constexpr (kAdd) {
      take = 0;
      int sign = 0;
      for (const Writer& w : m.queued) {
        const int s = (w.delta > 0) - (w.delta < 0);
        int64_t next = 0;
        if (take > 0 &&
            ((s != 0 && sign != 0 && s != sign) || __builtin_add_overflow(sum, w.delta, &next))) {
          break;
        }
        sum = take == 0 ? w.delta : next;
        if (s != 0) sign = s;
        ++take;
      }
    }
    batch.assign(std::make_move_iterator(m.queued.begin()),
                 std::make_move_iterator(m.queued.begin() + take));
    m.queued.erase(m.queued.begin(), m.queued.begin() + take);
    for (const Writer& w : batch) deadline = std::max(deadline, w.deadline);
  }
  if constexpr (kAdd) {
    request.set_delta(sum);
  } else {
    request.set_value(batch.back().value);
  }
  Req again = request;  // the job, generation and key for the next batch
  SendOne<Req, Resp>(
      std::move(request), deadline,
      [this, signature, again = std::move(again), batch = std::move(batch),
       sum](absl::StatusOr<Resp> r) mutable {
        (void)sum;  // read by adds only (clang: an unused capture in the set's instantiation)
        if constexpr (kAdd) {
          if (r.status().code() == absl::StatusCode::kOutOfRange && batch.size() > 1) {
            // The sum overflowed where the adds one by one might not all have: send them again,
            // one per call, in their order, ahead of the later ones.
            {
              absl::MutexLock lock(&mu_);
              MergedWrites<Resp>& m = Merged<Resp>()[signature];
              m.queued.insert(m.queued.begin(), std::make_move_iterator(batch.begin()),
                              std::make_move_iterator(batch.end()));
              m.alone += batch.size();
            }
            return SendMergedWrites<Req, Resp>(signature, std::move(again));
          }
          int64_t value = r.ok() ? r->value() - sum : 0;
          for (Writer& w : batch) {
            if (!r.ok()) {
              w.done(r.status());
              continue;
            }
            value += w.delta;
            Resp each;
            each.set_value(value);
            w.done(std::move(each));
          }
        } else {
          for (Writer& w : batch) {
            if (r.ok()) {
              w.done(Resp());
            } else {
              w.done(r.status());
            }
          }
        }
        SendMergedWrites<Req, Resp>(signature, std::move(again));
      },
      kAdd ? Resender::kSendOnce : 0);
}

template <typename Req, typename Resp>
void StoreRelay::SendSharedWait(const std::string& signature, Req req, absl::Time deadline) {
  Req copy = req;
  SendOne<Req, Resp>(
      std::move(req), deadline,
      [this, signature, copy = std::move(copy)](absl::StatusOr<Resp> r) mutable {
        std::vector<typename SharedWait<Resp>::Waiter> answer;
        std::optional<absl::Time> again;  // the deadline of a call for the waiters left
        {
          absl::MutexLock lock(&mu_);
          auto it = SharedWaits<Resp>().find(signature);
          if (it == SharedWaits<Resp>().end()) return;
          auto& waiters = it->second.waiters;
          const absl::Time now = clock_->Now();
          // A wait that expired in the coordinator ends only the workers whose own deadline has
          // come; one that joined later with a later deadline waits on in a new call.
          if (r.status().code() == absl::StatusCode::kDeadlineExceeded) {
            std::vector<typename SharedWait<Resp>::Waiter> left;
            for (auto& w : waiters) {
              if (w.deadline > now + absl::Milliseconds(5)) {
                if (!again || w.deadline < *again) again = w.deadline;
                left.push_back(std::move(w));
              } else {
                answer.push_back(std::move(w));
              }
            }
            waiters = std::move(left);
          } else {
            answer = std::move(waiters);
            waiters.clear();
          }
          if (waiters.empty()) SharedWaits<Resp>().erase(it);
        }
        for (auto& w : answer) w.done(r);
        if (again) SendSharedWait<Req, Resp>(signature, std::move(copy), *again);
      });
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
