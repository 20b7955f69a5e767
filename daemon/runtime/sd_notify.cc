// sd_notify over a unix datagram socket (see sd_notify.h).
#include "daemon/runtime/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshd::runtime {

absl::Status SdNotify(absl::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return absl::OkStatus();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(absl::StrCat("NOTIFY_SOCKET is too long: ", path));
  }
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  const ssize_t sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                              reinterpret_cast<const sockaddr*>(&addr),
                              static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  const int err = errno;
  close(fd);
  if (sent < 0) {
    return absl::UnavailableError(absl::StrCat("cannot notify systemd at ", path, ": ",
                                               std::strerror(err)));
  }
  return absl::OkStatus();
}

std::optional<absl::Duration> WatchdogInterval() {
  uint64_t usec = 0;
  const char* value = std::getenv("WATCHDOG_USEC");
  if (value == nullptr || !absl::SimpleAtoi(value, &usec) || usec == 0) return std::nullopt;
  if (const char* pid = std::getenv("WATCHDOG_PID")) {
    int64_t owner = 0;
    if (absl::SimpleAtoi(pid, &owner) && owner != getpid()) return std::nullopt;
  }
  return absl::Microseconds(usec) / 2;
}

}  // namespace meshd::runtime
