// meshd::Interrupter (see <meshd/client.h>) and InterruptibleCall, which registers the calls it
// cancels. Thread-safety: the set of calls in flight is guarded by Interrupter::Impl::mu.
#include "client/src/interrupter.h"

#include <atomic>
#include <memory>
#include <set>

#include "absl/synchronization/mutex.h"

namespace meshd {

struct Interrupter::Impl {
  absl::Mutex mu;
  std::set<grpc::ClientContext*> calls ABSL_GUARDED_BY(mu);
  std::atomic<uint64_t> interrupts{0};  // for InterruptWatch
};

Interrupter::Interrupter() : impl_(std::make_unique<Impl>()) {}
Interrupter::~Interrupter() = default;

void Interrupter::Interrupt() {
  impl_->interrupts.fetch_add(1);
  absl::MutexLock lock(&impl_->mu);
  for (grpc::ClientContext* ctx : impl_->calls) ctx->TryCancel();
}

namespace client_internal {

InterruptibleCall::InterruptibleCall(Interrupter* interrupter, grpc::ClientContext* ctx)
    : interrupter_(interrupter), ctx_(ctx) {
  if (interrupter_ == nullptr) return;
  absl::MutexLock lock(&interrupter_->impl()->mu);
  interrupter_->impl()->calls.insert(ctx_);
}

InterruptibleCall::~InterruptibleCall() {
  if (interrupter_ == nullptr) return;
  absl::MutexLock lock(&interrupter_->impl()->mu);
  interrupter_->impl()->calls.erase(ctx_);
}

InterruptWatch::InterruptWatch(Interrupter* interrupter) : interrupter_(interrupter) {
  if (interrupter_ != nullptr) start_ = interrupter_->impl()->interrupts.load();
}

bool InterruptWatch::interrupted() const {
  return interrupter_ != nullptr && interrupter_->impl()->interrupts.load() != start_;
}

}  // namespace client_internal
}  // namespace meshd
