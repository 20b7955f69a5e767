// GrpcServer (see grpc_server.h).
#include "daemon/service/grpc_server.h"

#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/log/log.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace meshd::service {

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const ServerOptions& options, const std::vector<grpc::Service*>& services,
    const std::vector<std::string>& health_names) {
  if (options.listen.empty()) return absl::InvalidArgumentError("no address to listen on");
  // Linking health.pb.cc and touching it makes grpc.health.v1 describable through reflection.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(options.max_receive_bytes);
  builder.SetMaxSendMessageSize(options.max_send_bytes);
  // gRPC sets SO_REUSEPORT by default, so a second daemon on a taken port would bind silently and
  // steal half the connections; refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // No server-side deadline timer per call: every wait the daemons hold has its own deadline
  // (from the call's, capped) kept by the core, short calls never wait, and the client cancels its
  // own calls at their deadline. With tens of thousands of held calls, gRPC's per-call timers
  // were ~5% of a 16,384-node rendezvous (bench/).
  builder.AddChannelArgument(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 0);
  std::vector<std::unique_ptr<int>> ports;
  for (const std::string& address : options.listen) {
    if (absl::StartsWith(address, "unix:")) {
      std::string path(absl::StripPrefix(address, "unix:"));
      if (absl::StartsWith(path, "//")) path = path.substr(2);  // unix:///abs/path
      std::error_code ec;
      if (std::filesystem::exists(path, ec) && !std::filesystem::is_socket(path, ec)) {
        return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", path,
                                                   " exists and is not a socket; remove it"));
      }
      const std::filesystem::path parent = std::filesystem::path(path).parent_path();
      if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    } else if (address.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("listen address '", address, "' must be HOST:PORT or unix:/path"));
    }
    const bool tcp = !absl::StartsWith(address, "unix:");
    ports.push_back(std::make_unique<int>(0));
    builder.AddListeningPort(address,
                             tcp && options.tcp_credentials != nullptr
                                 ? options.tcp_credentials
                                 : grpc::InsecureServerCredentials(),
                             ports.back().get());
  }
  std::unique_ptr<GrpcServer> server(new GrpcServer());
  std::vector<AsyncMethods*> async;
  for (grpc::Service* s : services) {
    builder.RegisterService(s);
    if (auto* a = dynamic_cast<AsyncMethods*>(s)) async.push_back(a);
  }
  if (!async.empty()) {
    for (int i = 0; i < std::max(1, options.completion_queues); ++i) {
      server->queues_.push_back(builder.AddCompletionQueue());
    }
  }
  if (options.interceptors) builder.experimental().SetInterceptorCreators(options.interceptors());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("could not listen on ",
                                               absl::StrJoin(options.listen, ", "),
                                               " (address in use, no permission, or malformed)"));
  }
  for (size_t i = 0; i < options.listen.size(); ++i) {
    const std::string& address = options.listen[i];
    if (absl::StartsWith(address, "unix:")) {
      std::string path(absl::StripPrefix(address, "unix:"));
      if (absl::StartsWith(path, "//")) path = path.substr(2);
      chmod(path.c_str(), options.unix_socket_mode);
      server->addresses_.push_back(absl::StrCat("unix:", path));
    } else {
      if (*ports[i] == 0) {
        return absl::UnavailableError(absl::StrCat("could not bind ", address));
      }
      const size_t colon = address.rfind(':');
      server->addresses_.push_back(absl::StrCat(address.substr(0, colon), ":", *ports[i]));
    }
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  for (const std::string& name : health_names) health->SetServingStatus(name, true);
  server->ServeQueues(async);
  return server;
}

void GrpcServer::ServeQueues(const std::vector<AsyncMethods*>& async) {
  if (queues_.empty()) return;
  std::vector<grpc::ServerCompletionQueue*> queues;
  for (const std::unique_ptr<grpc::ServerCompletionQueue>& q : queues_) queues.push_back(q.get());
  async_queues_ = std::make_unique<AsyncQueues>(std::move(queues));
  for (AsyncMethods* a : async) a->AwaitCalls(async_queues_.get());
  for (const std::unique_ptr<grpc::ServerCompletionQueue>& q : queues_) {
    queue_threads_.emplace_back([cq = q.get()] {
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) static_cast<AsyncTag*>(tag)->Proceed(ok);
    });
  }
}

void GrpcServer::StopQueues(absl::Time deadline) {
  if (async_queues_ != nullptr && !async_queues_->AwaitNone(deadline)) {
    // A held call was never answered (its service's core still holds it): shutting the queues
    // now would crash when it is. Leave queues and threads to the process's exit.
    log::Error("gRPC server stopped with async calls still unanswered; their queues are left open");
    for (std::thread& t : queue_threads_) t.detach();
    for (std::unique_ptr<grpc::ServerCompletionQueue>& q : queues_) q.release();
    async_queues_.release();
    queue_threads_.clear();
    queues_.clear();
    return;
  }
  for (const std::unique_ptr<grpc::ServerCompletionQueue>& q : queues_) q->Shutdown();
  if (queue_threads_.empty()) {  // never served (the start failed): drain here
    for (const std::unique_ptr<grpc::ServerCompletionQueue>& q : queues_) {
      void* tag = nullptr;
      bool ok = false;
      while (q->Next(&tag, &ok)) {
      }
    }
  }
  for (std::thread& t : queue_threads_) t.join();
  queue_threads_.clear();
}

GrpcServer::~GrpcServer() { Shutdown(absl::Seconds(1)); }

void GrpcServer::SetNotServing() {
  if (server_ != nullptr) server_->GetHealthCheckService()->Shutdown();
}

void GrpcServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_ != nullptr) {
    SetNotServing();
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
  }
  StopQueues(absl::Now() + std::max(grace, absl::Seconds(1)));
}

}  // namespace meshd::service
