// GrpcServer (see grpc_server.h).
#include "daemon/service/grpc_server.h"
#include "daemon/service/parse_errors.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/log/log.h"
#include "common/sync/handoff.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_posix.h"

namespace meshd::service {

std::optional<PeerCredentials> UnixPeers::Find(absl::string_view peer) const {
  int fd = -1;
  if (!absl::ConsumePrefix(&peer, "fd:") || !absl::SimpleAtoi(peer, &fd)) return std::nullopt;
  absl::MutexLock lock(&mu_);
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) return std::nullopt;
  return it->second;
}

void UnixPeers::Record(int fd, const PeerCredentials& credentials) {
  absl::MutexLock lock(&mu_);
  by_fd_[fd] = credentials;
}

absl::StatusOr<gid_t> GroupId(const std::string& name) {
  std::vector<char> buf(4096);
  group g{};
  group* found = nullptr;
  int err;
  while ((err = getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 20)) {
    buf.resize(buf.size() * 2);
  }
  if (found == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no group named '", name, "' on this host",
                     err != 0 ? absl::StrCat(" (", strerror(err), ")") : ""));
  }
  return found->gr_gid;
}

namespace {

std::string ErrnoText(int err) { return strerror(err); }

// "another meshd agent is serving on PATH (pid N); ..." for the process behind a live socket.
std::string InUseMessage(const std::string& path, pid_t pid) {
  std::string comm;  // its name, where /proc tells it
  if (pid > 0) std::ifstream(absl::StrCat("/proc/", pid, "/comm")) >> comm;
  const bool meshd = comm == "meshd";
  std::string detail;
  if (pid > 0) {
    detail = absl::StrCat(" (pid ", pid, meshd || comm.empty() ? "" : ", " + comm, ")");
  }
  return absl::StrCat(meshd ? "another meshd agent" : "another process", " is serving on ", path,
                      detail, "; stop it or pick another --socket");
}

sockaddr_un UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Makes `path` free for a new socket: nothing there, or a stale socket (the file of a process that
// is gone) removed. A live socket or any other file is left alone.
absl::Status ClaimSocketPath(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on unix:", path, ": ", ErrnoText(errno)));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::UnavailableError(absl::StrCat("cannot listen on unix:", path, ": ", path,
                                               " exists and is not a socket; remove it"));
  }
  // Whether anything accepts on it. connect() on a unix socket never waits, even blocking: it
  // connects (a listener with room in its backlog), fails with EAGAIN (a listener with a full
  // backlog) or with ECONNREFUSED (no listener: the socket of a process that is gone).
  const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (probe < 0) {
    return absl::UnavailableError(absl::StrCat("cannot probe unix:", path, ": ", ErrnoText(errno)));
  }
  const sockaddr_un addr = UnixAddress(path);
  const int rc = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = rc == 0 ? 0 : errno;
  pid_t pid = 0;
  if (rc == 0) {
    ucred peer{};
    socklen_t len = sizeof peer;
    if (getsockopt(probe, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0) pid = peer.pid;
  }
  close(probe);
  if (rc == 0 || err == EAGAIN) return absl::FailedPreconditionError(InUseMessage(path, pid));
  if (err == ENOENT) return absl::OkStatus();  // removed meanwhile
  if (err != ECONNREFUSED) {
    return absl::UnavailableError(absl::StrCat("cannot listen on unix:", path,
                                               ": cannot tell whether a process serves on it (",
                                               ErrnoText(err), ")"));
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::UnavailableError(
        absl::StrCat("cannot remove the stale socket ", path, ": ", ErrnoText(errno)));
  }
  log::Info("removed a stale unix socket (nothing accepted on it)", {{"socket", path}});
  return absl::OkStatus();
}

}  // namespace

// One unix socket of a GrpcServer: bound and listening from Listen() (connections wait in the
// backlog), accepted on its own thread from Serve() and handed to gRPC one by one, each with its
// SO_PEERCRED recorded first, until Stop().
class UnixListener {
 public:
  static absl::StatusOr<std::unique_ptr<UnixListener>> Listen(const std::string& path,
                                                              const ServerOptions& options);
  ~UnixListener() { Stop(); }

  void Serve(grpc::Server* server, UnixPeers* peers);
  // Stops accepting (connections not yet accepted are refused) and removes the socket's file
  // unless another process replaced it meanwhile. Idempotent; not concurrently with itself.
  void Stop();

 private:
  UnixListener() = default;
  void AcceptLoop(grpc::Server* server, UnixPeers* peers);

  std::string path_;
  int fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe: Stop() writes to it to end AcceptLoop
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Listen(const std::string& path,
                                                                   const ServerOptions& options) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path '", path, "' must be 1 to ",
                                                   sizeof(sockaddr_un::sun_path) - 1, " bytes"));
  }
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (absl::Status s = ClaimSocketPath(path); !s.ok()) return s;

  std::unique_ptr<UnixListener> l(new UnixListener());
  l->path_ = path;
  l->fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (l->fd_ < 0 || pipe2(l->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on unix:", path, ": ", ErrnoText(errno)));
  }
  const sockaddr_un addr = UnixAddress(path);
  if (bind(l->fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    close(l->fd_);
    l->fd_ = -1;  // the file (if any) is not ours: Stop() leaves it
    return absl::UnavailableError(
        absl::StrCat("cannot listen on unix:", path, ": ", ErrnoText(err)));
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    l->dev_ = st.st_dev;
    l->ino_ = st.st_ino;
  }
  // Mode and group before listen(): until then every connect() is refused, so no process outside
  // them ever connects.
  if (chmod(path.c_str(), options.unix_socket_mode) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot set the mode of ", path, ": ", ErrnoText(errno)));
  }
  if (options.unix_socket_group != static_cast<gid_t>(-1) &&
      chown(path.c_str(), static_cast<uid_t>(-1), options.unix_socket_group) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot give ", path, " to group ", options.unix_socket_group, ": ",
                     ErrnoText(errno), " (the daemon must run as root or as a member of it)"));
  }
  if (listen(l->fd_, SOMAXCONN) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on unix:", path, ": ", ErrnoText(errno)));
  }
  return l;
}

void UnixListener::Serve(grpc::Server* server, UnixPeers* peers) {
  thread_ = std::thread([this, server, peers] { AcceptLoop(server, peers); });
}

void UnixListener::AcceptLoop(grpc::Server* server, UnixPeers* peers) {
  pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::Error("unix socket: poll failed, no more connections accepted",
                 {{"socket", path_}, {"error", ErrnoText(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;  // Stop()
    for (;;) {
      // gRPC's endpoints need non-blocking sockets (a blocking one is never read).
      const int conn = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (conn < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        // Out of descriptors or memory: the connection waits in the backlog; try again in a
        // moment (or stop now if asked).
        log::Warn("unix socket: cannot accept a connection",
                  {{"socket", path_}, {"error", ErrnoText(errno)}});
        poll(&fds[1], 1, 100);
        break;
      }
      ucred cred{};
      socklen_t len = sizeof cred;
      if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        // Never on Linux; a connection whose process is unknown is not served.
        log::Warn("unix socket: connection without peer credentials closed",
                  {{"socket", path_}, {"error", ErrnoText(errno)}});
        close(conn);
        continue;
      }
      if (peers != nullptr) peers->Record(conn, {cred.pid, cred.uid, cred.gid});
      grpc::AddInsecureChannelFromFd(server, conn);  // gRPC owns (and closes) it from here
    }
  }
}

void UnixListener::Stop() {
  if (fd_ < 0 && wake_[0] < 0) return;
  if (thread_.joinable()) {
    const char byte = 1;
    (void)!write(wake_[1], &byte, 1);
    thread_.join();
  }
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
    struct stat st {};
    if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
      unlink(path_.c_str());
    }
  }
  for (int& w : wake_) {
    if (w >= 0) close(w);
    w = -1;
  }
}

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
  std::vector<std::unique_ptr<UnixListener>> unix_listeners;  // closed and removed on failure
  for (const std::string& address : options.listen) {
    if (absl::StartsWith(address, "unix:")) {
      std::string path(absl::StripPrefix(address, "unix:"));
      if (absl::StartsWith(path, "//")) path = path.substr(2);  // unix:///abs/path
      auto listener = UnixListener::Listen(path, options);
      if (!listener.ok()) return listener.status();
      unix_listeners.push_back(*std::move(listener));
      ports.push_back(nullptr);  // served from its file descriptors, not a gRPC port
      continue;
    }
    if (address.find(':') == std::string::npos) {
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
  server->unix_listeners_ = std::move(unix_listeners);
  std::vector<AsyncMethods*> async;
  for (grpc::Service* s : services) {
    builder.RegisterService(s);
    if (auto* a = dynamic_cast<AsyncMethods*>(s)) async.push_back(a);
  }
  if (!async.empty()) {
    for (int i = 0; i < std::max(1, options.completion_queues) + kLivenessLanes; ++i) {
      server->queues_.push_back(builder.AddCompletionQueue());
    }
  }
  // First, so that the others (call metrics) see the status it sends.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(ParseErrorInterceptors());
  if (options.interceptors) {
    for (auto& i : options.interceptors()) interceptors.push_back(std::move(i));
  }
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("could not listen on ",
                                               absl::StrJoin(options.listen, ", "),
                                               " (address in use, no permission, or malformed)"));
  }
  for (size_t i = 0, next_unix = 0; i < options.listen.size(); ++i) {
    const std::string& address = options.listen[i];
    if (absl::StartsWith(address, "unix:")) {
      std::string path(absl::StripPrefix(address, "unix:"));
      if (absl::StartsWith(path, "//")) path = path.substr(2);
      server->unix_listeners_[next_unix++]->Serve(server->server_.get(), options.unix_peers);
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
  std::vector<grpc::ServerCompletionQueue*> shared, liveness;
  for (const std::unique_ptr<grpc::ServerCompletionQueue>& q : queues_) shared.push_back(q.get());
  liveness.assign(shared.end() - kLivenessLanes, shared.end());
  shared.resize(shared.size() - kLivenessLanes);
  async_queues_ = std::make_unique<AsyncQueues>(std::move(shared), std::move(liveness));
  for (AsyncMethods* a : async) a->AwaitCalls(async_queues_.get());
  for (const std::unique_ptr<grpc::ServerCompletionQueue>& q : queues_) {
    queue_threads_.emplace_back([cq = q.get()] {
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) {
        sync::TakeOver(tag);  // what was done before it was queued (AsyncUnaryCall's HandOff)
        static_cast<AsyncTag*>(tag)->Proceed(ok);
      }
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
  // No more connections handed to the server once its shutdown begins.
  for (const std::unique_ptr<UnixListener>& l : unix_listeners_) l->Stop();
  if (server_ != nullptr) {
    SetNotServing();
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
  }
  StopQueues(absl::Now() + std::max(grace, absl::Seconds(1)));
}

}  // namespace meshd::service
