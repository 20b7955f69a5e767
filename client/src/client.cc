// ClientImpl's life: construction (arming the generation watch), Detach on destruction, health,
// OnGenerationEnd and the watch thread that ends the generation's health and aborts the
// communicators the client made (ClientOptions::abort_communicators_on_generation_end).
// Thread-safety: see client_impl.h; callbacks run on the watch thread (or the caller's), without
// mu_ held.
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/src/client_impl.h"

namespace meshd::client_internal {

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

ClientImpl::ClientImpl(ClientOptions options, std::shared_ptr<grpc::Channel> channel,
                       Placement placement)
    : options_(std::move(options)),
      stub_(v1::Agent::NewStub(channel)),
      placement_(std::move(placement)) {
  watch_thread_ = std::thread([this] { WatchGeneration(); });
  // Attach returns once the watch is armed, so no end of the generation can slip past it.
  watch_armed_.WaitForNotificationWithTimeout(options_.timeout);
}

ClientImpl::~ClientImpl() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  // Leave cleanly, so that the agent does not take this worker as lost when its watch goes.
  v1::DetachRequest detach;
  detach.set_job(options_.job);
  detach.set_generation(placement_.generation);
  detach.set_local_rank(static_cast<uint32_t>(placement_.local_rank));
  v1::DetachResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  (void)stub_->Detach(&ctx, detach, &resp);
  watch_ctx_.TryCancel();
  if (!watch_thread_.joinable()) return;
  if (watch_thread_.get_id() == std::this_thread::get_id()) {
    // Destroyed by an OnGenerationEnd callback, on the watch thread itself (joining it would throw
    // and terminate): the watch is over, its stream already gone, and the thread touches nothing
    // of this client after the callbacks (see WatchGeneration).
    watch_thread_.detach();
    return;
  }
  watch_thread_.join();
}

absl::Status ClientImpl::health() const {
  absl::MutexLock lock(&mu_);
  return health_;
}

void ClientImpl::OnGenerationEnd(std::function<void(const absl::Status&)> callback) {
  absl::Status ended;
  {
    absl::MutexLock lock(&mu_);
    if (health_.ok()) {
      callbacks_.push_back(std::move(callback));
      return;
    }
    ended = health_;
  }
  callback(ended);
}

void ClientImpl::WatchGeneration() {
  absl::Status ended;
  {
    v1::WatchRequest req;
    req.set_job(options_.job);
    req.set_generation(placement_.generation);
    req.set_local_rank(static_cast<uint32_t>(placement_.local_rank));
    auto reader = stub_->Watch(&watch_ctx_, req);
    reader->WaitForInitialMetadata();  // sent by the agent once the watch is registered
    watch_armed_.Notify();
    v1::GenerationEnd end;
    if (reader->Read(&end)) {
      ended = absl::AbortedError(absl::StrCat(
          "generation ", end.generation(), " of job '", end.job(), "' ended (",
          v1::GenerationEnd::Reason_Name(end.reason()), end.node().empty() ? "" : " of node '",
          end.node(), end.node().empty() ? "" : "'", "): ", end.message(),
          "; abort communicators and attach again"));
      watch_ctx_.TryCancel();  // the stream is over: finish it before the callbacks
    }
    const grpc::Status s = reader->Finish();
    if (ended.ok()) {
      if (s.error_code() == grpc::StatusCode::CANCELLED) return;  // the client is closing
      ended = absl::AbortedError(absl::StrCat("lost the meshd agent's watch on generation ",
                                              placement_.generation, ": ", s.error_message()));
    }
  }  // the stream and its reader are gone: a callback may destroy this client
  std::vector<std::function<void(const absl::Status&)>> callbacks;
  bool abort_communicators = false;
  {
    absl::MutexLock lock(&mu_);
    health_ = ended;
    // A closing client's own detach may have finished the job: nobody is listening any more.
    if (!closing_) callbacks.swap(callbacks_);
    abort_communicators =
        !closing_ && options_.abort_communicators_on_generation_end.value_or(true);
  }
  // Before the callbacks (which may destroy this client): no collective of this generation may
  // wait for a peer that is gone. Communicators still being made see health_ and stop themselves.
  if (abort_communicators) comms_.AbortAll(ended);
  // Nothing of this client is touched from here: a callback may destroy it (~ClientImpl then
  // detaches this thread instead of joining it).
  for (auto& cb : callbacks) cb(ended);
}

}  // namespace meshd::client_internal
