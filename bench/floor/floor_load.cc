// FloorLoad (see floor_load.h).
#include "bench/floor/floor_load.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/sim/calls_in_flight.h"
#include "bench/sim/placement.h"
#include "bench/sim/proc_stats.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/client_callback.h"

namespace meshd::bench::floor {
namespace {

using SteadyClock = std::chrono::steady_clock;

grpc::ByteBuffer Bytes(uint32_t n) {
  grpc::Slice slice(std::string(n, 'r'));
  return grpc::ByteBuffer(&slice, 1);
}

class Load;

// One node as a session: a bidi stream carrying register, join and resolve in order.
class Session final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  Session(Load* load, uint32_t node) : load_(load), node_(node) {}
  void Begin(grpc::GenericStub* stub);
  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& s) override;
  grpc::ClientContext ctx;

 private:
  void Send();
  // The next write (a request, or the half-close after the last answer) waits for the one before
  // it: gRPC allows one write in flight, and an answer can arrive before its request's write
  // is reported done.
  void WriteNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Load* const load_;
  const uint32_t node_;
  int step_ = 0;  // the exchange under way
  grpc::ByteBuffer request_, answer_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
};

class Load {
 public:
  explicit Load(const LoadOptions& o) : o_(o) {
    for (const auto& channel : SimChannels(o.address, o.channels)) {  // as meshd_bench's
      stubs_.push_back(std::make_unique<grpc::GenericStub>(channel));
    }
    contexts_ = std::make_unique<grpc::ClientContext[]>(static_cast<size_t>(o.nodes) * kSteps);
  }

  absl::StatusOr<LoadResult> Run() {
    const auto deadline = std::chrono::system_clock::now() +
                          std::chrono::milliseconds(absl::ToInt64Milliseconds(o_.timeout));
    start_ = SteadyClock::now();
    cpu_start_ = CpuClockSeconds(CLOCK_PROCESS_CPUTIME_ID);
    for (uint32_t i = 0; i < o_.nodes; ++i) {
      if (o_.session) {
        auto* s = new Session(this, i);
        s->ctx.set_deadline(deadline);
        Track(&s->ctx);
        s->Begin(Stub(i));
      } else {
        Unary(i, Step::kRegister, deadline);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      const auto done = [this] { return finished_ == o_.nodes || !error_.ok(); };
      if (!mu_.AwaitWithTimeout(absl::Condition(&done), o_.timeout) && error_.ok()) {
        error_ = absl::DeadlineExceededError(absl::StrCat(
            "the floor run did not finish within ", absl::FormatDuration(o_.timeout), ": ",
            answered_[0], " registered, ", answered_[1], " joined, ", answered_[2], " resolved of ",
            o_.nodes));
      }
      stopping_ = true;
    }
    // Every call (a session owns its context) gone before the stubs go: see calls_in_flight.h.
    calls_.StopAndDrain();
    absl::MutexLock lock(&mu_);
    if (!error_.ok()) return error_;
    result_.exchanges = exchanges_;
    result_.streams = o_.session ? o_.nodes : exchanges_;
    return result_;
  }

  grpc::GenericStub* Stub(uint32_t node) { return stubs_[node % stubs_.size()].get(); }
  const Sizes& sizes() const { return o_.sizes; }
  CallsInFlight* calls() { return &calls_; }

  // Counts an answer of `step`; the run's milestones are the last node's answer of each step.
  void Answered(Step step) {
    absl::MutexLock lock(&mu_);
    ++exchanges_;
    const int s = static_cast<int>(step);
    if (++answered_[s] == o_.nodes) {
      const double t = std::chrono::duration<double>(SteadyClock::now() - start_).count();
      if (step == Step::kRegister) result_.t_registered_s = t;
      if (step == Step::kJoin) result_.t_joined_s = t;
      if (step == Step::kResolve) {
        result_.t_done_s = t;
        result_.load_cpu_s = CpuClockSeconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start_;
      }
    }
  }
  void NodeDone(grpc::ClientContext* ctx) {
    calls_.Answered(ctx);
    absl::MutexLock lock(&mu_);
    ++finished_;
  }
  // Records the run's first error.
  void Error(absl::Status s) {
    absl::MutexLock lock(&mu_);
    if (error_.ok() && !stopping_) error_ = std::move(s);
  }
  // Records an error for a call that is over.
  void Fail(grpc::ClientContext* ctx, absl::Status s) {
    Error(std::move(s));
    calls_.Answered(ctx);
  }
  // False once the run is stopping (the call must not start).
  bool Track(grpc::ClientContext* ctx) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return false;
    }
    return calls_.Add(ctx);
  }

 private:
  // Node `node`'s unary call for `step`; its answer starts the next step.
  void Unary(uint32_t node, Step step, std::chrono::system_clock::time_point deadline) {
    struct Call {
      grpc::ByteBuffer request, answer;
    };
    grpc::ClientContext* ctx =
        &contexts_[static_cast<size_t>(node) * kSteps + static_cast<int>(step)];
    ctx->set_deadline(deadline);
    if (!Track(ctx)) return;
    auto* call = new Call{Bytes(RequestBytes(o_.sizes, step)), {}};
    const char* method = step == Step::kRegister ? kRegisterMethod
                         : step == Step::kJoin   ? kJoinMethod
                                                 : kResolveMethod;
    Stub(node)->UnaryCall(
        ctx, method, grpc::StubOptions(), &call->request, &call->answer,
        [this, call, ctx, node, step, deadline](grpc::Status s) {
          CallsInFlight::Gone gone(&calls_);
          std::unique_ptr<Call> own(call);
          if (!s.ok()) {
            return Fail(ctx,
                        absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                                     absl::StrCat("node ", node, " step ", static_cast<int>(step),
                                                  ": ", s.error_message())));
          }
          if (call->answer.Length() != AnswerBytes(o_.sizes, step)) {
            return Fail(ctx, absl::InternalError(absl::StrCat("node ", node, ": an answer of ",
                                                              call->answer.Length(), " bytes")));
          }
          Answered(step);
          if (step == Step::kResolve) return NodeDone(ctx);
          calls_.Answered(ctx);
          Unary(node, static_cast<Step>(static_cast<int>(step) + 1), deadline);
        });
  }

  const LoadOptions& o_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
  std::unique_ptr<grpc::ClientContext[]> contexts_;  // unary: by node and step
  SteadyClock::time_point start_;
  double cpu_start_ = 0;

  absl::Mutex mu_;
  CallsInFlight calls_;  // before it returns, Run waits until every call is gone
  uint32_t answered_[kSteps] ABSL_GUARDED_BY(mu_) = {0, 0, 0};
  uint32_t finished_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t exchanges_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  LoadResult result_ ABSL_GUARDED_BY(mu_);
};

void Session::Begin(grpc::GenericStub* stub) {
  stub->PrepareBidiStreamingCall(&ctx, kSessionMethod, grpc::StubOptions(), this);
  Send();
  StartCall();
}

void Session::Send() {
  {
    absl::MutexLock lock(&mu_);
    write_pending_ = true;
    if (!writing_) WriteNext();
  }
  StartRead(&answer_);
}

void Session::WriteNext() {
  write_pending_ = false;
  writing_ = true;
  if (step_ < kSteps) {
    request_ = Bytes(RequestBytes(load_->sizes(), static_cast<Step>(step_)));
    StartWrite(&request_);
  } else {
    StartWritesDone();
  }
}

void Session::OnWriteDone(bool ok) {
  if (!ok) return;  // OnDone carries the status
  absl::MutexLock lock(&mu_);
  writing_ = false;
  if (write_pending_) WriteNext();
}

void Session::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone carries the status
  const Step step = static_cast<Step>(step_);
  if (answer_.Length() != AnswerBytes(load_->sizes(), step)) {
    load_->Error(absl::InternalError(
        absl::StrCat("node ", node_, ": an answer of ", answer_.Length(), " bytes")));
    ctx.TryCancel();  // OnDone follows
    return;
  }
  load_->Answered(step);
  ++step_;
  if (step_ < kSteps) return Send();
  absl::MutexLock lock(&mu_);
  write_pending_ = true;  // the half-close
  if (!writing_) WriteNext();
}

void Session::OnDone(const grpc::Status& s) {
  // Destroyed after this session (its context holds a reference to the channel).
  CallsInFlight::Gone gone(load_->calls());
  if (!s.ok()) {
    load_->Fail(&ctx,
                absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                             absl::StrCat("node ", node_, "'s session: ", s.error_message())));
  } else if (step_ < kSteps) {
    load_->Fail(&ctx, absl::InternalError(absl::StrCat("node ", node_, "'s session ended early")));
  } else {
    load_->NodeDone(&ctx);
  }
  delete this;
}

}  // namespace

absl::StatusOr<LoadResult> RunFloorLoad(const LoadOptions& options) {
  Load load(options);
  return load.Run();
}

}  // namespace meshd::bench::floor
