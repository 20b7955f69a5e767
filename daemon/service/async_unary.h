// Unary methods on gRPC's async API, for the calls a daemon holds open (a job's round, a barrier,
// a group's ids). gRPC's callback API funnels every call of the process through one completion
// queue, and Debian's libgrpc (built without NDEBUG) scans a queue's outstanding operations on
// every completion: with 16,384 held calls that scan was ~12% of the coordinator's CPU. Here calls
// arrive on one queue, and each call is bound to one of the server's queues: the first while few
// calls are alive, more as more are (AsyncQueues::kCallsPerQueue a queue), so that no queue holds
// many. Spreading small loads costs thread hand-offs (~10% at 1,024 nodes), hence the threshold.
//
// Liveness is served apart: a method on a liveness lane (heartbeats; registrations) arrives and
// runs on that lane's own queue and thread, on which nothing else is asked for. A flood of heavy
// calls — 8 MiB requests whose decoding takes the shared queues' threads for seconds — queues on
// the shared queues only: it cannot delay a heartbeat past its timeout (issue 21).
//
// Thread-safety: an AsyncUnaryCall's reply may be called from any thread, once; AsyncQueues is
// thread-safe.
#ifndef MESHD_DAEMON_SERVICE_ASYNC_UNARY_H_
#define MESHD_DAEMON_SERVICE_ASYNC_UNARY_H_

#include <functional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/sync/handoff.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/async_unary_call.h"

namespace meshd::service {

// What a completion queue hands back: a call asked for, or a call being finished.
class AsyncTag {
 public:
  virtual ~AsyncTag() = default;
  // `ok` is false when no call came (the server is shutting down) or the finish failed.
  virtual void Proceed(bool ok) = 0;
};

// Where a method's calls arrive and run: the shared queues, or a liveness lane's own queue.
enum class Lane : int {
  kShared = -1,
  kHeartbeats = 0,     // Heartbeat: tiny, the one call a node's life depends on
  kRegistrations = 1,  // RegisterNode: apart from heartbeats too, its request may be 8 MiB
};
inline constexpr int kLivenessLanes = 2;

// The server's completion queues for async calls, and a count of the calls alive (asked for,
// running or finishing) so that the server shuts the queues only when nothing can post to them.
class AsyncQueues {
 public:
  static constexpr int64_t kCallsPerQueue = 1024;

  // `shared`: the queues every method not on a liveness lane uses (at least one); `liveness`: one
  // queue per lane (Lane's value), or none at all (every method on the shared queues).
  AsyncQueues(std::vector<grpc::ServerCompletionQueue*> shared,
              std::vector<grpc::ServerCompletionQueue*> liveness = {})
      : queues_(std::move(shared)), liveness_(std::move(liveness)) {}

  // Where calls of `lane` arrive: the lane's queue, else the first shared queue.
  grpc::ServerCompletionQueue* arrivals(Lane lane = Lane::kShared) const {
    if (grpc::ServerCompletionQueue* own = LaneQueue(lane)) return own;
    return queues_.front();
  }
  // Counts a new call alive and returns its queue: a liveness lane's own; on the shared queues,
  // queue i once i * kCallsPerQueue shared calls are alive (cycling).
  grpc::CompletionQueue* Add(Lane lane = Lane::kShared) {
    grpc::ServerCompletionQueue* own = LaneQueue(lane);
    absl::MutexLock lock(&mu_);
    ++alive_;
    if (own != nullptr) return own;
    return queues_[static_cast<size_t>(shared_alive_++ / kCallsPerQueue) % queues_.size()];
  }
  void Remove(Lane lane = Lane::kShared) {
    const bool shared = LaneQueue(lane) == nullptr;
    absl::MutexLock lock(&mu_);
    --alive_;
    if (shared) --shared_alive_;
  }
  // True when no call is alive, waiting until `deadline` at most.
  bool AwaitNone(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return alive_ == 0; };
    return mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
  }

 private:
  grpc::ServerCompletionQueue* LaneQueue(Lane lane) const {
    const int i = static_cast<int>(lane);
    return i >= 0 && static_cast<size_t>(i) < liveness_.size() ? liveness_[i] : nullptr;
  }

  const std::vector<grpc::ServerCompletionQueue*> queues_;
  const std::vector<grpc::ServerCompletionQueue*> liveness_;
  absl::Mutex mu_;
  int64_t alive_ ABSL_GUARDED_BY(mu_) = 0;         // every call, for AwaitNone
  int64_t shared_alive_ ABSL_GUARDED_BY(mu_) = 0;  // the shared queues', for spreading
};

// A gRPC service some of whose methods are on the async API. GrpcServer::Start calls AwaitCalls
// once the server runs.
class AsyncMethods {
 public:
  virtual ~AsyncMethods() = default;
  virtual void AwaitCalls(AsyncQueues* queues) = 0;
};

// One call of an async unary method. Await() asks gRPC for a call; when it comes, the next one is
// asked for (so the method stays served), `handle` runs, and the call finishes when `handle`'s
// reply is called. The object deletes itself once the finish completes.
template <typename Request, typename Response>
class AsyncUnaryCall final : public AsyncTag {
 public:
  using Reply = std::function<void(const grpc::Status&)>;
  struct Method {
    // The generated Request<Method> of the service, bound to it.
    std::function<void(grpc::ServerContext*, Request*, grpc::ServerAsyncResponseWriter<Response>*,
                       grpc::CompletionQueue*, grpc::ServerCompletionQueue*, void*)>
        request;
    // Fills the response, then replies (now or later, from any thread; exactly once).
    std::function<void(grpc::ServerContext*, const Request&, Response*, Reply)> handle;
    // Where its calls arrive and run.
    Lane lane = Lane::kShared;
  };

  static void Await(const Method* method, AsyncQueues* queues) {
    auto* call = new AsyncUnaryCall(method, queues);
    sync::HandOff(call);  // back through a completion queue: GrpcServer's threads TakeOver it
    method->request(&call->ctx_, &call->request_, &call->writer_, call->queue_,
                    queues->arrivals(method->lane), call);
  }

  void Proceed(bool ok) override {
    if (!ok || started_) {
      delete this;
      return;
    }
    started_ = true;
    Await(method_, queues_);
    method_->handle(&ctx_, request_, &response_, [this](const grpc::Status& s) {
      sync::HandOff(this);
      if (s.ok()) {
        writer_.Finish(response_, s, this);
      } else {
        writer_.FinishWithError(s, this);
      }
    });
  }

 private:
  AsyncUnaryCall(const Method* method, AsyncQueues* queues)
      : method_(method), queues_(queues), queue_(queues->Add(method->lane)), writer_(&ctx_) {}
  ~AsyncUnaryCall() override { queues_->Remove(method_->lane); }

  const Method* const method_;
  AsyncQueues* const queues_;
  grpc::CompletionQueue* const queue_;  // the call's, from Add()
  grpc::ServerContext ctx_;
  Request request_;
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> writer_;
  bool started_ = false;
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_ASYNC_UNARY_H_
