// MetricsServer (see metrics_server.h).
#include "daemon/metrics/metrics_server.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <exception>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "civetweb.h"
#include "daemon/metrics/families.h"
#include "daemon/metrics/https_endpoint.h"
#include "daemon/metrics/metrics_tls.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"

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

// meshd_insecure (see MetricsServer::SetInsecure).
class InsecureGauge : public prometheus::Collectable {
 public:
  void Set(bool insecure) { insecure_ = insecure; }
  std::vector<prometheus::MetricFamily> Collect() const override {
    return {GaugeFamily("meshd_insecure",
                        "1 if this process serves plaintext TCP that other hosts can reach "
                        "(started with --insecure), else 0",
                        {{{}, insecure_ ? 1.0 : 0.0}})};
  }

 private:
  std::atomic<bool> insecure_{false};
};

namespace {

// Opens and closes one connection to `host_port` (waiting 100 ms at most), which wakes a listener
// blocked in poll(). A wildcard host is knocked on through loopback.
void Knock(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  std::string host = host_port.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), host_port.substr(colon + 1).c_str(), &hints, &found) != 0) return;
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    if (connect(fd, found->ai_addr, found->ai_addrlen) != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 100);
    }
    close(fd);
  }
  freeaddrinfo(found);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, const security::TlsFiles& tls, absl::Duration tls_refresh) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", listen,
                     "' must be HOST:PORT, e.g. 0.0.0.0:9464 (port 0: a free one)"));
  }
  const bool ipv6 = listen.front() == '[' || listen.substr(0, colon).find(':') != std::string::npos;
  if (ipv6 && !SupportsIpv6()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics address '", listen,
        "' is IPv6, which this build's HTTP server (civetweb, under prometheus-cpp) was built "
        "without; use an IPv4 one, e.g. 127.0.0.1:9464 or 0.0.0.0:9464"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  if (tls.enabled()) {
    // HTTPS on an endpoint of meshd's own (civetweb's TLS crashes on Debian 12: https_endpoint.h).
    absl::StatusOr<std::shared_ptr<MetricsTls>> files = MetricsTls::Create(tls, tls_refresh);
    if (!files.ok()) return files.status();
    auto https = HttpsEndpoint::Start(listen, *std::move(files),
                                      [raw = server.get()] { return raw->Render(); });
    if (!https.ok()) return https.status();
    server->https_ = *std::move(https);
    server->address_ = absl::StrCat(listen.substr(0, colon), ":", server->https_->port());
  } else {
    try {
      // Two threads: scrapes are rare and short.
      server->exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ",
                                                 e.what(), " (address in use or not local?)"));
    }
    const std::vector<int> ports = server->exposer_->GetListeningPorts();
    if (ports.empty()) return absl::UnavailableError(absl::StrCat("could not bind ", listen));
    server->address_ = absl::StrCat(listen.substr(0, colon), ":", ports[0]);
  }
  server->rpc_ = std::make_shared<RpcMetrics>();
  server->Add(server->rpc_);
  server->Add(std::make_shared<BuildInfo>());
  server->insecure_ = std::make_shared<InsecureGauge>();
  server->Add(server->insecure_);
  return server;
}

bool MetricsServer::SupportsIpv6() {
  constexpr unsigned kIpv6 = 8;  // civetweb's feature bit (see mg_check_feature)
  return mg_check_feature(kIpv6) != 0;
}

MetricsServer::~MetricsServer() {
  https_.reset();  // its threads stop: no Render() runs past here
  if (exposer_ == nullptr) return;
  // The exposer stops its threads first, so no scrape runs while the collectors go. Its listener
  // (civetweb) polls in 2 s slices and notices the stop only between them, which held every
  // daemon's shutdown for up to 2 s; a connection wakes it, so knock until it has stopped.
  std::atomic<bool> stopped{false};
  std::thread stopper([this, &stopped] {
    exposer_.reset();
    stopped = true;
  });
  const absl::Time give_up = absl::Now() + absl::Seconds(5);  // then wait for it as before
  while (!stopped && absl::Now() < give_up) {
    Knock(address_);
    absl::SleepFor(absl::Milliseconds(20));
  }
  stopper.join();
}

void MetricsServer::SetInsecure(bool insecure) { insecure_->Set(insecure); }

void MetricsServer::Add(std::shared_ptr<prometheus::Collectable> collector) {
  if (exposer_ != nullptr) exposer_->RegisterCollectable(collector);
  absl::MutexLock lock(&mu_);
  held_.push_back(std::move(collector));
}

void MetricsServer::Remove(const std::shared_ptr<prometheus::Collectable>& collector) {
  if (exposer_ != nullptr) exposer_->RemoveCollectable(collector);
  absl::MutexLock lock(&mu_);
  std::erase(held_, collector);
}

std::string MetricsServer::Render() {
  std::vector<prometheus::MetricFamily> families;
  {
    absl::MutexLock lock(&mu_);  // as the exposer does: Remove() waits for a scrape under way
    for (const auto& collector : held_) {
      for (auto& family : collector->Collect()) families.push_back(std::move(family));
    }
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace meshd::metrics
