// The coordinator's membership key: the secret under which it signs each node's place in a
// generation (the membership token, HMAC-SHA256), so that after a restart it believes only the
// reports of places it gave. Kept in a file that outlives the process (--membership-key; systemd's
// StateDirectory, a Kubernetes volume): created with 32 random bytes and mode 0600 when absent.
//
// Thread-safety: LoadOrCreateMembershipKey touches the file system; the signer is thread-safe.
#ifndef MESHD_DAEMON_SECURITY_MEMBERSHIP_KEY_H_
#define MESHD_DAEMON_SECURITY_MEMBERSHIP_KEY_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace meshd::security {

inline constexpr size_t kMembershipKeyBytes = 32;

// The key in `path`, or a new one written there (mode 0600, atomically; its directory made, mode
// 0700, when missing) when the file does not exist. Errors: INVALID_ARGUMENT the file is not kMembershipKeyBytes long, or is readable by
// others than its owner (the message says what to do); UNAVAILABLE it cannot be read or written.
absl::StatusOr<std::string> LoadOrCreateMembershipKey(const std::string& path);

// HMAC-SHA256 of a message under `key` (32 raw bytes).
std::function<std::string(const std::string& message)> MembershipSigner(std::string key);

}  // namespace meshd::security

#endif  // MESHD_DAEMON_SECURITY_MEMBERSHIP_KEY_H_
