// <meshd/client.h> — what a training process links (libmeshd_client): attach to the host's meshd
// agent, build device meshes with PyTorch DeviceMesh semantics, and get every group's NCCL unique
// ids and communicators. C++17; no gRPC, protobuf or NCCL types. A C ABI is in <meshd/client_c.h>.
//
//   meshd::ClientOptions o;                     // job, local rank, ... from flags or the
//   environment o.job = "llama-70b"; auto client = meshd::Client::Attach(o);     // blocks until
//   the job's round closes auto mesh = (*client)->InitDeviceMesh({2, 4, 8}, {"pp", "dp", "tp"});
//   auto tp = (*client)->GroupOf(*mesh, 2);     // members, this rank's index, NCCL id(s)
//   auto comm = (*client)->MakeCommunicator(*tp);  // a ready ncclComm_t where NCCL and a GPU exist
//
// Errors are absl::Status values with canonical codes; nothing throws. Every blocking call ends by
// ClientOptions::timeout. After the job's generation ends (a node lost, restarted, joining), every
// call returns ABORTED with the reason, and the client aborts the communicators it made (unless
// ClientOptions says not to): attach again.
#ifndef MESHD_CLIENT_CLIENT_H_
#define MESHD_CLIENT_CLIENT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshd {

// Ends blocking calls early from another thread: Interrupt() makes every call made with it that is
// in flight at that moment (Attach, InitDeviceMesh, Groups, the Key* calls, MakeCommunicator and
// SplitNoColor, whose half-made communicator is aborted) return CANCELLED.
// Calls started later are not affected. Python's binding interrupts on Ctrl-C this way.
// Thread-safety: every method may be called from any thread.
class Interrupter {
 public:
  Interrupter();
  ~Interrupter();
  Interrupter(const Interrupter&) = delete;
  Interrupter& operator=(const Interrupter&) = delete;
  void Interrupt();

  struct Impl;  // private
  Impl* impl() const { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

struct ClientOptions {
  // The agent's unix socket. Default: $MESHD_SOCKET, else "/run/meshd/agent.sock".
  std::string socket;
  // The job to join (1-128 of [A-Za-z0-9._-]). Default: $MESHD_JOB.
  std::string job;
  // This worker's index on the host and the number of workers on the host.
  // Default: $LOCAL_RANK and $LOCAL_WORLD_SIZE (what torchrun sets).
  int local_rank = -1;
  int local_world = -1;
  // Nodes in the job: min == max for a fixed size, min < max for elastic.
  // Default: $MESHD_NNODES ("4" or "2:8"), else 1.
  int min_nodes = 0;
  int max_nodes = 0;
  // Deadline of every blocking call (Attach, InitDeviceMesh, Groups). Default: 10 minutes.
  absl::Duration timeout = absl::Minutes(10);
  // NCCL to load for unique ids and communicators. Default: $MESHD_NCCL_LIBRARY, else
  // "libnccl.so.2".
  std::string nccl_library;
  // CUDA runtime to load for communicators. Default: $MESHD_CUDART_LIBRARY, else the first of
  // libcudart.so.13/.12/.11 and libcudart.so the loader finds.
  std::string cudart_library;
  // Members per NCCL unique id, for CommInit::kScalable: ncclCommInitRankScalable spreads the
  // bootstrap over one root per id, and each chunk's first member mints its id (PyTorch's
  // TORCH_NCCL_RANKS_PER_ROOT is 128). Every rank of a job must use the same value.
  // Default: $MESHD_RANKS_PER_ID, else 0 = one id per group, all that kInitRank and kSplit use;
  // a group's ids then stay 128 bytes whatever its size.
  int ranks_per_id = -1;
  // Optional: lets another thread interrupt Attach and every blocking call of the client.
  std::shared_ptr<Interrupter> interrupter;
  // When the generation ends, abort (ncclCommAbort) every communicator this client made that is
  // still alive, before the OnGenerationEnd callbacks run, so no collective waits for a peer that
  // is gone. false: leave that to the caller (Communicator::Abort). Default:
  // $MESHD_ABORT_COMMUNICATORS ("0"/"false" leave it to the caller, "1"/"true" abort), else true.
  std::optional<bool> abort_communicators_on_generation_end;
};

// Where this worker is in the job.
struct Placement {
  int rank = 0;
  int world_size = 0;
  int local_rank = 0;
  int local_world = 0;
  int node_rank = 0;
  int num_nodes = 0;
  uint64_t generation = 0;
  // The GPU the agent assigned (the local_rank-th of the host).
  int gpu_index = 0;
  std::string gpu_uuid;
  std::string gpu_pci_bus_id;     // empty when simulated
  std::string gpu_name;           // product name
  std::string gpu_nvlink_clique;  // NVLink fabric clique, empty when none
  bool gpu_simulated = false;
};

using NcclUniqueId = std::array<uint8_t, 128>;

// One process group of a mesh that this rank belongs to.
struct Group {
  std::vector<std::string> dims;  // the dims it spans ("tp", or a flattened "dp_cp")
  std::vector<int64_t> ranks;     // members in mesh order
  int64_t index = 0;              // this rank's position in `ranks` (its coordinate along the dims)
  int64_t group_rank = 0;         // this rank's index among the sorted members (c10d numbering)
  int64_t group_index = 0;        // which group of the dims, in PyTorch's order
  // What the group is, the same on every member and through every view of its root mesh:
  // "<root mesh key>/<dim layout in the root>/<group index>" (e.g. "train/(4):(1)/1"), or
  // "world/0" for the world group.
  std::string key;
  // One id per ClientOptions::ranks_per_id members (one in all by default); ncclCommInitRank
  // uses ids[0], ncclCommInitRankScalable all of them.
  // Minted with ncclGetUniqueId by the chunk's leader, the first member ncclCommInitRankScalable
  // gives that id (member k*i for id i when k = ranks_per_id divides the group); the coordinator
  // takes each id from its leader's node only.
  std::vector<NcclUniqueId> ids;
};

// A dim of a mesh, as PyTorch's per-dim calls take it: an index (negative counts from the end) or
// a name — one of the mesh's, or a flattened dim its root knows (after Flatten("dp_tp"), "dp_tp"
// is a dim of every mesh of that root, as in PyTorch's get_group / get_local_rank).
using MeshDim = std::variant<int, std::string>;

// A device mesh as one rank sees it. A value: cheap to copy, safe to share between threads.
// The maths is PyTorch's DeviceMesh (see docs/mesh-semantics.md) and never needs the network.
class DeviceMesh {
 public:
  // init_device_mesh(shape, names) as `rank` of a world of `world_size` ranks sees it, with no
  // network (no client: no NCCL ids either; Client::InitDeviceMesh registers a mesh and gets
  // them). Empty `names`: unnamed dims. Errors (INVALID_ARGUMENT): those of meshctl plan, and a
  // rank outside [0, world_size).
  static absl::StatusOr<DeviceMesh> Create(const std::vector<int64_t>& shape,
                                           const std::vector<std::string>& names, int64_t rank,
                                           int64_t world_size);
  // PyTorch's DeviceMesh(device_type, mesh=table, mesh_dim_names=names) with no network: `ranks`
  // is the table row-major in `shape` (e.g. shape {2,2}, ranks {0,2,1,3} for [[0,2],[1,3]]), in any
  // order and over any subset of the world. Errors (INVALID_ARGUMENT): a shape whose product is not
  // ranks.size(), a rank outside the world or repeated, bad names, `rank` outside the world.
  static absl::StatusOr<DeviceMesh> FromRankTable(const std::vector<int64_t>& shape,
                                                  const std::vector<int64_t>& ranks,
                                                  const std::vector<std::string>& names,
                                                  int64_t rank, int64_t world_size);

  int ndim() const;
  std::vector<int64_t> shape() const;
  int64_t size() const;
  // The size of one dim (PyTorch's size(mesh_dim)). INVALID_ARGUMENT for a dim that is not one
  // (the message lists the valid indices and names).
  absl::StatusOr<int64_t> size(const MeshDim& dim) const;
  std::optional<std::vector<std::string>> names() const;
  // The global rank this view is for (PyTorch's get_rank()).
  int64_t rank() const;
  // This rank's coordinate (PyTorch's get_coordinate()); nullopt when it is not in the mesh.
  std::optional<std::vector<int64_t>> coordinate() const;
  // This rank's index in its group along `dim` (sorted members: c10d's group rank; PyTorch's
  // get_local_rank). FAILED_PRECONDITION off-mesh; INVALID_ARGUMENT for a dim that is not one.
  absl::StatusOr<int64_t> local_rank(const MeshDim& dim) const;
  // This rank's group along `dim`: members in mesh order. Errors as local_rank.
  absl::StatusOr<std::vector<int64_t>> group_ranks(const MeshDim& dim) const;
  // Every group along `dim`, in PyTorch's order (each in mesh order). O(world).
  // INVALID_ARGUMENT for a dim that is not one.
  absl::StatusOr<std::vector<std::vector<int64_t>>> all_group_ranks(const MeshDim& dim) const;
  // The index of one of this mesh's own dims: an index (negative counts from the end, as in
  // PyTorch) or one of its names. INVALID_ARGUMENT out of range or unknown (the message lists the
  // valid names); FAILED_PRECONDITION for a name on a mesh without names. A flattened name is no
  // dim of this mesh: ResolveDim reaches it.
  absl::StatusOr<int> DimIndex(const std::variant<int, std::string>& dim) const;
  // The mesh and index a per-dim call uses for `dim`: this mesh and its index, or — for a
  // flattened name of the root — the flattened mesh (as Flatten returned it) and 0. What
  // Client::GroupOf needs for a flattened name. INVALID_ARGUMENT as size(dim).
  absl::StatusOr<std::pair<DeviceMesh, int>> ResolveDim(const MeshDim& dim) const;
  // PyTorch's `mesh.mesh` on this rank, row-major in shape().
  absl::StatusOr<std::vector<int64_t>> view() const;
  // "DeviceMesh((pp=2, dp=4, tp=8), stride=(32, 8, 1))"
  std::string ToString() const;
  // The key its groups are registered under: the mesh name, or "#<n>" for the n-th unnamed mesh.
  const std::string& key() const;
  // The root mesh (PyTorch's _get_root_mesh()): the mesh this one was sliced, flattened,
  // unflattened or (first of) concatenated from, or itself; with this rank, and its root's key.
  DeviceMesh root() const;
  // Same layout over the same ranks with the same names (PyTorch's DeviceMesh.__eq__), whatever
  // the view it was reached through.
  friend bool operator==(const DeviceMesh& a, const DeviceMesh& b);
  friend bool operator!=(const DeviceMesh& a, const DeviceMesh& b) { return !(a == b); }
  // Consistent with ==: equal meshes hash equal, whichever rank holds them (PyTorch's __hash__).
  // O(ndim). Within one process (not a stable fingerprint). Also std::hash and absl::Hash.
  size_t Hash() const;
  template <typename H>
  friend H AbslHashValue(H h, const DeviceMesh& m) {
    return H::combine(std::move(h), m.Hash());
  }

  // mesh[names], mesh._flatten(name), mesh._unflatten(dim, sizes, names), _concatenate: the same
  // rules and errors (INVALID_ARGUMENT / FAILED_PRECONDITION) as meshctl plan.
  absl::StatusOr<DeviceMesh> Slice(const std::vector<std::string>& names) const;
  absl::StatusOr<DeviceMesh> Flatten(const std::optional<std::string>& name = std::nullopt) const;
  absl::StatusOr<DeviceMesh> Unflatten(const std::variant<int, std::string>& dim,
                                       const std::vector<int64_t>& sizes,
                                       const std::vector<std::string>& names) const;
  static absl::StatusOr<DeviceMesh> Concatenate(const std::vector<DeviceMesh>& meshes);

  struct Impl;  // private
  explicit DeviceMesh(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  const Impl* impl() const { return impl_.get(); }

 private:
  std::shared_ptr<const Impl> impl_;
};

// Whether InitDeviceMesh fetches the NCCL ids of the mesh's groups.
enum class MeshIds {
  kFetch,  // mint and relay every group's ids (one batched exchange)
  kNone,   // check the spec across ranks only
};

// How MakeCommunicator builds an NCCL communicator, and what each needs of the NCCL it loads
// (checked at run time with ncclGetVersion and dlsym: FAILED_PRECONDITION naming both versions
// when the library is too old). Every mode makes the communicator without blocking
// (ncclConfig_t.blocking = 0, NCCL >= 2.14) and polls it, so that its deadline, the Interrupter and
// the generation's end can stop it; on NCCL < 2.14 kInitRank blocks in ncclCommInitRank instead.
enum class CommInit {
  kInitRank,  // ncclCommInitRankConfig with the group's first id (any NCCL)
  kScalable,  // ncclCommInitRankScalable with one id per ClientOptions::ranks_per_id (NCCL >= 2.23)
  kSplit,     // ncclCommSplit (NCCL >= 2.18) of a world communicator made once per client (with
              // ncclCommInitRankScalable where the NCCL has it, else ncclCommInitRankConfig);
              // collective over the whole job: see Client::MakeCommunicator and SplitNoColor
};

// How to make one communicator. A CommInit converts to it: MakeCommunicator(g, CommInit::kSplit).
struct CommOptions {
  CommOptions() = default;
  CommOptions(CommInit init) : mode(init) {}  // NOLINT(google-explicit-constructor): on purpose
  CommInit mode = CommInit::kInitRank;
  // Deadline of the whole creation (arrival, NCCL's init or split). Zero: ClientOptions::timeout.
  absl::Duration timeout = absl::ZeroDuration();
  // ncclConfig_t fields; unset: NCCL's default (and its NCCL_* environment variables). Each needs
  // the NCCL named; FAILED_PRECONDITION on an older one, naming both versions.
  std::optional<int> cga_cluster_size;  // cgaClusterSize, NCCL >= 2.17
  std::optional<int> min_ctas;          // minCTAs, >= 2.17
  std::optional<int> max_ctas;          // maxCTAs, >= 2.17
  std::optional<std::string> net_name;  // netName, >= 2.17 (e.g. "IB", "Socket")
  std::optional<bool> split_share;      // splitShare, >= 2.18 (kSplit: share the world's resources)
  std::optional<int> traffic_class;     // trafficClass, >= 2.26
};

// An NCCL communicator of one group. MakeCommunicator hands out the same object for the same group
// and mode while it lives; the client itself keeps only a weak reference, so it is destroyed
// (ncclCommDestroy) with its last std::shared_ptr — unless it was aborted, and then nothing more is
// done. Thread-safety: every method may be called from any thread; Abort() ends an AllReduceSum
// that waits on another thread.
class Communicator {
 public:
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  // The ncclComm_t, as a void* so that this header needs no NCCL; null once aborted.
  void* nccl_comm() const;
  int size() const;
  int rank() const;
  // The group's key (Group::key) and the mode it was made with.
  const std::string& group_key() const;
  CommInit mode() const;
  // The name NCCL's logs and profilers show for it (ncclConfig_t.commName, NCCL >= 2.27; on an
  // older NCCL the name is not passed): "<job>/<group key>/<dims>/g<generation>", at most 255
  // bytes (a longer group key is replaced by "#" and its 64-bit hash).
  const std::string& name() const;
  // Sums `count` floats in place across the group (device memory), and waits for it. ABORTED once
  // aborted (also when the abort comes while it waits).
  absl::Status AllReduceSum(float* device_buffer, size_t count);
  // ncclCommAbort: stops what runs on it and frees it. Idempotent; after it every call answers
  // ABORTED and nccl_comm() is null. The client does this itself when the generation ends (see
  // ClientOptions::abort_communicators_on_generation_end).
  void Abort();
  bool aborted() const;
  // OK while usable; ABORTED with the reason (Abort(), the generation's end) once aborted; NCCL's
  // asynchronous error (ncclCommGetAsyncError) when it has one.
  absl::Status status() const;

  struct Impl;  // private
  explicit Communicator(std::unique_ptr<Impl> impl);
  Impl* impl() const { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

// A worker's connection to meshd. Thread-safety: every method may be called from any thread;
// calls that fetch ids are serialized per client (one exchange at a time, as every rank must issue
// them in the same order).
class Client {
 public:
  // Connects to the agent, joins options.job as options.local_rank and waits for the round. When it
  // returns, the client's watch on the generation is armed: no end of it can be missed.
  // Errors: INVALID_ARGUMENT missing/bad options (the message names the variable to set);
  // UNAVAILABLE no agent at the socket; the agent's and coordinator's Attach errors.
  static absl::StatusOr<std::unique_ptr<Client>> Attach(ClientOptions options);
  virtual ~Client() = default;

  virtual const Placement& placement() const = 0;

  // init_device_mesh(shape, names) over the job's world. Registers the mesh's spec with the
  // coordinator and fetches the NCCL ids of every group this rank is in (one per dim, plus the
  // world) in one request, answered as soon as those groups' leaders minted their ids — it waits
  // for no rank outside this rank's groups. When ranks ask for different meshes under one name
  // (or as the same n-th unnamed mesh), the rank asking for the other one gets
  // FAILED_PRECONDITION naming both and who asked for which, and the ranks already answered
  // learn it as the end of their generation (ABORTED, reason MESH_MISMATCH, the same message).
  // With MeshIds::kNone only the spec check runs, and it waits for every rank of the mesh, so
  // that a mismatch reaches every rank as FAILED_PRECONDITION (no NCCL id is minted or fetched:
  // for jobs whose communicators come from elsewhere, e.g. torch's process groups); Groups()
  // fetches ids later.
  virtual absl::StatusOr<DeviceMesh> InitDeviceMesh(const std::vector<int64_t>& shape,
                                                    const std::vector<std::string>& names,
                                                    const std::string& mesh_name = "",
                                                    MeshIds ids = MeshIds::kFetch) = 0;
  // PyTorch's DeviceMesh(device_type, mesh=table, mesh_dim_names=names): a mesh over an explicit
  // rank table of `shape` (row-major `ranks`: any order, any subset of the world — e.g. one
  // pipeline stage), checked and fetched as InitDeviceMesh's. Ranks outside the table get a mesh
  // with no coordinate and take no part in its exchanges (with MeshIds::kFetch). Tables other
  // than 0..N-1 in order are exchanged up to layout::kMaxExchangedTableRanks (16,384) ranks
  // (INVALID_ARGUMENT beyond). Errors: INVALID_ARGUMENT a rank outside the world or repeated, a
  // table whose size is not the shape's; then as InitDeviceMesh's.
  virtual absl::StatusOr<DeviceMesh> InitDeviceMeshFromRanks(const std::vector<int64_t>& shape,
                                                             const std::vector<int64_t>& ranks,
                                                             const std::vector<std::string>& names,
                                                             const std::string& mesh_name = "",
                                                             MeshIds ids = MeshIds::kFetch) = 0;
  // PyTorch's DeviceMesh.from_group: a 1-dim mesh over `group`'s members (in its order), whose one
  // group is `group` itself — same ids, no call to anyone. Every member must make it from the same
  // group. Errors: INVALID_ARGUMENT a group that does not come from Groups()/GroupOf().
  virtual absl::StatusOr<DeviceMesh> MeshFromGroup(const Group& group,
                                                   const std::string& dim_name = "") = 0;
  // This rank's groups of `mesh` (one per dim) with their ids. Groups are known by what they are
  // (the root mesh, the dim's layout in it, the index — Group::key), not by the view they were
  // reached through: a slice of a mesh fetched before costs no call; an unflatten or a flatten
  // fetches only its new dims' groups, in one batched exchange. Every member of a group it
  // fetches must ask for it (as with PyTorch's new_group); a group's ids come as soon as its
  // leader minted them, whoever else is late.
  virtual absl::StatusOr<std::vector<Group>> Groups(const DeviceMesh& mesh) = 0;
  // This rank's group along `dim` (PyTorch's get_group): an index (negative from the end), one of
  // the mesh's names, or a flattened name of its root (that flattened mesh's group). Errors:
  // INVALID_ARGUMENT a dim that is not one (naming the valid ones); FAILED_PRECONDITION this rank
  // is not in the mesh; then as Groups'.
  virtual absl::StatusOr<Group> GroupOf(const DeviceMesh& mesh, const MeshDim& dim) = 0;

  // A ready NCCL communicator for `group` (this rank is a member), made as options.mode says — or
  // the one made before for the same group (Group::key) and mode while it lives: a second request
  // never makes a second communicator (asking with other ncclConfig_t fields than it was made with
  // is FAILED_PRECONDITION). Every member must ask: it is collective. Before NCCL's init each
  // member sets an arrival key in the generation's store (docs/client-api.md#communicators), so
  // that an init still unfinished at its deadline (options.timeout, else ClientOptions::timeout)
  // is aborted and answers DEADLINE_EXCEEDED naming the ranks that never arrived.
  //
  // kSplit: each call is one ncclCommSplit of the world communicator, which every rank of the job
  // must take part in at the same time: the group's members through this call (a member whose
  // communicator is cached takes part without a color), every other rank through SplitNoColor()
  // or the mesh form below.
  //
  // Errors: FAILED_PRECONDITION without NCCL or a CUDA device (never a fake) or when the NCCL is
  // too old for the mode or a field (naming both versions); DEADLINE_EXCEEDED (naming the missing
  // ranks); ABORTED (the generation ended: the half-made communicator is aborted); CANCELLED (the
  // Interrupter); INVALID_ARGUMENT (a group without ids, a bad field); INTERNAL (NCCL's or CUDA's
  // error).
  virtual absl::StatusOr<std::shared_ptr<Communicator>> MakeCommunicator(
      const Group& group, const CommOptions& options = {}) = 0;
  // The same for this rank's group along `dim` of `mesh` (an index, a name, or a flattened name of
  // its root, as DeviceMesh::ResolveDim reads it; fetched with Groups() when it was not), on any
  // rank of the job: a rank outside the mesh gets a null communicator (OK) — with kSplit after
  // taking part in the split with NCCL_SPLIT_NOCOLOR, as it must. With kSplit and a mesh smaller
  // than the world, have every rank call this for the same (mesh, dim)s in the same order.
  virtual absl::StatusOr<std::shared_ptr<Communicator>> MakeCommunicator(
      const DeviceMesh& mesh, const MeshDim& dim, const CommOptions& options = {}) = 0;
  // kSplit on a rank that is in none of the groups being split: takes part in the world
  // communicator's next ncclCommSplit with NCCL_SPLIT_NOCOLOR (making the world communicator
  // first, with every rank, when this client has not yet). Errors as MakeCommunicator's.
  virtual absl::Status SplitNoColor(const CommOptions& options = {}) = 0;

  // The generation's key-value store: what torch.distributed's Store does (c10d semantics: the
  // results TCPStore gives for the same calls), kept by the coordinator for the generation's
  // lifetime and reached through the agent. Keys are 1-1024 bytes of UTF-8, values up to 4 MiB (a
  // compare-set's two together): INVALID_ARGUMENT before anything is sent. Every call waits at
  // most `timeout` (DEADLINE_EXCEEDED naming the keys); after the generation ended they answer
  // ABORTED. Concurrent identical waits of one host's workers are one coordinator call.
  virtual absl::Status KeySet(const std::string& key, const std::string& value,
                              absl::Duration timeout) = 0;
  // Waits until the key is set.
  virtual absl::StatusOr<std::string> KeyGet(const std::string& key, absl::Duration timeout) = 0;
  // Adds `delta` to a decimal counter (absent = 0) and returns it. INVALID_ARGUMENT when the key
  // holds something else; OUT_OF_RANGE on overflow.
  virtual absl::StatusOr<int64_t> KeyAdd(const std::string& key, int64_t delta,
                                         absl::Duration timeout) = 0;
  // TCPStore's compare_set: stores `desired` when the key holds `expected` (or is absent and
  // `expected` is empty) and returns the value now stored; returns `expected` when the key is
  // absent and `expected` is not empty. `swapped` (optional): whether this call stored `desired`
  // (the answer alone cannot tell when another caller stored the same bytes).
  virtual absl::StatusOr<std::string> KeyCompareSet(const std::string& key,
                                                    const std::string& expected,
                                                    const std::string& desired,
                                                    absl::Duration timeout,
                                                    bool* swapped = nullptr) = 0;
  // Waits until every key is set (none: at once). More than 1,024 keys go as one call per 1,024,
  // one after the other within `timeout`: a key of an earlier part deleted meanwhile (KeyDelete)
  // goes unnoticed, where TCPStore looks at all of them at once.
  virtual absl::Status KeyWait(const std::vector<std::string>& keys, absl::Duration timeout) = 0;
  // Whether every key is set (no wait; none: true). More than 1,024 keys: as KeyWait.
  virtual absl::StatusOr<bool> KeyCheck(const std::vector<std::string>& keys,
                                        absl::Duration timeout) = 0;
  // Removes a key; whether it was set.
  virtual absl::StatusOr<bool> KeyDelete(const std::string& key, absl::Duration timeout) = 0;
  // How many keys are set.
  virtual absl::StatusOr<int64_t> KeyCount(absl::Duration timeout) = 0;

  // OK while the generation runs; ABORTED with the reason once it ended.
  virtual absl::Status health() const = 0;
  // Called once (on a client thread) when the generation ends; at once if it already has.
  virtual void OnGenerationEnd(std::function<void(const absl::Status&)> callback) = 0;
};

}  // namespace meshd

// std::unordered_map<meshd::DeviceMesh, ...>: DeviceMesh::Hash, consistent with ==.
namespace std {
template <>
struct hash<meshd::DeviceMesh> {
  size_t operator()(const meshd::DeviceMesh& m) const { return m.Hash(); }
};
}  // namespace std

#endif  // MESHD_CLIENT_CLIENT_H_
