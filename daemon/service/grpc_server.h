// GrpcServer: starts gRPC services on TCP and unix-socket listeners with server reflection (so
// grpcurl can list and describe everything) and grpc.health.v1.Health (one status per service,
// NOT_SERVING from the moment shutdown begins), and sane message size limits. TCP listeners use
// `tcp_credentials` (mutual TLS in production); unix sockets stay plaintext, guarded by the
// socket's file permissions.
//
// Unix sockets are bound and accepted here, not by gRPC: a socket another process still accepts
// on is never replaced (a stale one is), its mode and group are set before it accepts, and each
// connection's SO_PEERCRED is read before gRPC serves it (gRPC 1.51 does not expose it: a call on
// a connection gRPC accepted has peer() "unix:" and nothing in its auth context; a connection
// handed over with grpc::AddInsecureChannelFromFd has peer() "fd:<N>", which UnixPeers maps back).
//
// Thread-safety: Shutdown() may be called from any thread, once or more; UnixPeers is
// thread-safe.
#ifndef MESHD_DAEMON_SERVICE_GRPC_SERVER_H_
#define MESHD_DAEMON_SERVICE_GRPC_SERVER_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/service/async_unary.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/support/server_interceptor.h"

namespace meshd::service {

// The process at the other end of a unix-socket connection, as the kernel saw it when that process
// called connect() (SO_PEERCRED): it cannot be forged, and does not follow a later setuid.
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// The credentials of each connection a GrpcServer accepted on its unix sockets, for the services
// to look up by call (ServerContext::peer()). One per server; it must outlive the server.
class UnixPeers {
 public:
  // The credentials of the process that made the connection a call came on, given the call's
  // peer(). nullopt: not a connection of a unix socket of this server (TCP, in-process).
  std::optional<PeerCredentials> Find(absl::string_view peer) const;

  // For GrpcServer: `fd` (a connection just accepted, not yet given to gRPC) has these
  // credentials. An fd number is reused only after gRPC closed the connection, which it does once
  // no call of it is left, so an entry is right for as long as a call can ask for it.
  void Record(int fd, const PeerCredentials& credentials);

 private:
  mutable absl::Mutex mu_;
  std::unordered_map<int, PeerCredentials> by_fd_ ABSL_GUARDED_BY(mu_);
};

// The id of the group named `name` (getgrnam). NOT_FOUND when the host has none of that name.
absl::StatusOr<gid_t> GroupId(const std::string& name);

class UnixListener;

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
  // The group unix sockets are given (chown; the daemon must be root or a member of it); -1: the
  // daemon's own group, nothing changed.
  gid_t unix_socket_group = static_cast<gid_t>(-1);
  // Where the credentials of each unix-socket connection are recorded (not owned; outlives the
  // server); nullptr: not recorded.
  UnixPeers* unix_peers = nullptr;
  // Server interceptors (e.g. call metrics), made once when the server starts.
  std::function<
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>()>
      interceptors;
  // Completion queues (one thread each) for the methods of services that implement AsyncMethods,
  // shared by every method not on a liveness lane. The liveness lanes (async_unary.h's Lane) get
  // one more queue and thread each, that nothing else is asked for on.
  int completion_queues = 8;
};

class GrpcServer {
 public:
  // Services are not owned and must outlive the server; those that also implement AsyncMethods
  // get their async methods' calls on the server's own completion queues. `health_names` are the
  // service names reported SERVING (e.g. "meshd.v1.Coordinator"). A unix socket's path may hold
  // a stale socket (nothing accepts on it: it is replaced), never a live one or another file.
  // Errors: INVALID_ARGUMENT no listener, a malformed address or a socket path too long;
  // FAILED_PRECONDITION a process accepts connections on a unix socket's path (the message names
  // its pid when the kernel tells it), or its group could not be set (no permission);
  // UNAVAILABLE a listener could not be bound (in use, no permission, a regular file where the
  // socket should be).
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
  // The shared queues, then one per liveness lane (kLivenessLanes).
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> queue_threads_;
  std::unique_ptr<AsyncQueues> async_queues_;
  std::unique_ptr<grpc::Server> server_;
  // Declared after server_ so that they stop (and hand no more connections to it) first.
  std::vector<std::unique_ptr<UnixListener>> unix_listeners_;
  std::vector<std::string> addresses_;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_GRPC_SERVER_H_
