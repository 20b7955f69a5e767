// RpcMetrics: every gRPC call a daemon serves, counted the way go-grpc-prometheus names it, so
// existing gRPC dashboards work unchanged:
//   grpc_server_started_total{server,grpc_service,grpc_method,grpc_type}
//   grpc_server_handled_total{server,grpc_service,grpc_method,grpc_type,grpc_code}
//   grpc_server_handling_seconds{server,grpc_service,grpc_method,grpc_type} (histogram; held calls
//     such as JoinJob count the time they were held)
// `server` is "coordinator" or "agent". Calls are seen through a gRPC server interceptor
// (Interceptors()). Label values are bounded: a method that is not in the server's services (as
// their compiled descriptors say) is counted as grpc_service="unknown", grpc_method="unknown".
//
// Thread-safety: thread-safe.
#ifndef MESHD_DAEMON_METRICS_RPC_METRICS_H_
#define MESHD_DAEMON_METRICS_RPC_METRICS_H_

#include <array>
#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/labels.h"
#include "prometheus/registry.h"

namespace meshd::metrics {

class RpcMetrics : public prometheus::Collectable {
 public:
  // grpc::StatusCode runs from OK (0) to UNAUTHENTICATED (16).
  static constexpr int kStatusCodes = 17;

  // The series of one method on one server.
  struct Method {
    prometheus::Counter* started = nullptr;
    prometheus::Histogram* seconds = nullptr;
    std::array<std::atomic<prometheus::Counter*>, kStatusCodes> handled{};  // by code
    prometheus::Labels labels;  // server, grpc_service, grpc_method, grpc_type
  };

  RpcMetrics();

  // Interceptor factories for a server named `server` serving `services` (full names, e.g.
  // "meshd.v1.Coordinator"; health and reflection are always known).
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> Interceptors(
      const std::string& server, const std::vector<std::string>& services);

  // The series for a call of `path` ("/meshd.v1.Coordinator/JoinJob") on `server`.
  Method& MethodFor(const std::string& server, const std::set<std::string>& services,
                    const std::string& path, grpc::experimental::ServerRpcInfo::Type type);
  void Handled(Method& m, int code, double seconds);

  std::vector<prometheus::MetricFamily> Collect() const override { return registry_.Collect(); }

 private:
  prometheus::Registry registry_;
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& seconds_;
  absl::Mutex mu_;
  // Keyed by server + path; entries are never removed (their number is bounded).
  absl::flat_hash_map<std::string, std::unique_ptr<Method>> methods_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::metrics

#endif  // MESHD_DAEMON_METRICS_RPC_METRICS_H_
