// StoreWorkload: PyTorch's start-up through its Store, as store_bench and store_compare.py drive
// it — init_process_group and a process group for every group of a pp x dp x tp mesh, with the
// store calls torch 2.x makes and its keys, byte for byte (docs/performance-store.md says which
// torch behaviour this models and why):
//
//   every rank, in this order ("barriers" on: torch with TORCH_DIST_INIT_BARRIER=1):
//     the world's store-based barrier (init_process_group), then for each mesh dim the barrier of
//     the rank's group of that dim (new_group(ranks, use_local_synchronization=True): members
//     only) — each barrier is
//         add(K, 1); n = add(K, 0); if n == group size: set(K:last_worker, "1");
//         wait([K:last_worker])
//     then the NCCL unique-id exchange of the world group and of each dim's group, in that order
//     (ProcessGroupNCCL's broadcastUniqueNCCLID on a group's first collective): the group's rank 0
//     sets its 128-byte id, every other member gets it (a get waits until the key is set).
//
// Keys as torch 2.x spells them (PrefixStore joins with "/"): the world group is "0" under the
// rendezvous store's "default_pg" prefix; a new_group with use_local_synchronization is named by
// the SHA-1 of its sorted ranks joined by "_", under the world group's prefix store:
//   world barrier   default_pg/store_based_barrier_key:0          (+ ":last_worker")
//   world id        default_pg/0//cuda//0
//   group barrier   default_pg/0//<sha1>//store_based_barrier_key:<sha1>  (+ ":last_worker")
//   group id        default_pg/0//<sha1>//cuda//0
//
// Thread-safety: a built StoreWorkload is immutable; every const method is safe from any thread.
#ifndef MESHD_BENCH_SIM_STORE_WORKLOAD_H_
#define MESHD_BENCH_SIM_STORE_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshd::bench {

struct StoreWorkloadOptions {
  uint32_t nodes = 64;
  uint32_t gpus_per_node = 8;
  // "pp=4,dp=-1,tp=8": names and sizes in order, one -1 for the rest. Empty: pp=4,dp=-1,tp=G
  // when the world allows it, else dp=-1,tp=G.
  std::string shape;
  // The store-based barriers (init_process_group's and every new_group's). Off: torch 2.x's
  // default (TORCH_DIST_INIT_BARRIER unset), the id exchange alone.
  bool barriers = true;
};

// One process group: the world, or one group of one mesh dim.
struct StoreGroup {
  std::string name;             // "0" for the world; the SHA-1 of the ranks for a dim's group
  std::string barrier_key;      // K
  std::string last_worker_key;  // K:last_worker
  std::string id_key;           // where the group's rank 0 sets its NCCL id
  uint32_t size = 0;
  uint32_t leader = 0;  // the group's rank 0: its lowest global rank
};

struct StoreWorkload {
  std::vector<std::pair<std::string, int64_t>> dims;  // resolved shape
  std::string description;                            // "DeviceMesh((pp=4, dp=16, tp=8), ...)"
  uint32_t world_size = 0;
  uint32_t gpus_per_node = 0;
  bool barriers = true;
  // groups[0] is the world; then every group of dim 0, of dim 1, ...
  std::vector<StoreGroup> groups;
  // Slots: 0 the world, 1 + d dim d. group_of[slot * world_size + rank]: the rank's group there.
  uint32_t slots = 0;
  std::vector<uint32_t> group_of;

  uint32_t GroupOf(uint32_t slot, uint32_t rank) const {
    return group_of[slot * world_size + rank];
  }
  // The 128-byte id the leader of `group` sets (deterministic, so that every get is checked).
  std::string IdOf(uint32_t group) const;
  // Store calls every rank makes together, the last_worker sets aside (their number depends on
  // timing: every rank whose add(K, 0) sees the whole group sets it).
  uint64_t FixedRankCalls() const;
};

absl::StatusOr<StoreWorkload> BuildStoreWorkload(const StoreWorkloadOptions& options);

// SHA-1 of `data` as 40 lowercase hex digits (Python's hashlib.sha1(...).hexdigest()).
std::string Sha1Hex(absl::string_view data);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_STORE_WORKLOAD_H_
