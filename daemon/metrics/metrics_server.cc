// MetricsServer (see metrics_server.h).
#include "daemon/metrics/metrics_server.h"

#include <exception>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "daemon/metrics/families.h"
#include "prometheus/exposer.h"

namespace meshd::metrics {
namespace {

// meshd_build_info{version="0.1.0"} 1: the usual way to tell which build a target runs.
class BuildInfo : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    return {GaugeFamily("meshd_build_info", "The running meshd build (always 1)",
                        {{{{"version", MESHD_VERSION}}, 1}})};
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", listen,
                     "' must be HOST:PORT, e.g. 0.0.0.0:9464 (port 0: a free one)"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  try {
    // Two threads: scrapes are rare and short.
    server->exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", e.what(),
                                               " (address in use or not local?)"));
  }
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError(absl::StrCat("could not bind ", listen));
  server->address_ = absl::StrCat(listen.substr(0, colon), ":", ports[0]);
  server->rpc_ = std::make_shared<RpcMetrics>();
  server->Add(server->rpc_);
  server->Add(std::make_shared<BuildInfo>());
  return server;
}

MetricsServer::~MetricsServer() {
  // The exposer stops its threads first, so no scrape runs while the collectors go.
  exposer_.reset();
}

void MetricsServer::Add(std::shared_ptr<prometheus::Collectable> collector) {
  exposer_->RegisterCollectable(collector);
  absl::MutexLock lock(&mu_);
  held_.push_back(std::move(collector));
}

void MetricsServer::Remove(const std::shared_ptr<prometheus::Collectable>& collector) {
  exposer_->RemoveCollectable(collector);
  absl::MutexLock lock(&mu_);
  std::erase(held_, collector);
}

}  // namespace meshd::metrics
