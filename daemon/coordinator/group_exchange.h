// GroupExchange: the relay of one job generation's NCCL unique ids, group by group. A group is
// keyed by what it is (layout::GroupKey: root mesh, dim layout, index — or the world), so every
// view of a mesh that reaches a group shares its ids. A node's request is answered as soon as
// every group it asked for has all its ids — minted by each chunk's leader, whose node reports it
// — whoever else is late: a rank that has not asked delays only the groups whose ids it mints.
// A request may allow a partial answer (Hold::partial_after, see PartialDue): while some of its
// groups have their ids and others do not, it is answered with those it has (the others listed
// with no ids), so that the node's workers whose groups are complete go on; the node asks again
// for the rest.
// Requests come checked (MintRules: the asking node holds a member, ids only from leaders' nodes).
// Owned by the coordinator under its lock; completions go to `out` and run after the lock.
//
// Cost: a report is O(its groups + minted ids); a group completing answers its waiters in
// O(waiters of it). Memory: one entry per group asked for in the generation.
//
// Thread-safety: none; guarded by the owner.
#ifndef MESHD_DAEMON_COORDINATOR_GROUP_EXCHANGE_H_
#define MESHD_DAEMON_COORDINATOR_GROUP_EXCHANGE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "daemon/coordinator/completions.h"
#include "daemon/coordinator/types.h"

namespace meshd::coordinator {

class GroupExchange {
 public:
  // `counters` (the owner's, outliving the exchange) counts the ids and answers handed out.
  GroupExchange(std::string job, Counters* counters) : job_(std::move(job)), counters_(counters) {}

  // Groups one generation may hold: a 131,072-rank mesh has ~100,000; views add their new dims'.
  static constexpr size_t kMaxGroups = size_t{1} << 20;
  // Ids (chunks) one request may ask for, and one generation hold: a node of 1,024 ranks asks for
  // at most a few thousand groups, each of one id or one per 128 members.
  static constexpr size_t kMaxIdsPerRequest = size_t{1} << 18;
  static constexpr size_t kMaxIds = size_t{1} << 22;

  // Checks a report's form without recording anything: keys 1-1024 bytes, each once, 1-
  // kMaxIdsPerGroup ids, the same number of ids as earlier askers, minted ids of the right size
  // and index, each chunk once. Errors: INVALID_ARGUMENT naming the group, or past
  // kMaxIdsPerRequest; RESOURCE_EXHAUSTED past kMaxGroups or kMaxIds.
  absl::Status Validate(const std::vector<GroupRequest>& groups) const;
  // For a report whose rules passed: none of its minted ids was minted before with other bytes
  // (a chunk's leader mints it once). Errors: INVALID_ARGUMENT naming the group and chunk.
  absl::Status CheckMints(const std::vector<GroupRequest>& groups) const;
  // How a report's answer may be held: until `deadline` (then DEADLINE_EXCEEDED); with a
  // non-zero `partial_after`, answered in part once that is due (PartialDue).
  struct Hold {
    absl::Time deadline = absl::InfiniteFuture();
    absl::Duration partial_after = absl::ZeroDuration();
  };
  // A request that allows it is answered in part, while some of its groups have their ids and
  // others not, once it was held partial_after AND no chunk was minted for a kQuietShare of that
  // — the exchange waits for ranks that have not asked, not for reports still streaming in (at
  // 16,384 nodes a loaded coordinator holds thousands of requests past a second while every node
  // is on time: partial answers then would only add calls) — or once it was held kPartialCap
  // times partial_after, whatever comes in.
  static constexpr int kQuietShare = 4;  // the quiet is partial_after / kQuietShare
  static constexpr int kPartialCap = 10;
  // Records a validated report at `now`: its minted ids and mint errors, and `done`, answered
  // (through `out`) once every group has all its ids — at once when they all have — or in part
  // as `hold` allows: every group asked for, in order, those without ids yet with none. The
  // groups it completes answer the other waiters they complete. `leaders[i]` are group i's chunk
  // leaders (for messages). A group whose leader could not mint fails its askers with
  // FAILED_PRECONDITION and the leader's reason. `groups` is taken. Returns when ExpireWaits must
  // next run for this report: its deadline or its partial answer's time (InfiniteFuture when it
  // was answered at once).
  absl::Time Report(std::vector<GroupRequest> groups, std::vector<std::vector<uint32_t>> leaders,
                    absl::Time now, Hold hold, GroupsDone done, Completions& out);
  // Fails waits past their deadline at `now` with DEADLINE_EXCEEDED naming the chunks still
  // missing and the ranks that mint them, and answers in part those whose partial answer is due
  // and that have some groups complete; returns when it next has to run (InfiniteFuture: never).
  absl::Time ExpireWaits(absl::Time now, Completions& out);
  void FailAll(const absl::Status& status, Completions& out);
  size_t waiters() const { return waiters_.size(); }

 private:
  struct Group {
    std::vector<std::optional<std::string>> slots;  // by chunk, as minted
    std::vector<uint32_t> leaders;                  // by chunk
    size_t filled = 0;
    std::optional<std::string> mint_error;  // a leader could not mint: why
    SharedGroupIds answer;                  // once every slot is filled
    std::vector<uint64_t> waiting;          // waiters to tell when it completes or fails
  };
  using GroupEntry = std::pair<const std::string, Group>;  // key and group, at a stable address
  struct Waiter {
    std::vector<GroupEntry*> groups;  // as asked, in order
    size_t incomplete = 0;            // of them
    GroupsDone done;
    Hold hold;
    absl::Time arrived;
  };
  // When `w` may be answered in part (InfiniteFuture: never).
  absl::Time PartialDue(const Waiter& w) const;
  // `entry` just completed (or failed) at `now`: its waiters that now can be answered are.
  void Settle(GroupEntry& entry, absl::Time now, Completions& out);
  // Answers a waiter with every group it asked for: complete ones with their ids, the others (a
  // partial answer) with none; fails it when one of them has a mint error.
  void Answer(uint64_t waiter, Completions& out);
  static absl::Status MintFailed(const std::string& job, const GroupEntry& entry);

  const std::string job_;
  Counters* const counters_;
  // Hash maps: a 131,072-rank mesh has ~100,000 groups, asked for by every node.
  absl::node_hash_map<std::string, Group> groups_;
  absl::flat_hash_map<uint64_t, Waiter> waiters_;
  uint64_t next_waiter_ = 0;
  size_t ids_ = 0;  // slots of every group
  absl::Time last_minted_ = absl::InfinitePast();  // when a report last filled a slot
  std::optional<absl::Status> failed_;
};

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_GROUP_EXCHANGE_H_
