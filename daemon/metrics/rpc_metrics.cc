// RpcMetrics and its server interceptor (see rpc_metrics.h).
#include "daemon/metrics/rpc_metrics.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/sync/handoff.h"
#include "google/protobuf/descriptor.h"

namespace meshd::metrics {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::ServerRpcInfo;

// From half a millisecond (a KV read) to ten minutes (a JoinJob held until the job's last node).
const prometheus::Histogram::BucketBoundaries& Buckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
      1,      2.5,   5,      10,    30,   60,    120,  300, 600};
  return *b;
}

const char* TypeName(ServerRpcInfo::Type type) {
  switch (type) {
    case ServerRpcInfo::Type::UNARY:
      return "unary";
    case ServerRpcInfo::Type::CLIENT_STREAMING:
      return "client_stream";
    case ServerRpcInfo::Type::SERVER_STREAMING:
      return "server_stream";
    case ServerRpcInfo::Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unknown";
}

const char* CodeName(int code) {
  static const char* const kNames[RpcMetrics::kStatusCodes] = {
      "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
      "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
      "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
      "DataLoss", "Unauthenticated"};
  return code >= 0 && code < RpcMetrics::kStatusCodes ? kNames[code] : "Unknown";
}

// Times one call from its start to its status (or to its end, when the client went away first:
// then the call counts as Canceled).
class CallInterceptor : public grpc::experimental::Interceptor {
 public:
  CallInterceptor(RpcMetrics* metrics, RpcMetrics::Method* method)
      : metrics_(metrics), method_(method), start_(std::chrono::steady_clock::now()) {
    method_->started->Increment();
    sync::HandOff(this);  // gRPC runs its hooks, one after another, on any thread
  }
  ~CallInterceptor() override {
    sync::TakeOver(this);
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    sync::TakeOver(this);
    if (!recorded_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    sync::HandOff(this);
    methods->Proceed();
  }

 private:
  void Record(int code) {
    recorded_ = true;
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start_;
    metrics_->Handled(*method_, code, took.count());
  }

  RpcMetrics* const metrics_;
  RpcMetrics::Method* const method_;
  const std::chrono::steady_clock::time_point start_;
  bool recorded_ = false;
};

class Factory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  Factory(RpcMetrics* metrics, std::string server, std::set<std::string> services)
      : metrics_(metrics), server_(std::move(server)), services_(std::move(services)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(ServerRpcInfo* info) override {
    const char* path = info->method();
    return new CallInterceptor(
        metrics_, &metrics_->MethodFor(server_, services_, path ? path : "", info->type()));
  }

 private:
  RpcMetrics* const metrics_;
  const std::string server_;
  const std::set<std::string> services_;
};

}  // namespace

RpcMetrics::RpcMetrics()
    : started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("gRPC calls started on the server")
                   .Register(registry_)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("gRPC calls completed on the server, by status code")
                   .Register(registry_)),
      seconds_(prometheus::BuildHistogram()
                   .Name("grpc_server_handling_seconds")
                   .Help("Time from the start of a gRPC call to its status, held waits included")
                   .Register(registry_)) {}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcMetrics::Interceptors(const std::string& server, const std::vector<std::string>& services) {
  std::set<std::string> known(services.begin(), services.end());
  known.insert("grpc.health.v1.Health");
  known.insert("grpc.reflection.v1alpha.ServerReflection");
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<Factory>(this, server, std::move(known)));
  return out;
}

RpcMetrics::Method& RpcMetrics::MethodFor(const std::string& server,
                                          const std::set<std::string>& services,
                                          const std::string& path, ServerRpcInfo::Type type) {
  // "/meshd.v1.Coordinator/JoinJob" -> service, method; anything else is "unknown".
  std::string service = "unknown";
  std::string method = "unknown";
  const std::vector<std::string> parts = absl::StrSplit(path, '/');
  if (parts.size() == 3 && parts[0].empty() && services.contains(parts[1]) &&
      google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
          absl::StrCat(parts[1], ".", parts[2])) != nullptr) {
    service = parts[1];
    method = parts[2];
  }
  const std::string key = absl::StrCat(server, "\n", service, "/", method, "\n", TypeName(type));
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Method>& m = methods_[key];
  if (m == nullptr) {
    m = std::make_unique<Method>();
    m->labels = {{"server", server},
                 {"grpc_service", service},
                 {"grpc_method", method},
                 {"grpc_type", TypeName(type)}};
    m->started = &started_.Add(m->labels);
    m->seconds = &seconds_.Add(m->labels, Buckets());
  }
  return *m;
}

void RpcMetrics::Handled(Method& m, int code, double seconds) {
  if (code < 0 || code >= kStatusCodes) code = grpc::StatusCode::UNKNOWN;
  prometheus::Counter* counter = m.handled[code].load(std::memory_order_acquire);
  if (counter == nullptr) {
    prometheus::Labels labels = m.labels;
    labels["grpc_code"] = CodeName(code);
    counter = &handled_.Add(labels);  // the same counter for the same labels, whoever adds first
    m.handled[code].store(counter, std::memory_order_release);
  }
  counter->Increment();
  m.seconds->Observe(seconds);
}

}  // namespace meshd::metrics
