// AgentDaemon (see agent_daemon.h).
#include "daemon/runtime/agent_daemon.h"

#include <unistd.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "common/log/log.h"
#include "daemon/agent/gpu/gpu_discovery.h"
#include "daemon/metrics/agent_metrics.h"
#include "daemon/runtime/agent_identity.h"
#include "daemon/security/listen_policy.h"

namespace meshd::runtime {

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

absl::StatusOr<std::unique_ptr<AgentDaemon>> AgentDaemon::Start(const AgentDaemonOptions& options) {
  if (options.socket.empty()) return absl::InvalidArgumentError("--socket needs a path");
  gid_t socket_gid = static_cast<gid_t>(-1);  // the daemon's own group
  if (!options.socket_group.empty()) {
    absl::StatusOr<gid_t> gid = service::GroupId(options.socket_group);
    if (!gid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--socket-group: ", gid.status().message()));
    }
    socket_gid = *gid;
  }
  absl::StatusOr<AgentIdentity> identity =
      ResolveAgentIdentity(options.node_name, options.hostname, HostName(), InKubernetesPod());
  if (!identity.ok()) return identity.status();
  if (!identity->warning.empty()) log::Warn(identity->warning, {{"hostname", HostName()}});
  const std::string& node = identity->node_name;
  std::unique_ptr<agent::GpuDiscovery> discovery =
      options.simulate_gpus > 0 ? agent::SimulatedDiscovery(options.simulate_gpus, node)
                                : agent::NvmlDiscovery(options.nvml_library);
  absl::StatusOr<std::vector<domain::Gpu>> gpus = discovery->Discover();
  if (!gpus.ok()) {
    if (options.simulate_gpus > 0) return gpus.status();
    return absl::FailedPreconditionError(
        absl::StrCat("no GPU found on this host (", gpus.status().message(),
                     "). To run the agent without GPUs, declare them: --simulate-gpus N"));
  }
  if (!options.health_listen.empty()) {
    if (absl::Status s = security::CheckPlaintextListen(
            "--health-listen", options.health_listen, options.tls.enabled(), options.insecure);
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials =
      security::ChannelCredentialsFor(options.tls, options.tls_refresh);
  if (!channel_credentials.ok()) return channel_credentials.status();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> health_credentials =
      security::ServerCredentialsFor(options.tls, options.tls_refresh);
  if (!health_credentials.ok()) return health_credentials.status();
  std::unique_ptr<AgentDaemon> d(new AgentDaemon());
  const std::string address = absl::StrCat("unix:", options.socket);
  if (options.clock != nullptr) d->clock_ = options.clock;
  agent::AgentOptions agent_options;
  agent_options.coordinator = options.coordinator;
  agent_options.node_name = node;
  agent_options.hostname = identity->hostname;
  agent_options.agent_address = address;
  agent_options.allow_uids = options.allow_uids;
  d->client_ = std::make_unique<agent::GrpcCoordinatorClient>(
      options.coordinator, agent_options.max_backoff, *channel_credentials);
  d->agent_ = std::make_unique<agent::Agent>(agent_options, *gpus, d->clock_, d->client_.get());
  d->service_ = std::make_unique<service::AgentService>(d->agent_.get(), d->clock_, &d->peers_);
  d->service_->SetLeave([d = d.get()](const std::string& reason, auto done) {
    d->Leave(reason, std::move(done));
  });
  service::ServerOptions server_options;
  server_options.listen = {address};
  server_options.unix_socket_group = socket_gid;
  server_options.unix_peers = &d->peers_;
  if (options.metrics != nullptr) {
    metrics::RpcMetrics* rpc = &options.metrics->rpc();
    server_options.interceptors = [rpc] { return rpc->Interceptors("agent", {"meshd.v1.Agent"}); };
  }
  auto server = service::GrpcServer::Start(server_options, {d->service_.get()}, {"meshd.v1.Agent"});
  if (!server.ok()) return server.status();
  d->server_ = *std::move(server);
  if (!options.health_listen.empty()) {
    service::ServerOptions health_options;
    health_options.listen = {options.health_listen};
    health_options.tcp_credentials = *health_credentials;
    auto health = service::GrpcServer::Start(health_options, {}, {"meshd.v1.Agent"});
    if (!health.ok()) return health.status();
    d->health_server_ = *std::move(health);
  }
  d->agent_->Start();
  agent::Agent* a = d->agent_.get();
  if (options.metrics != nullptr) {
    d->metrics_ = options.metrics;
    d->collector_ = std::make_shared<metrics::AgentMetrics>([a] { return a->Status(); });
    d->metrics_->Add(d->collector_);
  }
  // Heartbeats are due at the coordinator's interval (10 ms at the least), deadlines to the
  // millisecond: a tick every 10 ms costs a lock and a few map lookups.
  // Once the node left, nothing more: no heartbeat, no re-registration.
  d->ticker_ = std::make_unique<service::Ticker>(absl::Milliseconds(10), [d = d.get(), a] {
    if (!d->left_.load()) a->Tick();
  });
  if (!options.health_listen.empty() && !options.tls.enabled() &&
      !security::IsLocalOnly(options.health_listen)) {
    log::Warn("agent health port served PLAINTEXT to other hosts (--insecure)",
              {{"address", d->health_address()}});
    if (options.metrics != nullptr) options.metrics->SetInsecure(true);
  }
  log::Info("agent serving",
            {{"socket", d->address()},
             {"node", node},
             {"hostname", identity->hostname},
             {"gpus", absl::StrCat(gpus->size(), options.simulate_gpus > 0 ? " (simulated)" : "")},
             {"coordinator", options.coordinator},
             {"tls", options.tls.enabled() ? "mutual" : "off"},
             {"health", d->health_address()}});
  return d;
}

void AgentDaemon::Leave(const std::string& reason,
                        std::function<void(absl::StatusOr<v1::LeaveResponse>)> done) {
  const domain::AgentView before = agent_->Status();
  v1::LeaveResponse answer;
  answer.set_node(before.inventory.node);
  if (left_.load()) {
    answer.set_summary(absl::StrCat("node '", before.inventory.node, "' has already left"));
    return done(answer);
  }
  std::set<std::string> jobs;
  for (const domain::AgentView::Worker& w : before.workers) jobs.insert(w.job);
  for (const std::string& j : jobs) answer.add_jobs(j);
  answer.set_workers(static_cast<uint32_t>(before.workers.size()));
  const std::string why = reason.empty() ? "the agent leaves" : reason;
  log::Info("node leaving the cluster",
            {{"node", before.inventory.node}, {"reason", why}, {"jobs", absl::StrJoin(jobs, ",")}});
  agent_->Depart(why, absl::Seconds(10), [this, answer, done = std::move(done)](absl::Status s) mutable {
    const bool not_registered = s.code() == absl::StatusCode::kFailedPrecondition;
    if (!s.ok() && !not_registered) {
      log::Warn("could not tell the coordinator this node leaves",
                {{"node", answer.node()}, {"error", std::string(s.message())}});
      return done(absl::Status(
          s.code(), absl::StrCat("the coordinator was not told that node '", answer.node(),
                                 "' leaves (", s.message(),
                                 "); its workers were told and it admits none; stopping the agent "
                                 "tries again, and failing that the coordinator notices at its "
                                 "heartbeat timeout")));
    }
    left_.store(true);
    answer.set_coordinator_told(!not_registered);
    const std::string ended =
        answer.jobs().empty()
            ? "it was in no job"
            : absl::StrCat(answer.jobs_size(), answer.jobs_size() == 1 ? " job (" : " jobs (",
                           absl::StrJoin(answer.jobs(), ", "),
                           not_registered ? ") ended here" : ") ended their generations (node left)");
    answer.set_summary(absl::StrCat(
        "node '", answer.node(), "' left the cluster",
        not_registered ? " (it was not registered: nothing to tell the coordinator)" : "", "; ", ended,
        "; ", answer.workers(), answer.workers() == 1 ? " local worker" : " local workers",
        " told; the agent admits no worker until it restarts"));
    log::Info("node left the cluster",
              {{"node", answer.node()}, {"coordinator_told", not_registered ? "false" : "true"}});
    done(answer);
  });
}

void AgentDaemon::Stop() {
  if (ticker_ == nullptr) return;
  log::Info("agent shutting down");
  if (collector_ != nullptr) metrics_->Remove(collector_);
  ticker_->Stop();
  server_->SetNotServing();
  if (health_server_ != nullptr) health_server_->SetNotServing();
  if (!left_.load()) DepartOnStop();  // else Leave told the coordinator already
  agent_->Stop();
  server_->Shutdown(absl::Seconds(2));
  if (health_server_ != nullptr) health_server_->Shutdown(absl::Seconds(1));
  ticker_.reset();
}

void AgentDaemon::DepartOnStop() {
  // Tell the coordinator the node leaves, so that its jobs' other workers are told now; a
  // coordinator that does not answer in time is not waited for (it then notices the silence).
  auto departed = std::make_shared<absl::Notification>();  // the answer may come after the wait
  agent_->Depart("", absl::Seconds(2), [departed](absl::Status s) {
    if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition) {
      log::Warn("could not tell the coordinator this node leaves; it notices at its heartbeat "
                "timeout",
                {{"error", std::string(s.message())}});
    }
    departed->Notify();
  });
  departed->WaitForNotificationWithTimeout(absl::Seconds(3));
}

}  // namespace meshd::runtime
