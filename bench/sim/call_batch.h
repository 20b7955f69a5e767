// CallBatch: unary calls started together on gRPC's callback API and waited for together — a step
// of the soak simulator in which many simulated agents each send one call (a JoinJob held until
// the round closes needs them all in flight at once).
//
// The calls belong to the batch and are destroyed by Wait()'s caller after every callback ran, so
// the last reference to a channel never goes on a gRPC thread (see calls_in_flight.h). Every call
// carries a deadline: Wait() is bounded by it.
//
// Thread-safety: Start and Wait from one thread; the callbacks on gRPC's.
#ifndef MESHD_BENCH_SIM_CALL_BATCH_H_
#define MESHD_BENCH_SIM_CALL_BATCH_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/domain/caller.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace meshd::bench {

class CallBatch {
 public:
  template <typename Req, typename Resp>
  struct Call {
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
    grpc::Status status;
  };

  explicit CallBatch(absl::Duration timeout)
      : deadline_(std::chrono::system_clock::now() +
                  std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout))) {}
  ~CallBatch() { Wait(); }
  CallBatch(const CallBatch&) = delete;
  CallBatch& operator=(const CallBatch&) = delete;

  // Starts one call of `node` (its agent's metadata: the name and, when known, its secret):
  // `send(ctx, req, resp, done)` is the stub's async method, e.g.
  //   [&](auto... a) { stub->async()->JoinJob(a...); }
  // The call is readable once Wait() returned.
  template <typename Req, typename Resp, typename Send>
  Call<Req, Resp>* Start(Req req, const std::string& node, const std::string& secret, Send send) {
    auto call = std::make_shared<Call<Req, Resp>>();
    call->req = std::move(req);
    call->ctx.set_deadline(deadline_);
    if (!node.empty()) call->ctx.AddMetadata(domain::kNodeMetadata, node);
    if (!secret.empty()) call->ctx.AddMetadata(domain::kNodeSecretMetadata, secret);
    {
      absl::MutexLock lock(&mu_);
      ++pending_;
      owned_.push_back(call);
    }
    Call<Req, Resp>* c = call.get();
    send(&c->ctx, &c->req, &c->resp, [this, c](grpc::Status s) {
      absl::MutexLock lock(&mu_);
      c->status = std::move(s);
      --pending_;
    });
    return c;
  }

  // Until every call started has been answered (or passed its deadline).
  void Wait() {
    absl::MutexLock lock(&mu_);
    const auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_ == 0; };
    mu_.Await(absl::Condition(&done));
  }

 private:
  const std::chrono::system_clock::time_point deadline_;
  absl::Mutex mu_;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<void>> owned_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_CALL_BATCH_H_
