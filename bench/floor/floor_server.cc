// FloorServer (see floor_server.h).
#include "bench/floor/floor_server.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

namespace meshd::bench::floor {
namespace {

grpc::ByteBuffer Bytes(uint32_t n) {
  grpc::Slice slice(std::string(n, 'a'));
  return grpc::ByteBuffer(&slice, 1);
}

class Server;

// One call: a unary exchange (read one request, answer, finish) or a session (three exchanges on
// one stream, then the client's half-close and the finish). Deletes itself when done.
class Call {
 public:
  struct Tag {
    Call* call;
    int event;
  };
  explicit Call(Server* server);
  void OnEvent(int event, bool ok);
  void Answer();  // the held step's answer, once its round is complete

 private:
  enum Event { kArrived = 0, kRead = 1, kWritten = 2, kFinished = 3 };
  void Step(Step step);

  Server* const server_;
  grpc::GenericServerContext ctx_;
  grpc::GenericServerAsyncReaderWriter stream_{&ctx_};
  grpc::ByteBuffer request_;
  grpc::ByteBuffer answer_;
  bool session_ = false;
  int next_step_ = 0;  // a session's next exchange
  floor::Step step_ = floor::Step::kRegister;
  Tag tags_[4] = {{this, kArrived}, {this, kRead}, {this, kWritten}, {this, kFinished}};
};

class Server {
 public:
  explicit Server(const ServerOptions& o) : o_(o) {}

  absl::StatusOr<std::string> Start() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(o_.listen, grpc::InsecureServerCredentials(), &port);
    builder.RegisterAsyncGenericService(&service_);
    builder.SetMaxReceiveMessageSize(-1);
    builder.AddChannelArgument(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 0);  // as meshd's coordinator
    for (int i = 0; i < std::max(1, o_.completion_queues); ++i) {
      queues_.push_back(builder.AddCompletionQueue());
    }
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port == 0) {
      return absl::UnavailableError(absl::StrCat("could not listen on ", o_.listen));
    }
    for (int i = 0; i < 4; ++i) new Call(this);
    for (const auto& q : queues_) {
      std::thread([cq = q.get()] {
        void* tag = nullptr;
        bool ok = false;
        while (cq->Next(&tag, &ok)) {
          auto* t = static_cast<Call::Tag*>(tag);
          t->call->OnEvent(t->event, ok);
        }
      }).detach();
    }
    const std::string host = o_.listen.substr(0, o_.listen.rfind(':'));
    return absl::StrCat(host, ":", port);
  }

  // As meshd's AsyncQueues: queue i once i * 1024 calls arrived (Debian's libgrpc scans a queue's
  // outstanding operations on every completion, so no queue should hold many).
  grpc::ServerCompletionQueue* QueueForNewCall() {
    const uint64_t n = calls_++;
    return queues_[(n / 1024) % queues_.size()].get();
  }
  grpc::ServerCompletionQueue* Arrivals() { return queues_.front().get(); }
  grpc::AsyncGenericService* service() { return &service_; }
  const Sizes& sizes() const { return o_.sizes; }

  // Adds `call` to `step`'s round; the call that completes it answers every call in it.
  void Hold(floor::Step step, Call* call) {
    std::vector<Call*> full;
    {
      absl::MutexLock lock(&mu_);
      std::vector<Call*>& round = rounds_[static_cast<int>(step)];
      round.push_back(call);
      if (round.size() == o_.nodes) full.swap(round);
    }
    for (Call* c : full) c->Answer();
  }

 private:
  const ServerOptions o_;
  grpc::AsyncGenericService service_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::unique_ptr<grpc::Server> server_;
  std::atomic<uint64_t> calls_{0};
  absl::Mutex mu_;
  std::vector<Call*> rounds_[kSteps] ABSL_GUARDED_BY(mu_);
};

Call::Call(Server* server) : server_(server) {
  server_->service()->RequestCall(&ctx_, &stream_, server_->QueueForNewCall(), server_->Arrivals(),
                                  &tags_[kArrived]);
}

void Call::OnEvent(int event, bool ok) {
  switch (event) {
    case kArrived:
      if (!ok) return delete this;  // shutting down
      new Call(server_);
      session_ = ctx_.method() == kSessionMethod;
      if (!session_) {
        if (ctx_.method() == kRegisterMethod) {
          step_ = floor::Step::kRegister;
        } else if (ctx_.method() == kJoinMethod) {
          step_ = floor::Step::kJoin;
        } else if (ctx_.method() == kResolveMethod) {
          step_ = floor::Step::kResolve;
        } else {
          return stream_.Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ctx_.method()),
                                &tags_[kFinished]);
        }
      }
      return stream_.Read(&request_, &tags_[kRead]);
    case kRead:
      if (!ok) return stream_.Finish(grpc::Status::OK, &tags_[kFinished]);  // half-closed
      if (session_) {
        if (next_step_ >= kSteps) {
          return stream_.Finish(
              grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a session has three exchanges"),
              &tags_[kFinished]);
        }
        step_ = static_cast<floor::Step>(next_step_++);
      }
      return Step(step_);
    case kWritten:
      if (!ok) return stream_.Finish(grpc::Status::CANCELLED, &tags_[kFinished]);
      return stream_.Read(&request_, &tags_[kRead]);
    case kFinished:
      delete this;
      return;
  }
}

void Call::Step(floor::Step step) {
  if (request_.Length() != RequestBytes(server_->sizes(), step)) {
    return stream_.Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "wrong request size"),
                          &tags_[kFinished]);
  }
  if (step == floor::Step::kRegister) return Answer();
  server_->Hold(step, this);
}

void Call::Answer() {
  answer_ = Bytes(AnswerBytes(server_->sizes(), step_));
  if (session_) return stream_.Write(answer_, &tags_[kWritten]);
  stream_.WriteAndFinish(answer_, grpc::WriteOptions(), grpc::Status::OK, &tags_[kFinished]);
}

}  // namespace

absl::StatusOr<std::string> StartFloorServer(const ServerOptions& options) {
  auto* server = new Server(options);  // lives until the process exits
  return server->Start();
}

}  // namespace meshd::bench::floor
