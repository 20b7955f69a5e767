// FakeCoordinatorClient: the agent core's CoordinatorClient for unit tests. It records every call
// with its answer callback; the test answers them (OK, an error) in the order it chooses. Shutdown
// answers everything still held CANCELLED, as the gRPC client does.
//
// Thread-safety: thread-safe; callbacks run on the thread that answers (the test's).
#ifndef MESHD_TESTS_UNIT_AGENT_FAKE_COORDINATOR_CLIENT_H_
#define MESHD_TESTS_UNIT_AGENT_FAKE_COORDINATOR_CLIENT_H_

#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "daemon/agent/core/coordinator_client.h"

namespace meshd::agent {

template <typename Req, typename Resp>
struct FakeCall {
  Req request;
  CallOptions options;
  Answer<Resp> done;
};

struct Registration {
  domain::NodeInventory inventory;
  std::vector<domain::RunningJob> running;
};
struct HeartbeatCall {
  std::string node;
  uint64_t incarnation = 0;
};
struct WatchCall {
  std::string job;
  uint64_t generation = 0;
};
struct LeaveCall {
  std::string job;
  uint64_t generation = 0;
  std::string message;
};

struct NodeLeaveCall {
  std::string node;
  uint64_t incarnation = 0;
  std::string message;
};

class FakeCoordinatorClient final : public CoordinatorClient {
 public:
  template <typename Req, typename Resp>
  using Queue = std::deque<FakeCall<Req, Resp>>;

  void RegisterNode(const domain::NodeInventory& inventory,
                    const std::vector<domain::RunningJob>& running, CallOptions options,
                    Answer<absl::Duration> done) override {
    Hold(registers_, Registration{inventory, running}, options, std::move(done));
  }
  void Heartbeat(const std::string& node, uint64_t incarnation, CallOptions options,
                 Answer<absl::Duration> done) override {
    Hold(heartbeats_, HeartbeatCall{node, incarnation}, options, std::move(done));
  }
  void JoinJob(const domain::JoinRequest& request, CallOptions options,
               Answer<domain::Assignment> done) override {
    Hold(joins_, request, options, std::move(done));
  }
  void LeaveJob(const std::string& job, uint64_t generation, const std::string&,
                const std::string& message, CallOptions options,
                std::function<void(absl::Status)> done) override {
    Hold(leaves_, LeaveCall{job, generation, message}, options,
         Answer<bool>([done = std::move(done)](absl::StatusOr<bool> r) { done(r.status()); }));
  }
  void FinishJob(const std::string& job, uint64_t generation, const std::string&,
                 CallOptions options, std::function<void(absl::Status)> done) override {
    Hold(finishes_, LeaveCall{job, generation, ""}, options,
         Answer<bool>([done = std::move(done)](absl::StatusOr<bool> r) { done(r.status()); }));
  }
  void LeaveNode(const std::string& node, uint64_t incarnation, const std::string& message,
                 CallOptions options, std::function<void(absl::Status)> done) override {
    Hold(node_leaves_, NodeLeaveCall{node, incarnation, message}, options,
         Answer<bool>([done = std::move(done)](absl::StatusOr<bool> r) { done(r.status()); }));
  }
  void WatchJob(const std::string& job, uint64_t generation, CallOptions options,
                Answer<domain::GenerationEnd> done) override {
    Hold(watches_, WatchCall{job, generation}, options, std::move(done));
  }
  void ResolveGroups(v1::ResolveGroupsRequest request, CallOptions options,
                     Answer<v1::ResolveGroupsResponse> done) override {
    Hold(resolves_, std::move(request), options, std::move(done));
  }
#define MESHD_FAKE_KEY(Name)                                                              \
  void Key(v1::Name##Request r, CallOptions o, Answer<v1::Name##Response> done) override { \
    Hold(keys_, std::string(#Name), o,                                                     \
         Answer<bool>([done = std::move(done)](absl::StatusOr<bool> ok) {                 \
           if (ok.ok()) return done(v1::Name##Response());                                \
           done(ok.status());                                                             \
         }));                                                                             \
    (void)r;                                                                              \
  }
  MESHD_FAKE_KEY(KeySet)
  MESHD_FAKE_KEY(KeyGet)
  MESHD_FAKE_KEY(KeyAdd)
  MESHD_FAKE_KEY(KeyCompareSet)
  MESHD_FAKE_KEY(KeyWait)
  MESHD_FAKE_KEY(KeyCheck)
  MESHD_FAKE_KEY(KeyDelete)
  MESHD_FAKE_KEY(KeyCount)
#undef MESHD_FAKE_KEY
  // Held with its request (TakeBatch).
  void Key(v1::KeyBatchRequest r, CallOptions o, Answer<v1::KeyBatchResponse> done) override {
    Hold(batches_, std::move(r), o, std::move(done));
  }

  void Shutdown() override {
    std::vector<std::function<void()>> cancel;
    {
      absl::MutexLock lock(&mu_);
      shut_down_ = true;
      Drain(registers_, cancel);
      Drain(heartbeats_, cancel);
      Drain(joins_, cancel);
      Drain(leaves_, cancel);
      Drain(node_leaves_, cancel);
      Drain(finishes_, cancel);
      Drain(watches_, cancel);
      Drain(resolves_, cancel);
      Drain(keys_, cancel);
      Drain(batches_, cancel);
    }
    for (auto& f : cancel) f();
  }

  // The oldest held call of a kind, taken out (nullopt: none).
  std::optional<FakeCall<Registration, absl::Duration>> TakeRegister() { return Take(registers_); }
  std::optional<FakeCall<HeartbeatCall, absl::Duration>> TakeHeartbeat() {
    return Take(heartbeats_);
  }
  std::optional<FakeCall<domain::JoinRequest, domain::Assignment>> TakeJoin() {
    return Take(joins_);
  }
  std::optional<FakeCall<LeaveCall, bool>> TakeLeave() { return Take(leaves_); }
  std::optional<FakeCall<NodeLeaveCall, bool>> TakeNodeLeave() { return Take(node_leaves_); }
  std::optional<FakeCall<LeaveCall, bool>> TakeFinish() { return Take(finishes_); }
  std::optional<FakeCall<WatchCall, domain::GenerationEnd>> TakeWatch() { return Take(watches_); }
  std::optional<FakeCall<v1::ResolveGroupsRequest, v1::ResolveGroupsResponse>> TakeResolve() {
    return Take(resolves_);
  }
  std::optional<FakeCall<std::string, bool>> TakeKey() { return Take(keys_); }
  std::optional<FakeCall<v1::KeyBatchRequest, v1::KeyBatchResponse>> TakeBatch() {
    return Take(batches_);
  }

  // Calls of each kind held now.
  size_t registers() { return Size(registers_); }
  size_t heartbeats() { return Size(heartbeats_); }
  size_t joins() { return Size(joins_); }
  size_t watches() { return Size(watches_); }
  size_t resolves() { return Size(resolves_); }
  size_t batches() { return Size(batches_); }

 private:
  template <typename Req, typename Resp>
  void Hold(Queue<Req, Resp>& q, Req req, CallOptions options, Answer<Resp> done) {
    {
      absl::MutexLock lock(&mu_);
      if (!shut_down_) {
        q.push_back({std::move(req), options, std::move(done)});
        return;
      }
    }
    done(absl::CancelledError("the agent is shutting down"));
  }
  template <typename Req, typename Resp>
  std::optional<FakeCall<Req, Resp>> Take(Queue<Req, Resp>& q) {
    absl::MutexLock lock(&mu_);
    if (q.empty()) return std::nullopt;
    FakeCall<Req, Resp> call = std::move(q.front());
    q.pop_front();
    return call;
  }
  template <typename Req, typename Resp>
  size_t Size(Queue<Req, Resp>& q) {
    absl::MutexLock lock(&mu_);
    return q.size();
  }
  template <typename Req, typename Resp>
  static void Drain(Queue<Req, Resp>& q, std::vector<std::function<void()>>& out) {
    for (auto& call : q) {
      out.push_back([done = std::move(call.done)] {
        done(absl::CancelledError("the agent is shutting down"));
      });
    }
    q.clear();
  }

  absl::Mutex mu_;
  bool shut_down_ = false;
  Queue<Registration, absl::Duration> registers_;
  Queue<HeartbeatCall, absl::Duration> heartbeats_;
  Queue<domain::JoinRequest, domain::Assignment> joins_;
  Queue<LeaveCall, bool> leaves_;
  Queue<NodeLeaveCall, bool> node_leaves_;
  Queue<LeaveCall, bool> finishes_;
  Queue<WatchCall, domain::GenerationEnd> watches_;
  Queue<v1::ResolveGroupsRequest, v1::ResolveGroupsResponse> resolves_;
  Queue<std::string, bool> keys_;
  Queue<v1::KeyBatchRequest, v1::KeyBatchResponse> batches_;
};

}  // namespace meshd::agent

#endif  // MESHD_TESTS_UNIT_AGENT_FAKE_COORDINATOR_CLIENT_H_
