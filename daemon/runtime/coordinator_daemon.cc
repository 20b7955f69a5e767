// CoordinatorDaemon (see coordinator_daemon.h).
#include "daemon/runtime/coordinator_daemon.h"

#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "daemon/security/listen_policy.h"
#include "daemon/security/membership_key.h"
#include "daemon/security/random_secret.h"

namespace meshd::runtime {
namespace {

// A node joining a round is one line per node per job (16,384 at once on a large cluster): debug;
// the round's close logs the outcome once (generation started, its nodes, the rendezvous time).
// A node lost, and a generation ended by a lost or restarted node, is what an operator looks
// for: warn.
log::Level EventLevel(const coordinator::Event& e) {
  using coordinator::EventKind;
  switch (e.kind) {
    case EventKind::kNodeJoined:
      return log::Level::kDebug;
    case EventKind::kNodeLost:
    case EventKind::kRecoveryRefused:
    case EventKind::kRoundTimedOut:
      return log::Level::kWarn;
    case EventKind::kGenerationEnded:
      return e.reason == domain::EndReason::kNodeLost ||
                     e.reason == domain::EndReason::kNodeRestarted
                 ? log::Level::kWarn
                 : log::Level::kInfo;
    default:
      return log::Level::kInfo;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorDaemon>> CoordinatorDaemon::Start(
    const CoordinatorDaemonOptions& options) {
  if (options.heartbeat_interval <= absl::ZeroDuration() ||
      options.heartbeat_timeout <= options.heartbeat_interval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heartbeat timeout (", absl::FormatDuration(options.heartbeat_timeout),
        ") must be longer than the heartbeat interval (",
        absl::FormatDuration(options.heartbeat_interval), "), which must be positive"));
  }
  if (absl::Status s = security::CheckPlaintextListen("--listen", options.listen,
                                                      options.tls.enabled(), options.insecure);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      security::ServerCredentialsFor(options.tls, options.tls_refresh);
  if (!credentials.ok()) return credentials.status();
  absl::StatusOr<security::AdminPolicy> admins =
      security::AdminPolicy::Parse(options.admin_identities);
  if (!admins.ok()) return admins.status();
  if (options.tls.enabled() && options.admin_identities.empty()) {
    log::Info("no --admin-identity: no certificate may use the admin calls (meshctl node "
              "cordon|drain|uncordon|forget, meshctl job end)");
  } else if (!options.tls.enabled() && !options.admin_identities.empty()) {
    log::Warn("--admin-identity has no effect without TLS: the admin calls are open to callers on "
              "this host only");
  }
  std::unique_ptr<CoordinatorDaemon> d(new CoordinatorDaemon());
  if (options.clock != nullptr) d->clock_ = options.clock;
  coordinator::CoordinatorOptions core_options;
  core_options.heartbeat_interval = options.heartbeat_interval;
  core_options.heartbeat_timeout = options.heartbeat_timeout;
  core_options.max_heartbeats_per_second = options.max_heartbeats_per_second;
  core_options.recovery_window = options.recovery_window;
  core_options.node_retention = options.node_retention;
  core_options.job_retention = options.job_retention;
  core_options.kv_limits = options.kv_limits;
  core_options.round_timeout = options.round_timeout;
  core_options.new_secret = security::RandomSecret;
  if (!options.membership_key.empty()) {
    absl::StatusOr<std::string> key = security::LoadOrCreateMembershipKey(options.membership_key);
    if (!key.ok()) return key.status();
    core_options.sign_membership = security::MembershipSigner(*std::move(key));
  } else {
    log::Info("no --membership-key: after a restart this coordinator takes the generations agents "
              "report on their word");
  }
  CoordinatorDaemon* raw = d.get();
  if (options.metrics != nullptr) {
    d->metrics_ = options.metrics;
    d->collector_ =
        std::make_shared<metrics::CoordinatorMetrics>([raw] { return raw->core_->Status(); });
  }
  metrics::CoordinatorMetrics* collector = d->collector_.get();
  d->core_ = std::make_unique<coordinator::Coordinator>(
      d->clock_, core_options, [collector](const coordinator::Event& e) {
        log::Write(EventLevel(e), e.what,
                   {{"event", coordinator::EventKindName(e.kind)},
                    {"job", e.job},
                    {"node", e.node},
                    {"generation", e.generation ? absl::StrCat(e.generation) : ""},
                    {"by", e.by}});
        if (collector != nullptr) collector->OnEvent(e);
      });
  d->service_ = std::make_unique<service::CoordinatorService>(d->core_.get(), d->clock_,
                                                               absl::Minutes(10), *admins);
  d->admin_service_ = std::make_unique<service::AdminService>(d->core_.get(), *std::move(admins));
  service::ServerOptions server_options;
  server_options.listen = {options.listen};
  server_options.tcp_credentials = *credentials;
  if (options.metrics != nullptr) {
    metrics::RpcMetrics* rpc = &options.metrics->rpc();
    server_options.interceptors = [rpc] {
      return rpc->Interceptors("coordinator", {"meshd.v1.Coordinator", "meshd.v1.Admin"});
    };
  }
  absl::StatusOr<std::unique_ptr<service::GrpcServer>> server =
      service::GrpcServer::Start(server_options, {d->service_.get(), d->admin_service_.get()},
                                 {"meshd.v1.Coordinator", "meshd.v1.Admin"});
  if (!server.ok()) return server.status();
  d->server_ = *std::move(server);
  if (d->collector_ != nullptr) d->metrics_->Add(d->collector_);
  coordinator::Coordinator* core = d->core_.get();
  d->ticker_ = std::make_unique<service::Ticker>(options.tick, [core] { core->CheckDeadlines(); });
  const bool exposed = !options.tls.enabled() && !security::IsLocalOnly(options.listen);
  if (exposed) {
    log::Warn("coordinator serving PLAINTEXT to other hosts (--insecure): anyone who can reach "
              "it can act as any node or job; use --tls-cert/--tls-key/--tls-ca",
              {{"address", d->address()}});
  }
  if (options.metrics != nullptr && exposed) options.metrics->SetInsecure(true);
  log::Info("coordinator serving",
            {{"address", d->address()},
             {"tls", options.tls.enabled() ? "mutual" : "off"},
             {"heartbeat_timeout", absl::FormatDuration(options.heartbeat_timeout)}});
  return d;
}

void CoordinatorDaemon::Stop() {
  if (ticker_ == nullptr) return;
  log::Info("coordinator shutting down");
  if (collector_ != nullptr) metrics_->Remove(collector_);
  ticker_->Stop();
  core_->Shutdown();  // waits finish with CANCELLED before the server stops
  server_->Shutdown(absl::Seconds(2));
  ticker_.reset();
}

}  // namespace meshd::runtime
