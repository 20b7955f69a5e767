// Unary methods on gRPC's async API, for the calls a daemon holds open (a job's round, a barrier,
// a group's ids). gRPC's callback API funnels every call of the process through one completion
// queue, and Debian's libgrpc (built without NDEBUG) scans a queue's outstanding operations on
// every completion: with 16,384 held calls that scan was ~12% of the coordinator's CPU. Here calls
// arrive on one queue, and each call is bound to one of the server's queues: the first while few
// calls are alive, more as more are (AsyncQueues::kCallsPerQueue a queue), so that no queue holds
// many. Spreading small loads costs thread hand-offs (~10% at 1,024 nodes), hence the threshold.
//
// Thread-safety: an AsyncUnaryCall's reply may be called from any thread, once; AsyncQueues is
// thread-safe.
#ifndef MESHD_DAEMON_SERVICE_ASYNC_UNARY_H_
#define MESHD_DAEMON_SERVICE_ASYNC_UNARY_H_

#include <functional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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

// The server's completion queues for async calls, and a count of the calls alive (asked for,
// running or finishing) so that the server shuts the queues only when nothing can post to them.
class AsyncQueues {
 public:
  static constexpr int64_t kCallsPerQueue = 1024;

  explicit AsyncQueues(std::vector<grpc::ServerCompletionQueue*> queues)
      : queues_(std::move(queues)) {}

  // Where calls arrive.
  grpc::ServerCompletionQueue* arrivals() const { return queues_.front(); }
  // Counts a new call alive and returns its queue: queue i once i * kCallsPerQueue calls are
  // alive (cycling).
  grpc::CompletionQueue* Add() {
    absl::MutexLock lock(&mu_);
    return queues_[static_cast<size_t>(alive_++ / kCallsPerQueue) % queues_.size()];
  }
  void Remove() {
    absl::MutexLock lock(&mu_);
    --alive_;
  }
  // True when no call is alive, waiting until `deadline` at most.
  bool AwaitNone(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return alive_ == 0; };
    return mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
  }

 private:
  const std::vector<grpc::ServerCompletionQueue*> queues_;
  absl::Mutex mu_;
  int64_t alive_ ABSL_GUARDED_BY(mu_) = 0;
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
  };

  static void Await(const Method* method, AsyncQueues* queues) {
    auto* call = new AsyncUnaryCall(method, queues);
    method->request(&call->ctx_, &call->request_, &call->writer_, call->queue_, queues->arrivals(),
                    call);
  }

  void Proceed(bool ok) override {
    if (!ok || started_) {
      delete this;
      return;
    }
    started_ = true;
    Await(method_, queues_);
    method_->handle(&ctx_, request_, &response_, [this](const grpc::Status& s) {
      if (s.ok()) {
        writer_.Finish(response_, s, this);
      } else {
        writer_.FinishWithError(s, this);
      }
    });
  }

 private:
  AsyncUnaryCall(const Method* method, AsyncQueues* queues)
      : method_(method), queues_(queues), queue_(queues->Add()), writer_(&ctx_) {}
  ~AsyncUnaryCall() override { queues_->Remove(); }

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
