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
// What a node reports about itself: its agent's address (HOST:PORT or unix:PATH), and each GPU's
// PCI bus id, name and NVLink clique.
inline constexpr size_t kMaxAddressBytes = 512;
inline constexpr size_t kMaxGpuFieldBytes = 256;
inline constexpr uint32_t kMaxLocalWorld = 1024;  // workers per node
inline constexpr uint32_t kMaxNodes = 100000;     // nodes a job may ask for
// The generation's key-value store.
inline constexpr size_t kMaxKeyBytes = 1024;
inline constexpr size_t kMaxValueBytes = 4 << 20;
inline constexpr size_t kMaxWaitKeys = 1024;  // keys of one KeyWait
// One KeyBatch: its operations, and its bytes (one largest set with room around it). An agent
// keeps its batches within both.
inline constexpr size_t kMaxBatchOps = 1024;
inline constexpr size_t kMaxBatchBytes = kMaxValueBytes + (64 << 10);
// What one generation's store holds at most, by default (the coordinator's --kv-max-keys,
// --kv-max-bytes, --kv-max-waits): torch's rendezvous and init_process_group set a few keys per
// rank, so a million keys is room for several per rank of 131,072.
inline constexpr size_t kDefaultStoreKeys = size_t{1} << 20;
inline constexpr size_t kDefaultStoreBytes = size_t{1} << 30;
inline constexpr size_t kDefaultStoreWaits = size_t{1} << 20;
// NCCL unique ids relayed per group.
inline constexpr size_t kIdBytes = 128;
inline constexpr uint32_t kMaxIdsPerGroup = 4096;
// One node's ResolveGroups: the ranks it reports are its own (at most its local world), and each
// rank is in one group per dim of its mesh and the world's; 64 a rank is room for any real mesh.
// Without a bound an 8 MiB request of ~4 million empty groups took seconds to decode and 413 MB.
inline constexpr size_t kMaxRanksPerRequest = kMaxLocalWorld;
inline constexpr size_t kMaxGroupsPerRequest = size_t{kMaxLocalWorld} * 64;

}  // namespace meshd::domain

#endif  // MESHD_DAEMON_DOMAIN_LIMITS_H_
