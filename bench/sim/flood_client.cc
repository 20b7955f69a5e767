// FloodClient (see flood_client.h).
#include "bench/sim/flood_client.h"

#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace meshd::bench {
namespace {

const char* CodeName(grpc::StatusCode c) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN_CODE";
}

struct Call {
  grpc::ClientContext ctx;
  grpc::ByteBuffer request, response;
  size_t bytes = 0;
};

}  // namespace

FloodClient::FloodClient(const std::string& address, std::vector<FloodRequest> requests,
                         int in_flight)
    : requests_(std::move(requests)), in_flight_(in_flight) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  args.SetInt("grpc.use_local_subchannel_pool", 1);  // its own connection
  channel_ = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  stub_ = std::make_unique<grpc::GenericStub>(channel_);
}

void FloodClient::Start() {
  start_ = absl::Now();
  for (int i = 0; i < in_flight_; ++i) Next();
}

void FloodClient::Next() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
  }
  const FloodRequest& r = requests_[next_++ % requests_.size()];
  auto* c = new Call;
  c->request = r.body;  // shares the slices
  c->bytes = r.bytes;
  c->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  if (!calls_.Add(&c->ctx)) return delete c;
  stub_->UnaryCall(&c->ctx, r.method, grpc::StubOptions(), &c->request, &c->response,
                   [this, c](grpc::Status s) {
                     CallsInFlight::Gone gone(&calls_);  // after the call is deleted
                     std::unique_ptr<Call> own(c);
                     calls_.Answered(&c->ctx);
                     {
                       absl::MutexLock lock(&mu_);
                       if (stopping_) return;
                       ++result_.answered;
                       result_.bytes += c->bytes;
                       ++result_.codes[CodeName(s.error_code())];
                       if (s.ok()) ++result_.ok;
                     }
                     Next();
                   });
}

void FloodClient::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    stop_ = absl::Now();
  }
  calls_.StopAndDrain();
}

FloodResult FloodClient::Result() {
  absl::MutexLock lock(&mu_);
  FloodResult r = result_;
  r.seconds = absl::ToDoubleSeconds((stopping_ ? stop_ : absl::Now()) - start_);
  return r;
}

}  // namespace meshd::bench
