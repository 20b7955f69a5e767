// RandomSecret: 128 bits from the kernel's random source (getrandom(2)), as 32 hex characters —
// the node secrets agents and the coordinator draw. Aborts rather than return a guessable value
// (getrandom never fails on Linux >= 3.17).
//
// Thread-safety: thread-safe.
#ifndef MESHD_DAEMON_SECURITY_RANDOM_SECRET_H_
#define MESHD_DAEMON_SECURITY_RANDOM_SECRET_H_

#include <string>

namespace meshd::security {

std::string RandomSecret();

}  // namespace meshd::security

#endif  // MESHD_DAEMON_SECURITY_RANDOM_SECRET_H_
