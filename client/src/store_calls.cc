// ClientImpl's Key* calls: the job's key-value store (TCPStore's semantics), each one call to the
// agent (a wait or check of more keys than one call names: one call per kMaxWaitKeys), resent
// while a wait outlasts the servers' --max-wait. Keys and values are checked against the
// protocol's limits before anything is sent. Errors name the keys asked for.
// Thread-safety: see client_impl.h; these calls take no lock of the client's beyond health().
#include <algorithm>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/src/client_impl.h"
#include "client/src/interrupter.h"
#include "daemon/domain/limits.h"
#include "daemon/domain/quote.h"
#include "daemon/domain/validation.h"

namespace meshd::client_internal {
namespace {

// "set key 'k'", "wait for keys 'a', 'b' and 3 more" (domain::Quote: each cut to 64 bytes
// between characters, bytes that are not UTF-8 as \xNN).
std::string OneKey(absl::string_view verb, absl::string_view key) {
  return absl::StrCat(verb, " key ", domain::Quote(key));
}
std::string Keys(absl::string_view verb, const std::vector<std::string>& keys) {
  return absl::StrCat(verb, keys.size() == 1 ? " key " : " keys ", domain::QuoteList(keys));
}

// The store calls that wait (KeyGet is always sent with wait).
template <typename Req>
constexpr bool kWaits =
    std::is_same_v<Req, v1::KeyGetRequest> || std::is_same_v<Req, v1::KeyWaitRequest>;

// Each of `checks` in turn; the first error, said as the call's.
absl::Status Checked(absl::string_view what, const std::string& job,
                     std::initializer_list<absl::Status> checks) {
  for (const absl::Status& s : checks) {
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("cannot ", what, " of job '", job, "': ",
                                                 s.message()));
    }
  }
  return absl::OkStatus();
}

// `keys` cut into the parts one wait or check may name.
std::vector<std::vector<std::string>> Parts(const std::vector<std::string>& keys) {
  std::vector<std::vector<std::string>> parts;
  for (size_t i = 0; i < keys.size(); i += domain::kMaxWaitKeys) {
    const size_t end = std::min(keys.size(), i + domain::kMaxWaitKeys);
    parts.emplace_back(keys.begin() + static_cast<std::ptrdiff_t>(i),
                       keys.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return parts;
}

}  // namespace

template <typename Req>
Req ClientImpl::Scoped() const {
  Req req;
  req.set_job(options_.job);
  req.set_generation(placement_.generation);
  return req;
}

template <typename Req, typename Resp>
absl::Status ClientImpl::Call(absl::string_view what, absl::Duration timeout,
                              grpc::Status (v1::Agent::Stub::*method)(grpc::ClientContext*,
                                                                      const Req&, Resp*),
                              const Req& req, Resp* resp, absl::Time deadline) {
  if (absl::Status h = health(); !h.ok()) return h;
  if (timeout <= absl::ZeroDuration()) {
    return absl::DeadlineExceededError(
        absl::StrCat("cannot ", what, ": the store's timeout is not positive"));
  }
  if (deadline == absl::InfiniteFuture()) deadline = absl::Now() + timeout;
  grpc::Status s;
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    InterruptibleCall interruptible(options_.interrupter.get(), &ctx);
    s = (stub_.get()->*method)(&ctx, req, resp);
    // The servers hold a wait for at most their --max-wait (10 minutes): a longer wait (torch's
    // store timeout is 30 minutes) is sent again until its own deadline.
    if (!kWaits<Req> || s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED ||
        absl::Now() + absl::Milliseconds(50) >= deadline) {
      break;
    }
  }
  if (s.ok()) return absl::OkStatus();
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::DeadlineExceededError(absl::StrCat(
        "cannot ", what, " of job '", options_.job, "' within ", absl::FormatDuration(timeout),
        s.error_message().empty() ? "" : ": ", s.error_message()));
  }
  return FromGrpc(s, absl::StrCat("cannot ", what, " of job '", options_.job, "'"));
}

absl::Status ClientImpl::KeySet(const std::string& key, const std::string& value,
                                absl::Duration timeout) {
  if (absl::Status s = Checked(OneKey("set", key), options_.job,
                               {domain::ValidateKey(key), domain::ValidateValue(value)});
      !s.ok())
    return s;
  v1::KeySetRequest req = Scoped<v1::KeySetRequest>();
  req.set_key(key);
  req.set_value(value);
  v1::KeySetResponse resp;
  return Call(OneKey("set", key), timeout, &v1::Agent::Stub::KeySet, req, &resp);
}

absl::StatusOr<std::string> ClientImpl::KeyGet(const std::string& key, absl::Duration timeout) {
  if (absl::Status s = Checked(OneKey("get", key), options_.job, {domain::ValidateKey(key)});
      !s.ok())
    return s;
  v1::KeyGetRequest req = Scoped<v1::KeyGetRequest>();
  req.set_key(key);
  req.set_wait(true);
  v1::KeyGetResponse resp;
  if (absl::Status s = Call(OneKey("get", key), timeout, &v1::Agent::Stub::KeyGet, req, &resp);
      !s.ok())
    return s;
  return std::move(*resp.mutable_value());
}

absl::StatusOr<int64_t> ClientImpl::KeyAdd(const std::string& key, int64_t delta,
                                           absl::Duration timeout) {
  if (absl::Status s = Checked(OneKey("add to", key), options_.job, {domain::ValidateKey(key)});
      !s.ok())
    return s;
  v1::KeyAddRequest req = Scoped<v1::KeyAddRequest>();
  req.set_key(key);
  req.set_delta(delta);
  v1::KeyAddResponse resp;
  if (absl::Status s = Call(OneKey("add to", key), timeout, &v1::Agent::Stub::KeyAdd, req, &resp);
      !s.ok())
    return s;
  return resp.value();
}

absl::StatusOr<std::string> ClientImpl::KeyCompareSet(const std::string& key,
                                                      const std::string& expected,
                                                      const std::string& desired,
                                                      absl::Duration timeout, bool* swapped) {
  if (absl::Status s = Checked(OneKey("compare-set", key), options_.job,
                               {domain::ValidateKey(key),
                                domain::ValidateCompareSet(expected, desired)});
      !s.ok())
    return s;
  const absl::Time deadline = absl::Now() + timeout;
  // TCPStore: an empty `expected` matches an absent key, and an empty value.
  v1::KeyCompareSetRequest req = Scoped<v1::KeyCompareSetRequest>();
  req.set_key(key);
  req.set_expected(expected);
  req.set_expect_absent(expected.empty());
  req.set_desired(desired);
  v1::KeyCompareSetResponse resp;
  if (absl::Status s = Call(OneKey("compare-set", key), timeout, &v1::Agent::Stub::KeyCompareSet,
                            req, &resp, deadline);
      !s.ok()) {
    return s;
  }
  if (!resp.swapped() && expected.empty() && resp.present() && resp.value().empty()) {
    req.set_expect_absent(false);  // set to "": compare with "" itself
    if (absl::Status s = Call(OneKey("compare-set", key), timeout,
                              &v1::Agent::Stub::KeyCompareSet, req, &resp, deadline);
        !s.ok()) {
      return s;
    }
  }
  if (swapped != nullptr) *swapped = resp.swapped();
  if (!resp.present()) return expected;  // absent and not swapped: TCPStore answers `expected`
  return std::move(*resp.mutable_value());
}

template <typename Req, typename Resp>
absl::Status ClientImpl::InParts(absl::string_view verb, const std::vector<std::string>& keys,
                                 absl::Duration timeout,
                                 grpc::Status (v1::Agent::Stub::*method)(grpc::ClientContext*,
                                                                         const Req&, Resp*),
                                 const std::function<bool(const Resp&)>& more) {
  if (keys.empty()) return health();  // TCPStore: no keys are all set at once
  for (const std::string& k : keys) {
    if (absl::Status s = Checked(Keys(verb, keys), options_.job, {domain::ValidateKey(k)});
        !s.ok())
      return s;
  }
  // More keys than one call names: the parts in turn, within the one timeout (a key of an
  // earlier part deleted meanwhile goes unnoticed).
  const absl::Time deadline = absl::Now() + timeout;
  for (const std::vector<std::string>& part : Parts(keys)) {
    Req req = Scoped<Req>();
    for (const std::string& k : part) req.add_keys(k);
    Resp resp;
    if (absl::Status s = Call(Keys(verb, part), timeout, method, req, &resp, deadline); !s.ok())
      return s;
    if (!more(resp)) break;
  }
  return absl::OkStatus();
}

absl::Status ClientImpl::KeyWait(const std::vector<std::string>& keys, absl::Duration timeout) {
  return InParts<v1::KeyWaitRequest, v1::KeyWaitResponse>(
      "wait for", keys, timeout, &v1::Agent::Stub::KeyWait,
      [](const v1::KeyWaitResponse&) { return true; });
}

absl::StatusOr<bool> ClientImpl::KeyCheck(const std::vector<std::string>& keys,
                                          absl::Duration timeout) {
  bool all = true;
  absl::Status s = InParts<v1::KeyCheckRequest, v1::KeyCheckResponse>(
      "check", keys, timeout, &v1::Agent::Stub::KeyCheck,
      [&all](const v1::KeyCheckResponse& r) { return all = r.all_set(); });
  if (!s.ok()) return s;
  return all;
}

absl::StatusOr<bool> ClientImpl::KeyDelete(const std::string& key, absl::Duration timeout) {
  if (absl::Status s = Checked(OneKey("delete", key), options_.job, {domain::ValidateKey(key)});
      !s.ok())
    return s;
  v1::KeyDeleteRequest req = Scoped<v1::KeyDeleteRequest>();
  req.set_key(key);
  v1::KeyDeleteResponse resp;
  if (absl::Status s =
          Call(OneKey("delete", key), timeout, &v1::Agent::Stub::KeyDelete, req, &resp);
      !s.ok())
    return s;
  return resp.deleted();
}

absl::StatusOr<int64_t> ClientImpl::KeyCount(absl::Duration timeout) {
  v1::KeyCountRequest req = Scoped<v1::KeyCountRequest>();
  v1::KeyCountResponse resp;
  if (absl::Status s = Call("count the keys", timeout, &v1::Agent::Stub::KeyCount, req, &resp);
      !s.ok())
    return s;
  return resp.count();
}

}  // namespace meshd::client_internal
