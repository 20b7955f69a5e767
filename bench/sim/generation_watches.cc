// GenerationWatches (see generation_watches.h).
#include "bench/sim/generation_watches.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/domain/caller.h"

namespace meshd::bench {

class GenerationWatches::Watch final : public grpc::ClientReadReactor<v1::GenerationEnd> {
 public:
  Watch(GenerationWatches* owner, v1::Coordinator::Stub* stub, v1::WatchJobRequest req,
        const std::string& node, const std::string& secret,
        std::chrono::system_clock::time_point deadline)
      : owner_(owner), req_(std::move(req)) {
    ctx_.set_deadline(deadline);
    ctx_.AddMetadata(domain::kNodeMetadata, node);
    ctx_.AddMetadata(domain::kNodeSecretMetadata, secret);
    stub->async()->WatchJob(&ctx_, &req_, this);
    StartRead(&end_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream's end: OnDone follows
    got_ = true;
    StartRead(&next_);  // until the server finishes the stream
  }
  void OnDone(const grpc::Status& s) override {
    owner_->Finished(got_ ? &end_ : nullptr, req_.job(), s);
  }
  void Cancel() { ctx_.TryCancel(); }

 private:
  GenerationWatches* const owner_;
  grpc::ClientContext ctx_;
  v1::WatchJobRequest req_;
  v1::GenerationEnd end_, next_;
  bool got_ = false;  // written before OnDone, read in it (the same reactor's sequence)
};

GenerationWatches::GenerationWatches() = default;

GenerationWatches::~GenerationWatches() {
  for (auto& w : watches_) w->Cancel();
  absl::MutexLock lock(&mu_);
  const auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return open_ == 0; };
  mu_.Await(absl::Condition(&done));
}

void GenerationWatches::Start(v1::Coordinator::Stub* stub, const std::string& job,
                              uint64_t generation, const std::string& node,
                              const std::string& secret,
                              std::chrono::system_clock::time_point deadline) {
  v1::WatchJobRequest req;
  req.set_job(job);
  req.set_generation(generation);
  {
    absl::MutexLock lock(&mu_);
    ++open_;
  }
  watches_.push_back(
      std::make_unique<Watch>(this, stub, std::move(req), node, secret, deadline));
}

void GenerationWatches::Finished(const v1::GenerationEnd* end, const std::string& job,
                                 const grpc::Status& s) {
  absl::MutexLock lock(&mu_);
  --open_;
  if (end != nullptr) {
    ++ends_[v1::GenerationEnd::Reason_Name(end->reason())];
  } else if (error_.ok()) {
    error_ = absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          absl::StrCat("WatchJob of ", job, " finished with no end: ",
                                       s.ok() ? "the stream closed" : s.error_message()));
  }
}

absl::Status GenerationWatches::WaitAll() {
  absl::MutexLock lock(&mu_);
  const auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return open_ == 0; };
  mu_.Await(absl::Condition(&done));
  return error_;
}

std::map<std::string, uint64_t> GenerationWatches::Ends() {
  absl::MutexLock lock(&mu_);
  return ends_;
}

}  // namespace meshd::bench
