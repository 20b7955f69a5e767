// The membership key and its signer (see membership_key.h).
#include "daemon/security/membership_key.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "openssl/evp.h"
#include "openssl/hmac.h"

namespace meshd::security {
namespace {

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat("cannot ", what, " the membership key '", path,
                                             "': ", std::strerror(errno)));
}

absl::StatusOr<std::string> Read(const std::string& path, int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return Errno("stat", path);
  if ((st.st_mode & 077) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the membership key '", path, "' is open to others than its owner (mode ",
        absl::StrFormat("%04o", st.st_mode & 0777), "): chmod 600 it"));
  }
  std::string key(kMembershipKeyBytes + 1, '\0');
  const ssize_t n = read(fd, key.data(), key.size());
  if (n < 0) return Errno("read", path);
  if (static_cast<size_t>(n) != kMembershipKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the membership key '", path, "' must hold exactly ", kMembershipKeyBytes,
                     " bytes; remove it and meshd makes a new one (running jobs then end at the "
                     "coordinator's next restart instead of being recovered)"));
  }
  key.resize(kMembershipKeyBytes);
  return key;
}

}  // namespace

absl::StatusOr<std::string> LoadOrCreateMembershipKey(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    absl::StatusOr<std::string> key = Read(path, fd);
    close(fd);
    return key;
  }
  if (errno != ENOENT) return Errno("open", path);
  // Its directory too (one level: /var/lib/meshd), private to meshd's user.
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Errno("create the directory of", path);
    }
  }
  std::string key(kMembershipKeyBytes, '\0');
  if (getrandom(key.data(), key.size(), 0) != static_cast<ssize_t>(key.size())) {
    return Errno("draw random bytes for", path);
  }
  // Written beside, then renamed: a reader never sees half a key. O_EXCL: a stale temporary file
  // of a crashed start is replaced below.
  const std::string tmp = absl::StrCat(path, ".tmp");
  unlink(tmp.c_str());
  const int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) return Errno("create", tmp);
  const bool written = write(out, key.data(), key.size()) == static_cast<ssize_t>(key.size()) &&
                       fsync(out) == 0;
  close(out);
  if (!written) return Errno("write", tmp);
  if (link(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    errno = err;
    if (err == EEXIST) return LoadOrCreateMembershipKey(path);  // another start made it first
    return Errno("install", path);
  }
  unlink(tmp.c_str());
  return key;
}

std::function<std::string(const std::string&)> MembershipSigner(std::string key) {
  return [key = std::move(key)](const std::string& message) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
    return std::string(reinterpret_cast<const char*>(mac), len);
  };
}

}  // namespace meshd::security
