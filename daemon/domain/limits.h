// The limits every request is held to, in one place: the coordinator enforces them, the agent checks
// the ones it must before aggregating (a bad request must not hide in a merged one), and the error
// texts quote them.
#ifndef MESHD_DAEMON_DOMAIN_LIMITS_H_
#define MESHD_DAEMON_DOMAIN_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace meshd::domain {

inline constexpr size_t kMaxJobNameBytes = 128;
inline constexpr size_t kMaxNodeNameBytes = 253;
inline constexpr uint32_t kMaxLocalWorld = 1024;  // workers per node
inline constexpr uint32_t kMaxNodes = 100000;     // nodes a job may ask for
// The generation's key-value store.
inline constexpr size_t kMaxKeyBytes = 1024;
inline constexpr size_t kMaxValueBytes = 4 << 20;
inline constexpr size_t kMaxWaitKeys = 1024;  // keys of one KeyWait
// NCCL unique ids relayed per group.
inline constexpr size_t kIdBytes = 128;
inline constexpr uint32_t kMaxIdsPerGroup = 4096;

}  // namespace meshd::domain

#endif  // MESHD_DAEMON_DOMAIN_LIMITS_H_
