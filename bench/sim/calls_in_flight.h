// CallsInFlight: the callback-API calls a simulator has started, for cancelling them and for
// waiting, before the simulator lets go of its channels, until every one of them is gone.
//
// Why "gone" and not "answered": a call's ClientContext holds a reference to its grpc::Channel.
// When the simulator's stubs go first and a callback then deletes the last call of a channel, that
// channel is destroyed on the gRPC thread running the callback. With the callback API on Linux
// (gRPC 1.51, epoll1) that thread is one of the "nexting" threads polling the process's shared
// callback queue; releasing the last channel shuts that queue down, joins its threads — itself
// included, which pthread_join refuses (EDEADLK) and gRPC ignores — and frees the queue the thread
// goes back to polling: a double free (AddressSanitizer), then SIGSEGV/SIGBUS wherever the heap
// was reused (meshd_bench: 1 run in ~40 two side by side, after or before its JSON). So a call
// counts until its callback has destroyed it: the simulator's stubs, and the last reference to
// each channel, then always go on the simulator's own thread.
//
// Use: Add(ctx) before starting a call (false once stopped: do not start it); in its callback
// Answered(ctx) first (it can no longer be cancelled) and keep a CallsInFlight::Gone guard declared
// before whatever owns the call, so that it is destroyed after it; StopAndDrain() before the
// stubs go.
//
// Thread-safety: every method may be called from any thread.
#ifndef MESHD_BENCH_SIM_CALLS_IN_FLIGHT_H_
#define MESHD_BENCH_SIM_CALLS_IN_FLIGHT_H_

#include <cstdint>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/client_context.h"

namespace meshd::bench {

class CallsInFlight {
 public:
  // Registers a call about to start; false (nothing registered) once Refuse or StopAndDrain ran.
  bool Add(grpc::ClientContext* ctx) {
    absl::MutexLock lock(&mu_);
    if (stopped_) return false;
    cancellable_.insert(ctx);
    ++alive_;
    return true;
  }
  // The call's callback runs: it is no longer cancelled by StopAndDrain.
  void Answered(grpc::ClientContext* ctx) {
    absl::MutexLock lock(&mu_);
    cancellable_.erase(ctx);
  }
  // Held by a callback, declared before what owns the call: the call is gone when it is destroyed.
  class Gone {
   public:
    explicit Gone(CallsInFlight* calls) : calls_(calls) {}
    ~Gone() {
      absl::MutexLock lock(&calls_->mu_);
      --calls_->alive_;
    }
    Gone(const Gone&) = delete;
    Gone& operator=(const Gone&) = delete;

   private:
    CallsInFlight* const calls_;
  };
  // No new calls from now on (those in flight go on).
  void Refuse() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  // No new calls; cancels those in flight and waits until every call is gone. Unbounded: a
  // cancelled call always completes, and returning earlier would free what its callback uses.
  void StopAndDrain() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    for (grpc::ClientContext* ctx : cancellable_) ctx->TryCancel();
    const auto gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return alive_ == 0; };
    mu_.Await(absl::Condition(&gone));
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_set<grpc::ClientContext*> cancellable_ ABSL_GUARDED_BY(mu_);
  uint64_t alive_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_CALLS_IN_FLIGHT_H_
