// NodeRegistry: the coordinator's nodes — inventories and the GPUs they claim, liveness,
// incarnations — and the heartbeat-rate policy: the interval and timeout each node is told, so that
// a cluster's heartbeats stay under a cap however many nodes it has. Pure: time comes from the
// injected clock.
//
// A node (one record per name):
//
//        RegisterNode                  silent for longer than the timeout it was told
//   --------------------> ALIVE ---------------------------------------------------> DEAD
//                         ^ |  |              its agent stops cleanly (Depart)          |
//                         | |  +------------------------------------------------> LEFT  |
//                         | +-- a new incarnation registers (a restart: count it)   |   |
//                         +-------------------- RegisterNode again -----------------+---+
//
// A dead or departed node is removed after the retention (ExpireGone), or at once by an
// operator (Forget).
//
// It never calls out: what a registration or a loss means for jobs (ending their generations, the
// events) is the caller's to do, from what Register returns and ExpireSilent reports.
//
// Thread-safety: none; owned by the Coordinator and guarded by its lock.
#ifndef MESHD_DAEMON_COORDINATOR_NODE_REGISTRY_H_
#define MESHD_DAEMON_COORDINATOR_NODE_REGISTRY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/coordinator/types.h"
#include "daemon/domain/caller.h"

namespace meshd::coordinator {

// The heartbeat interval an agent is told, and how long it may stay silent.
struct HeartbeatTiming {
  absl::Duration interval;
  absl::Duration timeout;
};

class NodeRegistry {
 public:
  struct Options {
    absl::Duration heartbeat_interval;
    absl::Duration heartbeat_timeout;
    // With more nodes than `heartbeat_interval` allows at this rate, the interval (and the timeout
    // with it) grows to nodes / rate. 0: no cap. See CoordinatorOptions.
    uint32_t max_heartbeats_per_second = 0;
  };

  struct Node {
    NodeInventory inventory;
    std::string clique;  // of its GPUs, for rank order (topology::NodeClique)
    absl::Time last_heard;
    HeartbeatTiming timing;  // what the node was last told
    bool alive = true;
    uint32_t restarts = 0;
    // Returned by its registration; its agent presents it on every later call (without TLS, the
    // proof that a call comes from that agent).
    std::string secret;
    // An operator took it out of service (Cordon): it joins no new rounds. Kept across its
    // agent's restarts.
    bool cordoned = false;
    std::string cordon_reason;
    // Not alive because its agent said it leaves (rather than fell silent).
    bool left = false;
    // When it died or left (meaningful while !alive).
    absl::Time gone_since;
  };

  // What a registration turned out to be.
  enum class Arrival {
    kNew,        // a name not seen before
    kAgain,      // the live node's incarnation again (an agent retrying)
    kBack,       // the same incarnation, declared dead meanwhile
    kRestarted,  // a new incarnation replaced the old one
  };
  struct Registration {
    Arrival arrival = Arrival::kNew;
    uint64_t previous_incarnation = 0;  // kRestarted: the one replaced
  };

  NodeRegistry(const Clock* clock, Options options);
  NodeRegistry(const NodeRegistry&) = delete;
  NodeRegistry& operator=(const NodeRegistry&) = delete;

  // ALREADY_EXISTS when a GPU of `inventory` is claimed by another node that is alive.
  absl::Status CheckGpus(const NodeInventory& inventory) const;
  // Records `inventory` (after CheckGpus and MayRegister) as heard now, alive, with `secret`, and
  // tells it its timing.
  Registration Register(const NodeInventory& inventory, std::string secret = "");
  // OK when `caller` may act as `node`: its certificate names the node, or it presents the secret
  // of the node's current registration. Errors: NOT_FOUND unknown node (register first);
  // PERMISSION_DENIED otherwise (the message says how to authenticate, never the secret).
  absl::Status Authenticate(const Caller& caller, const std::string& node) const;
  // Whether `caller` may register `node` now: a name never seen, or a node declared dead, is
  // anyone's to register (without TLS: the first agent to come); a live node only by a caller
  // authenticated as it (its own agent registering again, or a certificate naming it). So one
  // process cannot end another's jobs by registering under its name. Errors: PERMISSION_DENIED.
  absl::Status MayRegister(const Caller& caller, const std::string& node) const;
  // Records a heartbeat; answers the timing the node must keep from now on.
  // Errors: NOT_FOUND unknown or dead node; FAILED_PRECONDITION an older incarnation.
  absl::StatusOr<HeartbeatTiming> Heartbeat(const std::string& node, uint64_t incarnation);
  // Whether `node` may act as `incarnation` (join a job).
  // Errors: NOT_FOUND unknown or dead node; FAILED_PRECONDITION a stale incarnation.
  absl::Status CheckCurrent(const std::string& node, uint64_t incarnation) const;
  // Declares dead every live node silent past the timeout it was told; calls `lost(node, why)` for
  // each, in name order. Walks the nodes only when one may be due (a tick at 16,384 nodes is O(1)).
  void ExpireSilent(absl::Time now,
                    absl::FunctionRef<void(const std::string& node, const std::string& why)> lost);

  // Marks `node` cordoned (or not) with `reason`; returns whether that changed anything.
  // Errors: NOT_FOUND unknown node.
  absl::StatusOr<bool> Cordon(const std::string& node, bool cordoned, const std::string& reason);
  // The node's agent stops cleanly: it is no longer alive (LEFT), from now. Returns whether it was
  // alive (false: already dead or left — nothing to do). Errors: NOT_FOUND unknown node;
  // FAILED_PRECONDITION an older incarnation.
  absl::StatusOr<bool> Depart(const std::string& node, uint64_t incarnation);
  // Removes every node dead or left for longer than `retention` as of `now` (calling `removed` for
  // each, in name order). Walks the nodes only when one may be due.
  void ExpireGone(absl::Time now, absl::Duration retention,
                  absl::FunctionRef<void(const std::string& node, const Node& record)> removed);
  // Removes a dead node's record and frees its GPUs' UUIDs. The caller must have dropped it from
  // every job (a dead node is). Errors: NOT_FOUND unknown node; FAILED_PRECONDITION it is alive.
  absl::Status Forget(const std::string& node);

  // A registered node. @pre it is registered (and not forgotten since).
  const Node& Get(const std::string& node) const { return *nodes_.at(node); }
  // The node, or nullptr when unknown.
  const Node* Find(const std::string& node) const {
    auto it = nodes_.find(node);
    return it == nodes_.end() ? nullptr : it->second.get();
  }
  // Every node, by name.
  const std::map<std::string, std::unique_ptr<Node>>& nodes() const { return nodes_; }
  // The timing a node is told for the current number of live nodes (see
  // max_heartbeats_per_second; dead and departed nodes do not count).
  HeartbeatTiming FairTiming() const;
  // What `node` was told at its last registration or heartbeat (the configured timing for an
  // unknown node).
  HeartbeatTiming TimingOf(const std::string& node) const;

 private:
  // Tells `node` its timing: FairTiming(), stretched (up to twice) while nodes told shorter
  // intervals when the cluster was smaller still use up the rate cap; keeps promised_hz_.
  HeartbeatTiming Tell(Node& node);

  // Constant after construction.
  const Clock* const clock_;
  const Options options_;

  std::map<std::string, std::unique_ptr<Node>> nodes_;
  absl::flat_hash_map<std::string, std::string> gpu_owner_;  // uuid -> node
  // The heartbeat rate live nodes were told: the sum of 1 / interval over them, per second.
  double promised_hz_ = 0;
  // No live node can time out before this: lowered whenever a node is heard, recomputed by the walk
  // it gates.
  absl::Time due_ = absl::InfinitePast();
  // Live nodes (FairTiming's count).
  size_t alive_ = 0;
  // No gone node can expire before this (plus the retention): lowered when a node dies or leaves.
  absl::Time gone_due_ = absl::InfiniteFuture();
  using NodeMap = std::map<std::string, std::unique_ptr<Node>>;
  // Marks a live node gone (dead or left) at `now`.
  void Gone(Node& node, absl::Time now);
  // Frees those of `gpus` that `node` still owns: one another node claimed meanwhile (while this
  // one was dead) stays that node's.
  void ReleaseGpus(const std::string& node, const std::vector<Gpu>& gpus);
  // Removes a record (a gone node's) and frees the GPUs it claimed; the next one.
  NodeMap::iterator Erase(NodeMap::iterator it);
};

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_NODE_REGISTRY_H_
