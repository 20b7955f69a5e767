// GenerationWatchReactor (see watch_reactor.h).
#include "daemon/service/watch_reactor.h"

#include "common/sync/handoff.h"
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
    sync::HandOff(this);  // OnDone comes after
    StartWriteAndFinish(&message_, grpc::WriteOptions(), grpc::Status::OK);
  };
  // Initial metadata tells the client its watch is being armed (it may wait for it); it is sent
  // before subscribing so that it never races the delivery's StartWriteAndFinish.
  sync::HandOff(this);
  StartSendInitialMetadata();
  absl::StatusOr<Cancel> cancel = subscribe(std::move(deliver));
  if (!cancel.ok()) {
    if (Claim(*shared_)) {
      sync::HandOff(this);
      Finish(ToGrpc(cancel.status()));
    }
    return;
  }
  {
    absl::MutexLock lock(&cancel_mu_);
    cancel_ = *std::move(cancel);
  }
  sync::HandOff(this);  // the handler returns it to gRPC, which may cancel it on any thread
}

void GenerationWatchReactor::OnCancel() {
  sync::TakeOver(this);
  Cancel cancel;
  {
    absl::MutexLock lock(&cancel_mu_);
    cancel = std::move(cancel_);
  }
  if (cancel) cancel();
  sync::HandOff(this);  // OnDone comes after, whoever finished the stream
  if (Claim(*shared_)) Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the watch was cancelled"));
}

void GenerationWatchReactor::OnDone() {
  sync::TakeOver(this);  // after every delivery, finish and cancel
  delete this;
}

}  // namespace meshd::service
