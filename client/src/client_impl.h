// ClientImpl: the meshd::Client that Client::Attach returns (see <meshd/client.h>), private to
// libmeshd_client. It talks to the host's agent over its unix socket with the meshd.v1.Agent API.
// Its methods live in files named after what they do:
//   client.cc         construction (arming the generation watch), Detach on destruction, health,
//                     OnGenerationEnd and the watch thread
//   attach.cc         Client::Attach and the option defaults from the environment
//   store_calls.cc    the Key* calls (the job's key-value store)
//   mesh_calls.cc     InitDeviceMesh, Groups, GroupOf and the group exchange with the agent
//   communicator.cc   MakeCommunicator, SplitNoColor and meshd::Communicator (over nccl_comm.h,
//                     arrivals.h and the CommRegistry of the communicators made)
//
// Thread-safety: every method may be called from any thread. The fields below `mu_` are guarded
// by it; exchanges (collective: every rank issues them in the same order) are serialized by
// `exchange_mu_`, the world communicator's creation and splits by `world_mu_`; `comms_` locks
// itself. User callbacks run without any lock held.
#ifndef MESHD_CLIENT_SRC_CLIENT_IMPL_H_
#define MESHD_CLIENT_SRC_CLIENT_IMPL_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/src/comm_registry.h"
#include "common/layout/device_mesh.h"
#include "grpcpp/grpcpp.h"
#include "meshd/client.h"
#include "meshd/v1/agent.grpc.pb.h"

namespace meshd::client_internal {

class NcclComm;  // nccl_comm.h

// A gRPC status as an absl::Status of the same code, its message prefixed with `what`.
absl::Status FromGrpc(const grpc::Status& s, absl::string_view what);

// How CommRegistry aborts a communicator (with the reason) and tells whether one is still usable
// (communicator.cc).
void AbortCommunicator(Communicator& comm, const absl::Status& why);
bool CommunicatorUsable(const Communicator& comm);

class ClientImpl final : public Client {
 public:
  // Starts the generation watch and returns once it is armed (or after options.timeout).
  ClientImpl(ClientOptions options, std::shared_ptr<grpc::Channel> channel, Placement placement);
  // Detaches from the agent (so that it does not take this worker as lost), then ends the watch.
  ~ClientImpl() override;

  const Placement& placement() const override { return placement_; }
  absl::Status health() const override;
  void OnGenerationEnd(std::function<void(const absl::Status&)> callback) override;

  absl::StatusOr<DeviceMesh> InitDeviceMesh(const std::vector<int64_t>& shape,
                                            const std::vector<std::string>& names,
                                            const std::string& mesh_name, MeshIds ids) override;
  absl::StatusOr<DeviceMesh> InitDeviceMeshFromRanks(const std::vector<int64_t>& shape,
                                                     const std::vector<int64_t>& ranks,
                                                     const std::vector<std::string>& names,
                                                     const std::string& mesh_name,
                                                     MeshIds ids) override;
  absl::StatusOr<DeviceMesh> MeshFromGroup(const Group& group,
                                           const std::string& dim_name) override;
  absl::StatusOr<std::vector<Group>> Groups(const DeviceMesh& mesh) override;
  absl::StatusOr<Group> GroupOf(const DeviceMesh& mesh, const MeshDim& dim) override;
  absl::StatusOr<std::shared_ptr<Communicator>> MakeCommunicator(
      const Group& group, const CommOptions& options) override;
  absl::StatusOr<std::shared_ptr<Communicator>> MakeCommunicator(
      const DeviceMesh& mesh, const MeshDim& dim, const CommOptions& options) override;
  absl::Status SplitNoColor(const CommOptions& options) override;

  absl::Status KeySet(const std::string& key, const std::string& value,
                      absl::Duration timeout) override;
  absl::StatusOr<std::string> KeyGet(const std::string& key, absl::Duration timeout) override;
  absl::StatusOr<int64_t> KeyAdd(const std::string& key, int64_t delta,
                                 absl::Duration timeout) override;
  absl::StatusOr<std::string> KeyCompareSet(const std::string& key, const std::string& expected,
                                            const std::string& desired, absl::Duration timeout,
                                            bool* swapped) override;
  absl::Status KeyWait(const std::vector<std::string>& keys, absl::Duration timeout) override;
  absl::StatusOr<bool> KeyCheck(const std::vector<std::string>& keys,
                                absl::Duration timeout) override;
  absl::StatusOr<bool> KeyDelete(const std::string& key, absl::Duration timeout) override;
  absl::StatusOr<int64_t> KeyCount(absl::Duration timeout) override;

 private:
  // A store request with this client's job and generation set (store_calls.cc).
  template <typename Req>
  Req Scoped() const;

  // One store call to the agent, ending by `timeout` (or by `deadline`, one part of a call split
  // in several, each message still naming `timeout`); errors say what was asked (`what`)
  // (store_calls.cc).
  template <typename Req, typename Resp>
  absl::Status Call(absl::string_view what, absl::Duration timeout,
                    grpc::Status (v1::Agent::Stub::*method)(grpc::ClientContext*, const Req&,
                                                            Resp*),
                    const Req& req, Resp* resp, absl::Time deadline = absl::InfiniteFuture());
  // A wait or check of `keys` (checked first; none: OK at once), one Call per kMaxWaitKeys of
  // them within `timeout`, until `more` says no (store_calls.cc).
  template <typename Req, typename Resp>
  absl::Status InParts(absl::string_view verb, const std::vector<std::string>& keys,
                       absl::Duration timeout,
                       grpc::Status (v1::Agent::Stub::*method)(grpc::ClientContext*, const Req&,
                                                               Resp*),
                       const std::function<bool(const Resp&)>& more);

  // One batched exchange: this rank's groups of `mesh` (plus the world group) with their ids, the
  // ones not cached fetched in one call (none when all are). `ids` false: no groups, the root's
  // spec check alone (nothing is cached) (mesh_calls.cc).
  absl::StatusOr<std::vector<Group>> Exchange(const DeviceMesh& mesh, bool with_world, bool ids);
  // A new root mesh under `mesh_name` ("#n" when empty), checked and fetched per `ids`.
  absl::StatusOr<DeviceMesh> Register(layout::DeviceMesh mesh, const std::string& mesh_name,
                                      MeshIds ids);

  // The watch thread's body: waits for the end of this generation, then fails health, aborts the
  // communicators (unless options say not to) and runs the callbacks (client.cc).
  void WatchGeneration();

  // communicator.cc: NCCL and CUDA for a communicator in `mode`, checked against what `options`
  // asks of them (FAILED_PRECONDITION naming versions).
  struct CommRuntimes;
  absl::StatusOr<CommRuntimes> LoadCommRuntimes(const CommOptions& options);
  // Makes `group`'s communicator by init (kInitRank/kScalable) under arrival attempt `attempt`.
  // Waits for a started init or split until `deadline`, stopped by the generation's end or the
  // client's Interrupter (communicator.cc).
  absl::Status AwaitComm(NcclComm& comm, absl::Time deadline);
  absl::StatusOr<std::shared_ptr<Communicator>> InitCommunicator(const Group& group,
                                                                 const CommOptions& options,
                                                                 const CommRuntimes& rt,
                                                                 absl::Time deadline,
                                                                 int64_t attempt);
  // One ncclCommSplit of the world communicator: `group` null takes part with NCCL_SPLIT_NOCOLOR.
  // Answers the member's communicator (null for no color).
  absl::StatusOr<std::shared_ptr<Communicator>> SplitCommunicator(const Group* group,
                                                                  const CommOptions& options,
                                                                  const CommRuntimes& rt,
                                                                  absl::Time deadline);

  // Constant after construction.
  const ClientOptions options_;
  std::unique_ptr<v1::Agent::Stub> stub_;
  const Placement placement_;
  grpc::ClientContext watch_ctx_;
  absl::Notification watch_armed_;
  std::thread watch_thread_;
  std::mutex exchange_mu_;  // exchanges are collective: one at a time, in call order

  mutable absl::Mutex mu_;
  absl::Status health_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void(const absl::Status&)>> callbacks_ ABSL_GUARDED_BY(mu_);
  // The client is being destroyed (it detaches): an end of the generation that its own detach
  // brings about (the job finished) reaches no callback.
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  int unnamed_meshes_ ABSL_GUARDED_BY(mu_) = 0;
  // Every group fetched in the generation, by what it is (layout::GroupKey): views share them.
  std::map<std::string, Group> groups_ ABSL_GUARDED_BY(mu_);
  // Root meshes registered in the generation: key -> fingerprint (a key is one mesh).
  std::map<std::string, std::string> roots_ ABSL_GUARDED_BY(mu_);
  // Ids this rank minted as a leader, by group key and chunk: an exchange asked again (after a
  // deadline) reports the same bytes, which the coordinator accepts as a retry.
  std::map<std::pair<std::string, int64_t>, NcclUniqueId> minted_ ABSL_GUARDED_BY(mu_);
  std::optional<Group> world_ ABSL_GUARDED_BY(mu_);
  // Splits are collective in call order: one at a time, under world_mu_, which also guards the
  // world communicator's creation.
  std::mutex world_mu_;
  std::shared_ptr<Communicator> world_comm_;  // for CommInit::kSplit, made on first use
  int64_t world_attempts_ = 0;                // arrival attempts at the world communicator
  int64_t world_splits_ = 0;                  // splits of it so far (arrival keys)
  // Every communicator made (weak references): the cache per group and mode, and what the
  // generation's end aborts (communicator.cc).
  CommRegistry<Communicator> comms_{AbortCommunicator, CommunicatorUsable};
};

}  // namespace meshd::client_internal

#endif  // MESHD_CLIENT_SRC_CLIENT_IMPL_H_
