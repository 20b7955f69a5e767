// GrpcServer: starts gRPC services on TCP and unix-socket listeners with server reflection (so
// grpcurl can list and describe everything) and grpc.health.v1.Health (one status per service,
// NOT_SERVING from the moment shutdown begins), and sane message size limits. TCP listeners use
// `tcp_credentials` (mutual TLS in production); unix sockets stay plaintext, guarded by the
// socket's file permissions.
//
// Thread-safety: Shutdown() may be called from any thread, once or more.
#ifndef MESHD_DAEMON_SERVICE_GRPC_SERVER_H_
#define MESHD_DAEMON_SERVICE_GRPC_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/service/async_unary.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/support/server_interceptor.h"

namespace meshd::service {

struct ServerOptions {
  // "HOST:PORT" (port 0 picks a free one) or "unix:/path/to.sock".
  std::vector<std::string> listen;
  int max_receive_bytes = 8 << 20;  // KV values are at most 4 MiB
  int max_send_bytes = 256 << 20;   // introspection of very large clusters
  // Credentials of the TCP listeners (e.g. security::MutualTlsServerCredentials); nullptr:
  // plaintext. Unix-socket listeners are always plaintext.
  std::shared_ptr<grpc::ServerCredentials> tcp_credentials;
  // Permissions of unix sockets (owner and group may connect).
  unsigned unix_socket_mode = 0660;
  // Server interceptors (e.g. call metrics), made once when the server starts.
  std::function<
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>()>
      interceptors;
  // Completion queues (one thread each) for the methods of services that implement AsyncMethods.
  int completion_queues = 8;
};

class GrpcServer {
 public:
  // Services are not owned and must outlive the server; those that also implement AsyncMethods
  // get their async methods' calls on the server's own completion queues. `health_names` are the
  // service names reported SERVING (e.g. "meshd.v1.Coordinator"). Errors: INVALID_ARGUMENT no
  // listener or a malformed address; UNAVAILABLE a listener could not be bound (in use, no
  // permission, a regular file where the socket should be).
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services,
      const std::vector<std::string>& health_names);
  ~GrpcServer();

  // One per listener, in order: "127.0.0.1:41235" with the port resolved, or "unix:/path".
  const std::vector<std::string>& addresses() const { return addresses_; }
  // The first step of shutdown: every service reports NOT_SERVING (so health checks and load
  // balancers stop routing here) while calls are still served.
  void SetNotServing();
  // SetNotServing(), then new calls are refused and calls still running after `grace` are
  // cancelled.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer() = default;
  void ServeQueues(const std::vector<AsyncMethods*>& async);
  // Once the server is shut down: waits (until `deadline`) for the async calls to end, then shuts
  // the queues and joins their threads.
  void StopQueues(absl::Time deadline);

  // Declared before server_ so that the server is destroyed first.
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> queue_threads_;
  std::unique_ptr<AsyncQueues> async_queues_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> addresses_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_GRPC_SERVER_H_
