// systemd's service notification protocol (sd_notify(3)): one datagram of "KEY=VALUE" lines to the
// unix socket named by $NOTIFY_SOCKET. Spoken directly, so meshd needs no libsystemd; a no-op when
// the daemon is not run by systemd (no $NOTIFY_SOCKET).
//
// Thread-safety: thread-safe.
#ifndef MESHD_DAEMON_RUNTIME_SD_NOTIFY_H_
#define MESHD_DAEMON_RUNTIME_SD_NOTIFY_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshd::runtime {

// Sends `state` (e.g. "READY=1\nSTATUS=serving"). OK when $NOTIFY_SOCKET is unset.
// Errors: UNAVAILABLE when the socket cannot be reached.
absl::Status SdNotify(absl::string_view state);

// How often to send WATCHDOG=1 when systemd's watchdog is on for this process ($WATCHDOG_USEC, and
// $WATCHDOG_PID if set is ours): half the timeout. nullopt when it is off.
std::optional<absl::Duration> WatchdogInterval();

}  // namespace meshd::runtime

#endif  // MESHD_DAEMON_RUNTIME_SD_NOTIFY_H_
