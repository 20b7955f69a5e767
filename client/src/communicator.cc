// meshd::Communicator (see <meshd/client.h>) and ClientImpl::MakeCommunicator / SplitNoColor,
// which make communicators from a group's NCCL ids: ncclCommInitRankConfig,
// ncclCommInitRankScalable, or ncclCommSplit of a world communicator made once per client; each
// made without blocking and polled (NcclComm), after the member announced its arrival in the
// generation's store (arrivals.h), and kept in the client's CommRegistry (a weak cache per group
// and mode, and the list the generation's end aborts). NCCL and CUDA are loaded with dlopen when
// first needed. Thread-safety: see client_impl.h; splits and the world communicator's creation
// are serialized by world_mu_.
#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "client/src/arrivals.h"
#include "client/src/client_impl.h"
#include "client/src/interrupter.h"
#include "client/src/nccl_comm.h"
#include "client/src/nccl_runtime.h"

namespace meshd {

using client_internal::CudaRuntime;
using client_internal::NcclComm;
using client_internal::NcclRuntime;
using client_internal::NcclUniqueIdC;

struct Communicator::Impl {
  std::unique_ptr<NcclComm> comm;
  std::string group_key;
  CommInit mode = CommInit::kInitRank;
  std::string name;
  std::string config;  // the ncclConfig_t fields asked for (a cached one must be asked the same)
  int size = 0;
  int rank = 0;
};

Communicator::Communicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Communicator::~Communicator() = default;  // NcclComm destroys, or aborts, or (aborted) nothing
void* Communicator::nccl_comm() const { return impl_->comm->handle(); }
int Communicator::size() const { return impl_->size; }
int Communicator::rank() const { return impl_->rank; }
const std::string& Communicator::group_key() const { return impl_->group_key; }
CommInit Communicator::mode() const { return impl_->mode; }
const std::string& Communicator::name() const { return impl_->name; }
absl::Status Communicator::status() const { return impl_->comm->status(); }
bool Communicator::aborted() const { return impl_->comm->aborted(); }

absl::Status Communicator::AllReduceSum(float* device_buffer, size_t count) {
  return impl_->comm->AllReduceSum(device_buffer, count);
}

void Communicator::Abort() {
  impl_->comm->Abort(absl::AbortedError(
      absl::StrCat("communicator ", impl_->name, " was aborted by Communicator::Abort()")));
}

namespace client_internal {
namespace {

const char* ModeName(CommInit mode) {
  switch (mode) {
    case CommInit::kInitRank:
      return "initrank";
    case CommInit::kScalable:
      return "scalable";
    case CommInit::kSplit:
      return "split";
  }
  return "?";
}

std::string CacheKey(const std::string& group_key, CommInit mode) {
  return absl::StrCat(ModeName(mode), "|", group_key);
}

// The ncclConfig_t fields asked for, as text: equal options, equal text.
std::string ConfigText(const CommOptions& o) {
  std::string out;
  auto add = [&out](const char* name, const auto& v) {
    if (v) absl::StrAppend(&out, name, "=", *v, " ");
  };
  add("cgaClusterSize", o.cga_cluster_size);
  add("minCTAs", o.min_ctas);
  add("maxCTAs", o.max_ctas);
  add("netName", o.net_name);
  add("splitShare", o.split_share);
  add("trafficClass", o.traffic_class);
  return out.empty() ? "NCCL's defaults" : out;
}

absl::Status Annotate(const absl::Status& s, absl::string_view what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

}  // namespace

void AbortCommunicator(Communicator& comm, const absl::Status& why) {
  comm.impl()->comm->Abort(why);
}
bool CommunicatorUsable(const Communicator& comm) { return !comm.aborted(); }

struct ClientImpl::CommRuntimes {
  const NcclRuntime* nccl = nullptr;
  const CudaRuntime* cuda = nullptr;
};

absl::StatusOr<ClientImpl::CommRuntimes> ClientImpl::LoadCommRuntimes(const CommOptions& options) {
  if (options.timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("CommOptions::timeout must not be negative");
  }
  absl::StatusOr<const NcclRuntime*> nccl = NcclRuntime::Load(options_.nccl_library);
  if (!nccl.ok()) return nccl.status();
  switch (options.mode) {
    case CommInit::kInitRank:
      break;
    case CommInit::kScalable:
      if (absl::Status s = (*nccl)->Require(NcclFeature::kScalableInit, "CommInit::kScalable");
          !s.ok())
        return s;
      break;
    case CommInit::kSplit:
      if (absl::Status s = (*nccl)->Require(NcclFeature::kSplit, "CommInit::kSplit"); !s.ok())
        return s;
      break;
  }
  // The fields asked for, before anything is announced or made.
  const std::string probe = "x";
  if (absl::StatusOr<NcclConfigC> c = BuildConfig(**nccl, options, &probe, &probe); !c.ok())
    return c.status();
  absl::StatusOr<const CudaRuntime*> cuda = CudaRuntime::Load(options_.cudart_library);
  if (!cuda.ok()) return cuda.status();
  return CommRuntimes{*nccl, *cuda};
}

absl::StatusOr<std::shared_ptr<Communicator>> ClientImpl::MakeCommunicator(
    const Group& group, const CommOptions& options) {
  if (absl::Status h = health(); !h.ok()) return h;
  if (group.ids.empty())
    return absl::InvalidArgumentError("the group has no NCCL ids; get it from Groups()");
  if (group.group_rank < 0 || group.group_rank >= static_cast<int64_t>(group.ranks.size()))
    return absl::InvalidArgumentError(
        absl::StrCat("this rank is not a member of group ", group.key));
  absl::StatusOr<CommRuntimes> rt = LoadCommRuntimes(options);
  if (!rt.ok()) return rt.status();
  const absl::Time deadline =
      absl::Now() + (options.timeout > absl::ZeroDuration() ? options.timeout : options_.timeout);
  if (options.mode == CommInit::kSplit) return SplitCommunicator(&group, options, *rt, deadline);

  const std::string key = CacheKey(group.key, options.mode);
  absl::StatusOr<CommRegistry<Communicator>::Lookup> lookup = comms_.Acquire(key, deadline);
  if (!lookup.ok()) return lookup.status();
  if (lookup->cached != nullptr) {
    if (lookup->cached->impl()->config != ConfigText(options)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the communicator of group ", group.key, " (", ModeName(options.mode), ") was made with ",
          lookup->cached->impl()->config, ", not ", ConfigText(options),
          "; Abort() it (and drop it) on every member before asking for another"));
    }
    return lookup->cached;
  }
  absl::StatusOr<std::shared_ptr<Communicator>> made =
      InitCommunicator(group, options, *rt, deadline, lookup->attempt);
  const absl::Status ended = comms_.Release(key, made.ok() ? *made : nullptr);
  if (!made.ok()) return made.status();
  if (!ended.ok()) return ended;
  return made;
}

absl::Status ClientImpl::AwaitComm(NcclComm& comm, absl::Time deadline) {
  InterruptWatch interrupted(options_.interrupter.get());
  return comm.WaitReady(deadline, [&]() -> absl::Status {
    if (absl::Status h = health(); !h.ok()) return h;
    if (interrupted.interrupted()) return absl::CancelledError("interrupted");
    return absl::OkStatus();
  });
}

absl::StatusOr<std::shared_ptr<Communicator>> ClientImpl::InitCommunicator(
    const Group& group, const CommOptions& options, const CommRuntimes& rt, absl::Time deadline,
    int64_t attempt) {
  const int size = static_cast<int>(group.ranks.size());
  const int rank = static_cast<int>(group.group_rank);
  const char* what = ModeName(options.mode);
  const std::string name = CommName(options_.job, group.key, group.dims, placement_.generation);
  const std::string context =
      absl::StrCat("cannot make the NCCL communicator of group ", group.key, " (", what, ", ", size,
                   size == 1 ? " member" : " members", ", commName ", name, ")");
  auto comm = std::make_unique<NcclComm>(rt.nccl, rt.cuda);
  if (absl::Status s = comm->Configure(options, name); !s.ok()) return Annotate(s, context);
  if (absl::Status s = rt.cuda->Check(
          rt.cuda->SetDevice(placement_.gpu_index % rt.cuda->device_count), "cudaSetDevice");
      !s.ok()) {
    return Annotate(s, context);
  }
  if (absl::Status s = comm->CreateStream(); !s.ok()) return Annotate(s, context);

  // This member is here: set before NCCL's init, so that a timeout can name who is not.
  auto key_of = [&](int64_t r) { return ArrivalKey(what, attempt, group.key, r); };
  if (absl::Status s = KeySet(key_of(placement_.rank), "1", deadline - absl::Now()); !s.ok())
    return Annotate(s, absl::StrCat(context, ": cannot announce this rank's arrival"));

  absl::Status started;
  if (options.mode == CommInit::kScalable) {
    std::vector<NcclUniqueIdC> ids(group.ids.size());
    for (size_t i = 0; i < ids.size(); ++i) std::memcpy(ids[i].internal, group.ids[i].data(), 128);
    started = comm->StartInitScalable(size, rank, std::move(ids));
  } else {
    NcclUniqueIdC id;
    std::memcpy(id.internal, group.ids[0].data(), sizeof id.internal);
    started = comm->StartInitRank(size, rank, id);
  }
  if (!started.ok()) return Annotate(started, context);
  absl::Status ready = AwaitComm(*comm, deadline);
  if (ready.code() == absl::StatusCode::kDeadlineExceeded) {
    const Missing missing =
        FindMissing(*this, group.ranks, key_of, std::min(options_.timeout, absl::Seconds(10)));
    return absl::DeadlineExceededError(
        absl::StrCat(context, " by its deadline: ", NeverArrived(missing, group.ranks.size()),
                     "; the half-made communicator was aborted"));
  }
  if (!ready.ok()) return Annotate(ready, context);

  auto impl = std::make_unique<Communicator::Impl>();
  impl->comm = std::move(comm);
  impl->group_key = group.key;
  impl->mode = options.mode;
  impl->name = name;
  impl->config = ConfigText(options);
  impl->size = size;
  impl->rank = rank;
  return std::make_shared<Communicator>(std::move(impl));
}

absl::StatusOr<std::shared_ptr<Communicator>> ClientImpl::SplitCommunicator(
    const Group* group, const CommOptions& options, const CommRuntimes& rt, absl::Time deadline) {
  std::optional<Group> world;
  {
    absl::MutexLock lock(&mu_);
    world = world_;
  }
  if (!world) {
    return absl::FailedPreconditionError(
        "CommInit::kSplit splits the world communicator, whose ids come with InitDeviceMesh "
        "(MeshIds::kFetch): call it first");
  }
  // Splits are collective in call order, and the world communicator is made once: one at a time.
  std::lock_guard<std::mutex> world_lock(world_mu_);
  if (world_comm_ == nullptr) {
    // With NCCL's scalable init where it has it; else one id, which its first member minted.
    CommOptions world_options;
    world_options.mode =
        rt.nccl->Has(NcclFeature::kScalableInit) ? CommInit::kScalable : CommInit::kInitRank;
    absl::StatusOr<std::shared_ptr<Communicator>> made =
        InitCommunicator(*world, world_options, rt, deadline, ++world_attempts_);
    if (!made.ok()) {
      return Annotate(made.status(), "CommInit::kSplit needs the world communicator first");
    }
    world_comm_ = *std::move(made);
    if (absl::Status s = comms_.Track(world_comm_); !s.ok()) return s;
  }
  if (world_comm_->aborted()) {
    return Annotate(world_comm_->status(),
                    "cannot split the world communicator; attach again for a new one");
  }

  // A member whose communicator lives takes part without a color: one split per call on every
  // rank, and never a second communicator for one group.
  std::shared_ptr<Communicator> cached;
  std::optional<std::string> held;  // the cache key this call makes the communicator for
  if (group != nullptr) {
    const std::string key = CacheKey(group->key, CommInit::kSplit);
    // Never waits: only a split, under world_mu_ like this one, makes a kSplit communicator.
    absl::StatusOr<CommRegistry<Communicator>::Lookup> lookup = comms_.Acquire(key, deadline);
    if (!lookup.ok()) return lookup.status();
    if (lookup->cached != nullptr) {
      if (lookup->cached->impl()->config != ConfigText(options)) {
        return absl::FailedPreconditionError(
            absl::StrCat("the communicator of group ", group->key, " (split) was made with ",
                         lookup->cached->impl()->config, ", not ", ConfigText(options),
                         "; Abort() it (and drop it) on every member before asking for another"));
      }
      cached = lookup->cached;
    } else {
      held = key;
    }
  }
  std::shared_ptr<Communicator> made;
  absl::Cleanup release = [&] {
    if (held) (void)comms_.Release(*held, made);
  };

  const int64_t split = ++world_splits_;
  const bool member = held.has_value();
  const std::string name =
      member ? CommName(options_.job, group->key, group->dims, placement_.generation) : "";
  const std::string context =
      member ? absl::StrCat("cannot split group ", group->key, " (", group->ranks.size(),
                            " members, commName ", name, ") from the world communicator")
             : absl::StrCat("cannot take part in split ", split, " of the world communicator");
  auto comm = std::make_unique<NcclComm>(rt.nccl, member ? rt.cuda : nullptr);
  if (absl::Status s = comm->Configure(options, name); !s.ok()) return Annotate(s, context);
  if (member) {
    if (absl::Status s = rt.cuda->Check(
            rt.cuda->SetDevice(placement_.gpu_index % rt.cuda->device_count), "cudaSetDevice");
        !s.ok()) {
      return Annotate(s, context);
    }
    if (absl::Status s = comm->CreateStream(); !s.ok()) return Annotate(s, context);
  }
  auto key_of = [&](int64_t r) { return ArrivalKey("split", split, world->key, r); };
  if (absl::Status s =
          KeySet(key_of(placement_.rank), member ? group->key : "nocolor", deadline - absl::Now());
      !s.ok()) {
    return Annotate(s, absl::StrCat(context, ": cannot announce this rank's arrival"));
  }
  // Colors: the group's index among its dim's groups (distinct within one split); keys: its rank
  // among the sorted members (c10d's numbering).
  NcclComm* parent = world_comm_->impl()->comm.get();
  if (absl::Status s = comm->StartSplit(
          parent, member ? static_cast<int>(group->group_index) : kNcclSplitNoColor,
          member ? static_cast<int>(group->group_rank) : 0);
      !s.ok()) {
    return Annotate(s, context);
  }
  absl::Status ready = AwaitComm(*comm, deadline);
  if (ready.code() == absl::StatusCode::kDeadlineExceeded) {
    const Missing missing =
        FindMissing(*this, world->ranks, key_of, std::min(options_.timeout, absl::Seconds(10)));
    return absl::DeadlineExceededError(
        absl::StrCat(context, " by its deadline (split ", split,
                     "): ", NeverArrived(missing, world->ranks.size()),
                     "; the world communicator was aborted with it (attach again)"));
  }
  if (!ready.ok()) return Annotate(ready, context);
  if (!member) return cached;  // null for a rank outside the groups

  // Ranks that split different groups at once would share a color: NCCL would merge them.
  absl::StatusOr<int> count = comm->Count();
  if (!count.ok()) return Annotate(count.status(), context);
  if (*count != static_cast<int>(group->ranks.size())) {
    comm->Abort(absl::FailedPreconditionError("wrong size"));
    return absl::FailedPreconditionError(absl::StrCat(
        context, ": the split made a communicator of ", *count, " ranks for a group of ",
        group->ranks.size(),
        ": the ranks of the job did not split the same groups at the same time (every rank "
        "must make the same kSplit calls in the same order)"));
  }
  auto impl = std::make_unique<Communicator::Impl>();
  impl->comm = std::move(comm);
  impl->group_key = group->key;
  impl->mode = CommInit::kSplit;
  impl->name = name;
  impl->config = ConfigText(options);
  impl->size = static_cast<int>(group->ranks.size());
  impl->rank = static_cast<int>(group->group_rank);
  made = std::make_shared<Communicator>(std::move(impl));
  std::move(release).Invoke();
  held.reset();
  if (made->aborted()) return made->status();  // the generation ended meanwhile
  return made;
}

absl::StatusOr<std::shared_ptr<Communicator>> ClientImpl::MakeCommunicator(
    const DeviceMesh& mesh, const MeshDim& dim, const CommOptions& options) {
  // A flattened name of the root is dim 0 of the flattened mesh.
  absl::StatusOr<std::pair<DeviceMesh, int>> where = mesh.ResolveDim(dim);
  if (!where.ok()) return where.status();
  absl::StatusOr<std::vector<Group>> groups = Groups(where->first);  // collective: every rank asks
  if (!groups.ok()) return groups.status();
  if (!groups->empty()) return MakeCommunicator((*groups)[where->second], options);
  if (options.mode != CommInit::kSplit) return std::shared_ptr<Communicator>();
  if (absl::Status s = SplitNoColor(options); !s.ok()) return s;
  return std::shared_ptr<Communicator>();
}

absl::Status ClientImpl::SplitNoColor(const CommOptions& options) {
  if (absl::Status h = health(); !h.ok()) return h;
  CommOptions split = options;
  split.mode = CommInit::kSplit;
  absl::StatusOr<CommRuntimes> rt = LoadCommRuntimes(split);
  if (!rt.ok()) return rt.status();
  const absl::Time deadline =
      absl::Now() + (split.timeout > absl::ZeroDuration() ? split.timeout : options_.timeout);
  return SplitCommunicator(nullptr, split, *rt, deadline).status();
}

}  // namespace client_internal
}  // namespace meshd
