// The safe-defaults rule for listeners: a plaintext TCP listener must be reachable from this host
// only (loopback), unless the operator says --insecure. Unix sockets are guarded by their file
// permissions and always allowed.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_SECURITY_LISTEN_POLICY_H_
#define MESHD_DAEMON_SECURITY_LISTEN_POLICY_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace meshd::security {

// Whether `address` is reachable from this host only: "unix:...", "localhost:P", 127.0.0.0/8,
// "[::1]:P". A wildcard (0.0.0.0, [::]), any other IP or any other host name is not.
bool IsLocalOnly(absl::string_view address);

// OK when `tls`, when `address` IsLocalOnly, when `insecure`, or when `address` is not HOST:PORT
// at all (the listener reports that). Else FAILED_PRECONDITION naming
// `flag` and the address and saying what to pass (--tls-cert/--tls-key/--tls-ca, a loopback
// address, or --insecure).
absl::Status CheckPlaintextListen(absl::string_view flag, absl::string_view address, bool tls,
                                  bool insecure);

}  // namespace meshd::security

#endif  // MESHD_DAEMON_SECURITY_LISTEN_POLICY_H_
