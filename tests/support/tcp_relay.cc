// TcpRelay (see tcp_relay.h): one thread, poll() over the listening socket and every pair.
#include "tests/support/tcp_relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace meshd::testing {
namespace {

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return fd;
  if (fd >= 0) close(fd);
  return -1;
}

// Moves what `from` has to `to`; false when either side is done.
bool Pump(int from, int to) {
  char buf[65536];
  const ssize_t n = read(from, buf, sizeof buf);
  if (n <= 0) return false;
  for (ssize_t off = 0; off < n;) {
    const ssize_t w = write(to, buf + off, static_cast<size_t>(n - off));
    if (w <= 0) return false;
    off += w;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpRelay>> TcpRelay::Start(int target_port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    close(fd);
    return absl::InternalError("cannot listen on 127.0.0.1:0");
  }
  std::unique_ptr<TcpRelay> relay(new TcpRelay(fd, ntohs(sa.sin_port), target_port));
  if (pipe2(relay->wake_, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  relay->thread_ = std::thread([r = relay.get()] { r->Serve(); });
  return relay;
}

TcpRelay::TcpRelay(int listen_fd, int port, int target_port)
    : listen_fd_(listen_fd), port_(port), target_port_(target_port) {}

TcpRelay::~TcpRelay() {
  stop_ = true;
  if (wake_[1] >= 0) (void)!write(wake_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  for (int fd : wake_) {
    if (fd >= 0) close(fd);
  }
}

std::string TcpRelay::address() const { return absl::StrCat("127.0.0.1:", port_); }

int TcpRelay::Cut() {
  absl::MutexLock lock(&mu_);
  const int asked = ++cuts_;
  (void)!write(wake_[1], "x", 1);
  const auto done = [this, asked]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return cuts_done_ >= asked;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10));
  return cut_open_;
}

void TcpRelay::Serve() {
  std::vector<std::pair<int, int>> pairs;  // (accepted, to the target)
  const auto close_pair = [](const std::pair<int, int>& p) {
    close(p.first);
    close(p.second);
  };
  while (!stop_) {
    std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    for (const auto& [a, b] : pairs) {
      fds.push_back({a, POLLIN, 0});
      fds.push_back({b, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), 1000) <= 0) continue;
    if (fds[1].revents != 0) {
      char c[64];
      (void)!read(wake_[0], c, sizeof c);
      absl::MutexLock lock(&mu_);
      if (cuts_done_ < cuts_) {
        for (const auto& p : pairs) {
          // A reset, not an orderly close: both peers see the connection break.
          linger l{1, 0};
          setsockopt(p.first, SOL_SOCKET, SO_LINGER, &l, sizeof l);
          setsockopt(p.second, SOL_SOCKET, SO_LINGER, &l, sizeof l);
          close_pair(p);
        }
        cut_open_ = static_cast<int>(pairs.size());
        pairs.clear();
        cuts_done_ = cuts_;
        continue;
      }
    }
    std::vector<std::pair<int, int>> kept;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const short ra = fds[2 + 2 * i].revents, rb = fds[3 + 2 * i].revents;
      bool alive = true;
      if (ra != 0) alive = Pump(pairs[i].first, pairs[i].second);
      if (alive && rb != 0) alive = Pump(pairs[i].second, pairs[i].first);
      if (alive) {
        kept.push_back(pairs[i]);
      } else {
        close_pair(pairs[i]);
      }
    }
    pairs = std::move(kept);
    if (fds[0].revents != 0) {
      const int a = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (a >= 0) {
        const int b = Connect(target_port_);
        if (b >= 0) {
          pairs.emplace_back(a, b);
          ++relayed_;
        } else {
          close(a);
        }
      }
    }
  }
  for (const auto& p : pairs) close_pair(p);
}

}  // namespace meshd::testing
