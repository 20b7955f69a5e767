// GenerationWatchReactor (see watch_reactor.h).
#include "daemon/service/watch_reactor.h"

#include "daemon/wire/convert.h"

namespace meshd::service {

using wire::ToGrpc;

bool GenerationWatchReactor::Claim(Shared& shared) {
  absl::MutexLock lock(&shared.mu);
  if (shared.finished) return false;
  shared.finished = true;
  return true;
}

GenerationWatchReactor::GenerationWatchReactor(const Subscribe& subscribe) {
  // `shared` keeps the decision alive even after this reactor is deleted.
  Deliver deliver = [this, shared = shared_](const v1::GenerationEnd& end) {
    if (!Claim(*shared)) return;  // the stream already finished; `this` may be gone
    message_ = end;
    StartWriteAndFinish(&message_, grpc::WriteOptions(), grpc::Status::OK);
  };
  // Initial metadata tells the client its watch is being armed (it may wait for it); it is sent
  // before subscribing so that it never races the delivery's StartWriteAndFinish.
  StartSendInitialMetadata();
  absl::StatusOr<Cancel> cancel = subscribe(std::move(deliver));
  if (!cancel.ok()) {
    if (Claim(*shared_)) Finish(ToGrpc(cancel.status()));
    return;
  }
  absl::MutexLock lock(&cancel_mu_);
  cancel_ = *std::move(cancel);
}

void GenerationWatchReactor::OnCancel() {
  Cancel cancel;
  {
    absl::MutexLock lock(&cancel_mu_);
    cancel = std::move(cancel_);
  }
  if (cancel) cancel();
  if (Claim(*shared_)) Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the watch was cancelled"));
}

}  // namespace meshd::service
