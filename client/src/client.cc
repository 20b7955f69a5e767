// meshd::Client: the worker side of meshd (see <meshd/client.h>). Talks to the host's agent over
// its unix socket with the meshd.v1.Agent API; the mesh maths is common/layout; NCCL and CUDA are
// loaded with dlopen when first needed.
#include "meshd/client.h"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "client/src/device_mesh_impl.h"
#include "client/src/nccl_runtime.h"
#include "grpcpp/grpcpp.h"
#include "meshd/v1/agent.grpc.pb.h"

namespace meshd {
namespace {

using client_internal::CudaRuntime;
using client_internal::NcclRuntime;
using client_internal::NcclUniqueIdC;

// Registers a call's context with the client's Interrupter (if any) while the call is in flight.
class InterruptibleCall {
 public:
  InterruptibleCall(Interrupter* interrupter, grpc::ClientContext* ctx);
  ~InterruptibleCall();

 private:
  Interrupter* const interrupter_;
  grpc::ClientContext* const ctx_;
};

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

absl::Status ResolveDefaults(ClientOptions& o) {
  if (o.socket.empty()) o.socket = Env("MESHD_SOCKET");
  if (o.socket.empty()) o.socket = "/run/meshd/agent.sock";
  if (o.job.empty()) o.job = Env("MESHD_JOB");
  if (o.job.empty())
    return absl::InvalidArgumentError("no job: set ClientOptions::job or MESHD_JOB");
  if (o.local_rank < 0 && !absl::SimpleAtoi(Env("LOCAL_RANK"), &o.local_rank)) {
    return absl::InvalidArgumentError("no local rank: set ClientOptions::local_rank or LOCAL_RANK");
  }
  if (o.local_world < 0 && !absl::SimpleAtoi(Env("LOCAL_WORLD_SIZE"), &o.local_world)) {
    return absl::InvalidArgumentError(
        "no local world size: set ClientOptions::local_world or LOCAL_WORLD_SIZE");
  }
  if (o.min_nodes == 0) {
    const std::string nnodes = Env("MESHD_NNODES");
    if (nnodes.empty()) {
      o.min_nodes = o.max_nodes = 1;
    } else {
      std::vector<std::string> parts = absl::StrSplit(nnodes, ':');
      if (parts.size() > 2 || !absl::SimpleAtoi(parts[0], &o.min_nodes) ||
          !absl::SimpleAtoi(parts.back(), &o.max_nodes)) {
        return absl::InvalidArgumentError(
            absl::StrCat("MESHD_NNODES='", nnodes, "' must be N or MIN:MAX"));
      }
    }
  }
  if (o.max_nodes == 0) o.max_nodes = o.min_nodes;
  if (o.nccl_library.empty()) o.nccl_library = Env("MESHD_NCCL_LIBRARY");
  if (o.nccl_library.empty()) o.nccl_library = "libnccl.so.2";
  if (o.cudart_library.empty()) o.cudart_library = Env("MESHD_CUDART_LIBRARY");
  if (o.ranks_per_id < 0) {
    const std::string per_id = Env("MESHD_RANKS_PER_ID");
    o.ranks_per_id = 0;
    if (!per_id.empty() && (!absl::SimpleAtoi(per_id, &o.ranks_per_id) || o.ranks_per_id < 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MESHD_RANKS_PER_ID='", per_id, "' must be a number of ranks (0: one id per group)"));
    }
  }
  if (o.timeout <= absl::ZeroDuration())
    return absl::InvalidArgumentError("timeout must be positive");
  return absl::OkStatus();
}

}  // namespace

struct Interrupter::Impl {
  absl::Mutex mu;
  std::set<grpc::ClientContext*> calls ABSL_GUARDED_BY(mu);
};

Interrupter::Interrupter() : impl_(std::make_unique<Impl>()) {}
Interrupter::~Interrupter() = default;

void Interrupter::Interrupt() {
  absl::MutexLock lock(&impl_->mu);
  for (grpc::ClientContext* ctx : impl_->calls) ctx->TryCancel();
}

namespace {

InterruptibleCall::InterruptibleCall(Interrupter* interrupter, grpc::ClientContext* ctx)
    : interrupter_(interrupter), ctx_(ctx) {
  if (interrupter_ == nullptr) return;
  absl::MutexLock lock(&interrupter_->impl()->mu);
  interrupter_->impl()->calls.insert(ctx_);
}

InterruptibleCall::~InterruptibleCall() {
  if (interrupter_ == nullptr) return;
  absl::MutexLock lock(&interrupter_->impl()->mu);
  interrupter_->impl()->calls.erase(ctx_);
}

// A key for messages: at most 64 bytes of it.
std::string KeyForMessage(absl::string_view key) {
  return key.size() <= 64 ? std::string(key) : absl::StrCat(key.substr(0, 64), "...");
}

class ClientImpl final : public Client {
 public:
  ClientImpl(ClientOptions options, std::shared_ptr<grpc::Channel> channel, Placement placement)
      : options_(std::move(options)),
        stub_(v1::Agent::NewStub(channel)),
        placement_(std::move(placement)) {
    watch_thread_ = std::thread([this] { WatchGeneration(); });
    // Attach returns once the watch is armed, so no end of the generation can slip past it.
    watch_armed_.WaitForNotificationWithTimeout(options_.timeout);
  }

  ~ClientImpl() override {
    // Leave cleanly, so that the agent does not take this worker as lost when its watch goes.
    v1::DetachRequest detach;
    detach.set_job(options_.job);
    detach.set_generation(placement_.generation);
    detach.set_local_rank(static_cast<uint32_t>(placement_.local_rank));
    v1::DetachResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    (void)stub_->Detach(&ctx, detach, &resp);
    watch_ctx_.TryCancel();
    if (watch_thread_.joinable()) watch_thread_.join();
  }

  const Placement& placement() const override { return placement_; }

  absl::Status health() const override {
    absl::MutexLock lock(&mu_);
    return health_;
  }

  void OnGenerationEnd(std::function<void(const absl::Status&)> callback) override {
    absl::Status ended;
    {
      absl::MutexLock lock(&mu_);
      if (health_.ok()) {
        callbacks_.push_back(std::move(callback));
        return;
      }
      ended = health_;
    }
    callback(ended);
  }

  absl::StatusOr<DeviceMesh> InitDeviceMesh(const std::vector<int64_t>& shape,
                                            const std::vector<std::string>& names,
                                            const std::string& mesh_name, MeshIds ids) override {
    if (absl::Status h = health(); !h.ok()) return h;
    absl::StatusOr<layout::DeviceMesh> mesh = layout::DeviceMesh::Create(
        shape, names.empty() ? layout::DimNames() : layout::DimNames(names), placement_.world_size);
    if (!mesh.ok()) return mesh.status();
    std::string key = mesh_name;
    if (key.empty()) {
      absl::MutexLock lock(&mu_);
      key = absl::StrCat("#", unnamed_meshes_++);
    }
    DeviceMesh m(std::make_shared<const DeviceMesh::Impl>(
        DeviceMesh::Impl{*std::move(mesh), placement_.rank, key, key}));
    if (ids == MeshIds::kNone) {
      // The spec check alone: an exchange with no groups, answered once every rank reported.
      absl::StatusOr<std::vector<Group>> none = Exchange(m, /*with_world=*/false, /*ids=*/false);
      if (!none.ok()) return none.status();
      return m;
    }
    absl::StatusOr<std::vector<Group>> groups = Exchange(m, /*with_world=*/true, /*ids=*/true);
    if (!groups.ok()) return groups.status();
    return m;
  }

  absl::StatusOr<std::vector<Group>> Groups(const DeviceMesh& mesh) override {
    {
      absl::MutexLock lock(&mu_);
      if (auto it = groups_.find(mesh.key()); it != groups_.end()) return it->second;
    }
    return Exchange(mesh, /*with_world=*/false, /*ids=*/true);
  }

  absl::StatusOr<Group> GroupOf(const DeviceMesh& mesh, int dim) override {
    if (dim < 0 || dim >= mesh.ndim()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dim ", dim, " is out of range for ", mesh.ToString()));
    }
    absl::StatusOr<std::vector<Group>> groups = Groups(mesh);
    if (!groups.ok()) return groups.status();
    if (groups->empty()) {
      return absl::FailedPreconditionError(absl::StrCat("rank ", placement_.rank, " is not in ",
                                                        mesh.ToString(), ", so it has no groups"));
    }
    return (*groups)[dim];
  }

  absl::StatusOr<std::unique_ptr<Communicator>> MakeCommunicator(const Group& group,
                                                                 CommInit mode) override;

  absl::Status KeySet(const std::string& key, const std::string& value,
                      absl::Duration timeout) override {
    v1::KeySetRequest req = Scoped<v1::KeySetRequest>();
    req.set_key(key);
    req.set_value(value);
    v1::KeySetResponse resp;
    return Call(OneKey("set", key), timeout, &v1::Agent::Stub::KeySet, req, &resp);
  }

  absl::StatusOr<std::string> KeyGet(const std::string& key, absl::Duration timeout) override {
    v1::KeyGetRequest req = Scoped<v1::KeyGetRequest>();
    req.set_key(key);
    req.set_wait(true);
    v1::KeyGetResponse resp;
    if (absl::Status s = Call(OneKey("get", key), timeout, &v1::Agent::Stub::KeyGet, req, &resp); !s.ok())
      return s;
    return std::move(*resp.mutable_value());
  }

  absl::StatusOr<int64_t> KeyAdd(const std::string& key, int64_t delta,
                                 absl::Duration timeout) override {
    v1::KeyAddRequest req = Scoped<v1::KeyAddRequest>();
    req.set_key(key);
    req.set_delta(delta);
    v1::KeyAddResponse resp;
    if (absl::Status s = Call(OneKey("add to", key), timeout, &v1::Agent::Stub::KeyAdd, req, &resp);
        !s.ok())
      return s;
    return resp.value();
  }

  absl::StatusOr<std::string> KeyCompareSet(const std::string& key, const std::string& expected,
                                            const std::string& desired, absl::Duration timeout,
                                            bool* swapped) override {
    const absl::Time deadline = absl::Now() + timeout;
    // TCPStore: an empty `expected` matches an absent key, and an empty value.
    v1::KeyCompareSetRequest req = Scoped<v1::KeyCompareSetRequest>();
    req.set_key(key);
    req.set_expected(expected);
    req.set_expect_absent(expected.empty());
    req.set_desired(desired);
    v1::KeyCompareSetResponse resp;
    if (absl::Status s = Call(OneKey("compare-set", key), deadline - absl::Now(),
                              &v1::Agent::Stub::KeyCompareSet, req, &resp);
        !s.ok()) {
      return s;
    }
    if (!resp.swapped() && expected.empty() && resp.present() && resp.value().empty()) {
      req.set_expect_absent(false);  // set to "": compare with "" itself
      if (absl::Status s = Call(OneKey("compare-set", key), deadline - absl::Now(),
                                &v1::Agent::Stub::KeyCompareSet, req, &resp);
          !s.ok()) {
        return s;
      }
    }
    if (swapped != nullptr) *swapped = resp.swapped();
    if (!resp.present()) return expected;  // absent and not swapped: TCPStore answers `expected`
    return std::move(*resp.mutable_value());
  }

  absl::Status KeyWait(const std::vector<std::string>& keys, absl::Duration timeout) override {
    v1::KeyWaitRequest req = Scoped<v1::KeyWaitRequest>();
    for (const std::string& k : keys) req.add_keys(k);
    v1::KeyWaitResponse resp;
    return Call(Keys("wait for", keys), timeout, &v1::Agent::Stub::KeyWait, req, &resp);
  }

  absl::StatusOr<bool> KeyCheck(const std::vector<std::string>& keys,
                                absl::Duration timeout) override {
    v1::KeyCheckRequest req = Scoped<v1::KeyCheckRequest>();
    for (const std::string& k : keys) req.add_keys(k);
    v1::KeyCheckResponse resp;
    if (absl::Status s = Call(Keys("check", keys), timeout, &v1::Agent::Stub::KeyCheck,
                              req, &resp);
        !s.ok())
      return s;
    return resp.all_set();
  }

  absl::StatusOr<bool> KeyDelete(const std::string& key, absl::Duration timeout) override {
    v1::KeyDeleteRequest req = Scoped<v1::KeyDeleteRequest>();
    req.set_key(key);
    v1::KeyDeleteResponse resp;
    if (absl::Status s = Call(OneKey("delete", key), timeout, &v1::Agent::Stub::KeyDelete, req, &resp);
        !s.ok())
      return s;
    return resp.deleted();
  }

  absl::StatusOr<int64_t> KeyCount(absl::Duration timeout) override {
    v1::KeyCountRequest req = Scoped<v1::KeyCountRequest>();
    v1::KeyCountResponse resp;
    if (absl::Status s = Call("count the keys", timeout, &v1::Agent::Stub::KeyCount, req, &resp);
        !s.ok())
      return s;
    return resp.count();
  }

 private:
  template <typename Req>
  Req Scoped() const {
    Req req;
    req.set_job(options_.job);
    req.set_generation(placement_.generation);
    return req;
  }

  // "set key 'k'" (the key cut to 64 bytes), "wait for keys 'a', 'b'" (at most 4 named).
  static std::string OneKey(absl::string_view verb, absl::string_view key) {
    return absl::StrCat(verb, " key '", KeyForMessage(key), "'");
  }
  static std::string Keys(absl::string_view verb, const std::vector<std::string>& keys) {
    std::string out = absl::StrCat(verb, keys.size() == 1 ? " key " : " keys ");
    for (size_t i = 0; i < keys.size() && i < 4; ++i)
      absl::StrAppend(&out, i ? ", '" : "'", KeyForMessage(keys[i]), "'");
    if (keys.size() > 4) absl::StrAppend(&out, " and ", keys.size() - 4, " more");
    return out;
  }

  // The store calls that wait (KeyGet is always sent with wait).
  template <typename Req>
  static constexpr bool kWaits =
      std::is_same_v<Req, v1::KeyGetRequest> || std::is_same_v<Req, v1::KeyWaitRequest>;

  // One store call to the agent, ending by `timeout`; errors say what was asked (`what`).
  template <typename Req, typename Resp>
  absl::Status Call(absl::string_view what, absl::Duration timeout,
                    grpc::Status (v1::Agent::Stub::*method)(grpc::ClientContext*, const Req&,
                                                            Resp*),
                    const Req& req, Resp* resp) {
    if (absl::Status h = health(); !h.ok()) return h;
    if (timeout <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat("cannot ", what, ": the store's timeout is not positive"));
    }
    const absl::Time deadline = absl::Now() + timeout;
    grpc::Status s;
    while (true) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(deadline));
      InterruptibleCall interruptible(options_.interrupter.get(), &ctx);
      s = (stub_.get()->*method)(&ctx, req, resp);
      // The servers hold a wait for at most their --max-wait (10 minutes): a longer wait (torch's
      // store timeout is 30 minutes) is sent again until its own deadline.
      if (!kWaits<Req> || s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED ||
          absl::Now() + absl::Milliseconds(50) >= deadline) {
        break;
      }
    }
    if (s.ok()) return absl::OkStatus();
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return absl::DeadlineExceededError(absl::StrCat(
          "cannot ", what, " of job '", options_.job, "' within ", absl::FormatDuration(timeout),
          s.error_message().empty() ? "" : ": ", s.error_message()));
    }
    return FromGrpc(s, absl::StrCat("cannot ", what, " of job '", options_.job, "'"));
  }

  // One batched exchange: this rank's groups of `mesh` (plus the world group) with their ids.
  // `ids` false: no groups, the spec check alone (nothing is cached).
  absl::StatusOr<std::vector<Group>> Exchange(const DeviceMesh& mesh, bool with_world, bool ids) {
    std::lock_guard<std::mutex> serial(exchange_mu_);
    if (absl::Status h = health(); !h.ok()) return h;
    const layout::DeviceMesh& lm = mesh.impl()->mesh;
    // A mesh checked without ids before gets its ids under a key of their own (the coordinator
    // answers a key it has seen with what it answered then).
    std::string exchange_key = mesh.key();
    {
      absl::MutexLock lock(&mu_);
      if (!ids) {
        spec_only_.insert(mesh.key());
        exchange_key = mesh.key();
      } else if (spec_only_.contains(mesh.key())) {
        exchange_key = absl::StrCat(mesh.key(), "+ids");
      }
    }
    std::vector<Group> groups;
    if (ids && lm.coordinate(placement_.rank)) {
      for (int d = 0; d < lm.ndim(); ++d) {
        absl::StatusOr<layout::RankGroup> g = lm.GroupOf(placement_.rank, d);
        if (!g.ok()) return g.status();
        Group out;
        out.dims = {lm.DimLabel(d)};
        out.ranks = g->ranks;
        out.group_rank = g->local_rank;
        out.group_index = g->index;
        out.index = std::find(g->ranks.begin(), g->ranks.end(), placement_.rank) - g->ranks.begin();
        out.key = absl::StrCat(exchange_key, "/", lm.DimLabel(d), "/", g->index);
        groups.push_back(std::move(out));
      }
    }
    if (with_world) {
      Group world;
      world.dims = {"world"};
      for (int r = 0; r < placement_.world_size; ++r) world.ranks.push_back(r);
      world.index = world.group_rank = placement_.rank;
      world.key = absl::StrCat(exchange_key, "/world/0");
      groups.push_back(std::move(world));
    }

    v1::RankGroupsRequest req;
    req.set_job(options_.job);
    req.set_generation(placement_.generation);
    req.set_local_rank(static_cast<uint32_t>(placement_.local_rank));
    req.set_mesh_key(exchange_key);
    req.mutable_spec()->set_fingerprint(MeshFingerprint(lm));
    req.mutable_spec()->set_description(lm.ToString());
    for (const Group& g : groups) {
      v1::GroupRequest* gr = req.add_groups();
      gr->set_key(g.key);
      const int64_t members = static_cast<int64_t>(g.ranks.size());
      const int64_t per_id = options_.ranks_per_id > 0 ? options_.ranks_per_id : members;
      const int64_t chunks = (members + per_id - 1) / per_id;
      gr->set_num_ids(static_cast<uint32_t>(chunks));
      for (int64_t c = 0; c < chunks; ++c) {
        if (g.ranks[c * per_id] != placement_.rank) continue;
        // This rank leads chunk c: its process becomes that id's NCCL bootstrap root. If it cannot
        // mint, it still reports (with the reason) so that every member fails fast, not at the
        // deadline.
        absl::StatusOr<const NcclRuntime*> nccl = NcclRuntime::Load(options_.nccl_library);
        absl::StatusOr<NcclUniqueId> id =
            nccl.ok() ? (*nccl)->MintId() : absl::StatusOr<NcclUniqueId>(nccl.status());
        if (!id.ok()) {
          gr->set_mint_error(absl::StrCat("rank ", placement_.rank, ": ", id.status().message()));
          continue;
        }
        v1::MintedId* minted = gr->add_minted();
        minted->set_index(static_cast<uint32_t>(c));
        minted->set_id(std::string(reinterpret_cast<const char*>(id->data()), id->size()));
      }
    }
    v1::ResolveGroupsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
    InterruptibleCall interruptible(options_.interrupter.get(), &ctx);
    const grpc::Status s = stub_->ResolveGroups(&ctx, req, &resp);
    if (!s.ok()) {
      return FromGrpc(s, ids ? absl::StrCat("cannot get the NCCL ids of ", lm.ToString())
                             : absl::StrCat("cannot check ", lm.ToString(), " across the ranks"));
    }
    std::map<std::string, const v1::GroupIds*> by_key;
    for (const v1::GroupIds& g : resp.groups()) by_key[g.key()] = &g;
    for (Group& g : groups) {
      auto it = by_key.find(g.key);
      if (it == by_key.end()) return absl::InternalError(absl::StrCat("no ids for group ", g.key));
      for (const std::string& bytes : it->second->ids()) {
        if (bytes.size() != sizeof(NcclUniqueId)) return absl::InternalError("malformed NCCL id");
        NcclUniqueId id;
        std::memcpy(id.data(), bytes.data(), id.size());
        g.ids.push_back(id);
      }
    }
    if (!ids) return groups;
    absl::MutexLock lock(&mu_);
    if (with_world) world_ = groups.back();
    if (with_world) groups.pop_back();
    groups_[mesh.key()] = groups;
    return groups;
  }

  void WatchGeneration() {
    v1::WatchRequest req;
    req.set_job(options_.job);
    req.set_generation(placement_.generation);
    req.set_local_rank(static_cast<uint32_t>(placement_.local_rank));
    auto reader = stub_->Watch(&watch_ctx_, req);
    reader->WaitForInitialMetadata();  // sent by the agent once the watch is registered
    watch_armed_.Notify();
    v1::GenerationEnd end;
    absl::Status ended;
    if (reader->Read(&end)) {
      ended = absl::AbortedError(absl::StrCat(
          "generation ", end.generation(), " of job '", end.job(), "' ended (",
          v1::GenerationEnd::Reason_Name(end.reason()), end.node().empty() ? "" : " of node '",
          end.node(), end.node().empty() ? "" : "'", "): ", end.message(),
          "; abort communicators and attach again"));
    } else {
      const grpc::Status s = reader->Finish();
      if (s.error_code() == grpc::StatusCode::CANCELLED) return;  // the client is closing
      ended = absl::AbortedError(absl::StrCat("lost the meshd agent's watch on generation ",
                                              placement_.generation, ": ", s.error_message()));
    }
    std::vector<std::function<void(const absl::Status&)>> callbacks;
    {
      absl::MutexLock lock(&mu_);
      health_ = ended;
      callbacks.swap(callbacks_);
    }
    for (auto& cb : callbacks) cb(ended);
  }

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
  int unnamed_meshes_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::vector<Group>> groups_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> spec_only_ ABSL_GUARDED_BY(mu_);  // meshes checked without ids
  std::optional<Group> world_ ABSL_GUARDED_BY(mu_);
  std::mutex world_mu_;                       // guards world_comm_ and its creation
  std::unique_ptr<Communicator> world_comm_;  // for CommInit::kSplit, made on first use
};

}  // namespace

struct Communicator::Impl {
  const NcclRuntime* nccl = nullptr;
  const CudaRuntime* cuda = nullptr;
  client_internal::cudaStream_t stream = nullptr;
  ~Impl() {
    if (stream != nullptr) cuda->StreamDestroy(stream);
  }
};

// The communicator goes first; its stream with impl_ after it.
Communicator::~Communicator() {
  if (comm_ != nullptr) impl_->nccl->CommDestroy(comm_);
}

absl::Status Communicator::AllReduceSum(float* device_buffer, size_t count) {
  if (absl::Status s = impl_->nccl->Check(
          impl_->nccl->AllReduce(device_buffer, device_buffer, count, /*ncclFloat32=*/7,
                                 /*ncclSum=*/0, comm_, impl_->stream),
          "ncclAllReduce");
      !s.ok()) {
    return s;
  }
  return impl_->cuda->Check(impl_->cuda->StreamSynchronize(impl_->stream), "cudaStreamSynchronize");
}

absl::StatusOr<std::unique_ptr<Communicator>> ClientImpl::MakeCommunicator(const Group& group,
                                                                           CommInit mode) {
  if (absl::Status h = health(); !h.ok()) return h;
  if (group.ids.empty())
    return absl::InvalidArgumentError("the group has no NCCL ids; get it from Groups()");
  absl::StatusOr<const NcclRuntime*> nccl = NcclRuntime::Load(options_.nccl_library);
  if (!nccl.ok()) return nccl.status();
  absl::StatusOr<const CudaRuntime*> cuda = CudaRuntime::Load(options_.cudart_library);
  if (!cuda.ok()) return cuda.status();
  auto impl = std::make_shared<Communicator::Impl>();
  impl->nccl = *nccl;
  impl->cuda = *cuda;
  if (absl::Status s = impl->cuda->Check(
          impl->cuda->SetDevice(placement_.gpu_index % impl->cuda->device_count), "cudaSetDevice");
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          impl->cuda->Check(impl->cuda->StreamCreate(&impl->stream), "cudaStreamCreate");
      !s.ok()) {
    return s;
  }
  const int size = static_cast<int>(group.ranks.size());
  const int rank = static_cast<int>(group.group_rank);
  client_internal::ncclComm_t comm = nullptr;
  absl::Status status;
  switch (mode) {
    case CommInit::kInitRank: {
      NcclUniqueIdC id;
      std::memcpy(id.internal, group.ids[0].data(), sizeof id.internal);
      status =
          impl->nccl->Check(impl->nccl->CommInitRank(&comm, size, id, rank), "ncclCommInitRank");
      break;
    }
    case CommInit::kScalable: {
      if (impl->nccl->CommInitRankScalable == nullptr) {
        return absl::FailedPreconditionError(
            "this NCCL has no ncclCommInitRankScalable (needs >= 2.23)");
      }
      std::vector<NcclUniqueIdC> ids(group.ids.size());
      for (size_t i = 0; i < ids.size(); ++i)
        std::memcpy(ids[i].internal, group.ids[i].data(), 128);
      status = impl->nccl->Check(
          impl->nccl->CommInitRankScalable(&comm, size, rank, static_cast<int>(ids.size()),
                                           ids.data(), nullptr),
          "ncclCommInitRankScalable");
      break;
    }
    case CommInit::kSplit: {
      if (impl->nccl->CommSplit == nullptr) {
        return absl::FailedPreconditionError("this NCCL has no ncclCommSplit (needs >= 2.18)");
      }
      std::optional<Group> world_group;
      {
        absl::MutexLock lock(&mu_);
        world_group = world_;
      }
      if (!world_group) {
        return absl::FailedPreconditionError("no world group yet: call InitDeviceMesh first");
      }
      // Held while the world communicator is made, so that it is made (a collective) once.
      std::lock_guard<std::mutex> world_lock(world_mu_);
      if (world_comm_ == nullptr) {
        auto made = MakeCommunicator(*world_group, CommInit::kScalable);
        if (!made.ok()) return made.status();
        world_comm_ = *std::move(made);
      }
      void* world = world_comm_->nccl_comm();
      // Every rank of the world splits together: color = which group, key = rank in it.
      status = impl->nccl->Check(
          impl->nccl->CommSplit(world, static_cast<int>(group.group_index), rank, &comm, nullptr),
          "ncclCommSplit");
      break;
    }
  }
  if (!status.ok()) return status;  // impl's destructor releases the stream
  return std::make_unique<Communicator>(std::move(impl), comm, size, rank);
}

absl::StatusOr<std::unique_ptr<Client>> Client::Attach(ClientOptions options) {
  if (absl::Status s = ResolveDefaults(options); !s.ok()) return s;
  struct stat st {};
  if (stat(options.socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return absl::UnavailableError(absl::StrCat("no meshd agent socket at ", options.socket,
                                               " (is meshd running? set MESHD_SOCKET)"));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);  // store values of up to 4 MiB plus their framing
  auto channel = grpc::CreateCustomChannel("unix:" + options.socket,
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Agent::NewStub(channel);
  v1::AttachRequest req;
  req.set_job(options.job);
  req.set_local_rank(static_cast<uint32_t>(options.local_rank));
  req.set_local_world(static_cast<uint32_t>(options.local_world));
  req.mutable_nodes()->set_min_nodes(static_cast<uint32_t>(options.min_nodes));
  req.mutable_nodes()->set_max_nodes(static_cast<uint32_t>(options.max_nodes));
  v1::AttachResponse resp;
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  grpc::Status s;
  {
    InterruptibleCall interruptible(options.interrupter.get(), &ctx);
    s = stub->Attach(&ctx, req, &resp);
  }
  if (!s.ok()) {
    return FromGrpc(
        s, absl::StrCat("cannot attach to job '", options.job, "' through ", options.socket));
  }
  Placement p;
  p.rank = static_cast<int>(resp.rank());
  p.world_size = static_cast<int>(resp.world_size());
  p.local_rank = static_cast<int>(resp.local_rank());
  p.local_world = static_cast<int>(resp.local_world());
  p.node_rank = static_cast<int>(resp.node_rank());
  p.num_nodes = static_cast<int>(resp.num_nodes());
  p.generation = resp.generation();
  p.gpu_index = static_cast<int>(resp.gpu().index());
  p.gpu_uuid = resp.gpu().uuid();
  p.gpu_pci_bus_id = resp.gpu().pci_bus_id();
  p.gpu_name = resp.gpu().name();
  p.gpu_nvlink_clique = resp.gpu().nvlink_clique();
  p.gpu_simulated = resp.gpu().simulated();
  return std::unique_ptr<Client>(new ClientImpl(std::move(options), channel, std::move(p)));
}

}  // namespace meshd
