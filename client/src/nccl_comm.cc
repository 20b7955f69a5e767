// NcclComm (see nccl_comm.h): NCCL's non-blocking init, split and abort, polled with a deadline.
#include "client/src/nccl_comm.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshd::client_internal {
namespace {

// Between polls: from 50 us, doubling, to 10 ms (NCCL's own examples poll in a loop).
constexpr absl::Duration kFirstPoll = absl::Microseconds(50);
constexpr absl::Duration kMaxPoll = absl::Milliseconds(10);

void Backoff(absl::Duration* wait) {
  absl::SleepFor(*wait);
  *wait = std::min(*wait * 2, kMaxPoll);
}

absl::Status AbortedBy(const absl::Status& why) {
  if (why.code() == absl::StatusCode::kAborted) return why;
  return absl::AbortedError(absl::StrCat("the communicator was aborted: ", why.message()));
}

}  // namespace

std::string StableHash(absl::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return absl::StrCat(absl::Hex(h, absl::kZeroPad16));
}

std::string CommName(absl::string_view job, absl::string_view group_key,
                     const std::vector<std::string>& dims, uint64_t generation) {
  std::string joined = absl::StrJoin(dims, "_");
  const std::string tail = absl::StrCat("/g", generation);
  std::string name = absl::StrCat(job, "/", group_key, "/", joined, tail);
  if (name.size() <= kMaxCommName) return name;
  const std::string key = absl::StrCat("#", StableHash(group_key));
  name = absl::StrCat(job, "/", key, "/", joined, tail);
  if (name.size() <= kMaxCommName) return name;
  // The dims are cut to what is left (job <= 128, key 17, tail <= 22 bytes).
  const size_t fixed = job.size() + 1 + key.size() + 1 + tail.size();
  joined.resize(fixed < kMaxCommName ? kMaxCommName - fixed : 0);
  name = absl::StrCat(job, "/", key, "/", joined, tail);
  if (name.size() > kMaxCommName) name.resize(kMaxCommName);  // only for a job past its limit
  return name;
}

absl::StatusOr<NcclConfigC> BuildConfig(const NcclRuntime& nccl, const CommOptions& options,
                                        const std::string* net_name, const std::string* comm_name) {
  NcclConfigC c;
  if (!nccl.Has(NcclFeature::kNonBlockingInit)) {
    // No ncclConfig_t at all: only a plain ncclCommInitRank, so no field can be honoured.
    for (auto [set, feature] :
         {std::pair{options.cga_cluster_size.has_value(), NcclFeature::kCgaClusterSize},
          {options.min_ctas.has_value(), NcclFeature::kMinCtas},
          {options.max_ctas.has_value(), NcclFeature::kMaxCtas},
          {options.net_name.has_value(), NcclFeature::kNetName},
          {options.split_share.has_value(), NcclFeature::kSplitShare},
          {options.traffic_class.has_value(), NcclFeature::kTrafficClass}}) {
      if (set) return nccl.Require(feature, "CommOptions");
    }
    return c;
  }
  c.blocking = 0;
  struct IntField {
    const std::optional<int>& value;
    int* field;
    NcclFeature feature;
    const char* option;
  };
  for (const IntField& f :
       {IntField{options.cga_cluster_size, &c.cgaClusterSize, NcclFeature::kCgaClusterSize,
                 "CommOptions::cga_cluster_size"},
        IntField{options.min_ctas, &c.minCTAs, NcclFeature::kMinCtas, "CommOptions::min_ctas"},
        IntField{options.max_ctas, &c.maxCTAs, NcclFeature::kMaxCtas, "CommOptions::max_ctas"},
        IntField{options.traffic_class, &c.trafficClass, NcclFeature::kTrafficClass,
                 "CommOptions::traffic_class"}}) {
    if (!f.value) continue;
    if (absl::Status s = nccl.Require(f.feature, f.option); !s.ok()) return s;
    if (*f.value < 0) {
      return absl::InvalidArgumentError(absl::StrCat(f.option, " must be >= 0, not ", *f.value));
    }
    *f.field = *f.value;
  }
  if (options.min_ctas && options.max_ctas && *options.min_ctas > *options.max_ctas) {
    return absl::InvalidArgumentError(absl::StrCat("CommOptions::min_ctas (", *options.min_ctas,
                                                   ") is more than max_ctas (", *options.max_ctas,
                                                   ")"));
  }
  if (options.net_name) {
    if (absl::Status s = nccl.Require(NcclFeature::kNetName, "CommOptions::net_name"); !s.ok())
      return s;
    c.netName = net_name->c_str();
  }
  if (options.split_share) {
    if (absl::Status s = nccl.Require(NcclFeature::kSplitShare, "CommOptions::split_share");
        !s.ok())
      return s;
    c.splitShare = *options.split_share ? 1 : 0;
  }
  if (comm_name != nullptr && !comm_name->empty() && nccl.Has(NcclFeature::kCommName)) {
    c.commName = comm_name->c_str();
  }
  return c;
}

NcclComm::NcclComm(const NcclRuntime* nccl, const CudaRuntime* cuda) : nccl_(nccl), cuda_(cuda) {}

NcclComm::~NcclComm() {
  ncclComm_t comm = nullptr;
  bool abort = false;
  {
    absl::MutexLock lock(&mu_);
    if (!aborted_ && comm_ != nullptr) {
      comm = comm_;
      int async = kNcclSuccess;
      if (!ready_ || nccl_->CommGetAsyncError(comm_, &async) != kNcclSuccess ||
          async != kNcclSuccess) {
        abort = true;  // in error, or never made: a destroy could wait on peers that are gone
      }
      comm_ = nullptr;
    }
  }
  if (comm != nullptr) (abort ? nccl_->CommAbort : nccl_->CommDestroy)(comm);
  if (stream_ != nullptr && cuda_ != nullptr) cuda_->StreamDestroy(stream_);
}

absl::Status NcclComm::Configure(const CommOptions& options, const std::string& comm_name) {
  comm_name_ = comm_name;
  net_name_ = options.net_name.value_or("");
  absl::StatusOr<NcclConfigC> config = BuildConfig(*nccl_, options, &net_name_, &comm_name_);
  if (!config.ok()) return config.status();
  config_ = *config;
  configured_ = true;
  return absl::OkStatus();
}

absl::Status NcclComm::CreateStream() {
  if (cuda_ == nullptr || stream_ != nullptr) return absl::OkStatus();
  return cuda_->Check(cuda_->StreamCreate(&stream_), "cudaStreamCreate");
}

absl::Status NcclComm::StartInitRank(int nranks, int rank, const NcclUniqueIdC& id) {
  absl::MutexLock lock(&mu_);
  if (aborted_) return AbortedBy(why_);
  started_ = true;
  int r;
  const char* what;
  if (configured_ && nccl_->CommInitRankConfig != nullptr &&
      nccl_->Has(NcclFeature::kNonBlockingInit)) {
    what = "ncclCommInitRankConfig";
    r = nccl_->CommInitRankConfig(&comm_, nranks, id, rank, &config_);
  } else {
    what = "ncclCommInitRank";  // NCCL < 2.14: blocks here until every member arrived
    r = nccl_->CommInitRank(&comm_, nranks, id, rank);
  }
  if (r == kNcclSuccess || r == kNcclInProgress) return absl::OkStatus();
  return InitFailed(r, what);
}

absl::Status NcclComm::StartInitScalable(int nranks, int rank, std::vector<NcclUniqueIdC> ids) {
  if (absl::Status s = nccl_->Require(NcclFeature::kScalableInit, "CommInit::kScalable"); !s.ok())
    return s;
  absl::MutexLock lock(&mu_);
  if (aborted_) return AbortedBy(why_);
  started_ = true;
  const int r = nccl_->CommInitRankScalable(&comm_, nranks, rank, static_cast<int>(ids.size()),
                                            ids.data(), configured_ ? &config_ : nullptr);
  if (r == kNcclSuccess || r == kNcclInProgress) return absl::OkStatus();
  return InitFailed(r, "ncclCommInitRankScalable");
}

absl::Status NcclComm::InitFailed(int r, const char* what) {
  absl::Status s = nccl_->Check(r, what, comm_);
  ncclComm_t failed = comm_;
  comm_ = nullptr;
  aborted_ = true;
  why_ = s;
  if (failed != nullptr) nccl_->CommAbort(failed);
  return s;
}

absl::Status NcclComm::StartSplit(NcclComm* parent, int color, int key) {
  if (absl::Status s = nccl_->Require(NcclFeature::kSplit, "CommInit::kSplit"); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (aborted_) return AbortedBy(why_);
  absl::MutexLock parent_lock(&parent->mu_);
  if (parent->aborted_ || parent->comm_ == nullptr) {
    return absl::AbortedError(
        absl::StrCat("cannot split the world communicator: ",
                     parent->aborted_ ? parent->why_.message() : "it was never made"));
  }
  started_ = true;
  split_parent_ = parent;
  comm_ = nullptr;
  // NCCL hands the child out (writes comm_) from its own thread once the split is complete;
  // until then comm_ is read only by WaitReady, after NCCL said the split is done.
  const int r =
      nccl_->CommSplit(parent->comm_, color, key, &comm_, configured_ ? &config_ : nullptr);
  if (r == kNcclSuccess || r == kNcclInProgress) return absl::OkStatus();
  split_parent_ = nullptr;
  absl::Status s = nccl_->Check(r, "ncclCommSplit", parent->comm_);
  aborted_ = true;
  why_ = s;
  return s;
}

absl::Status NcclComm::WaitReady(absl::Time deadline, const StopCheck& stop) {
  absl::Duration wait = kFirstPoll;
  absl::Status failure;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (aborted_ && split_parent_ == nullptr) return AbortedBy(why_);
      if (!started_) return absl::FailedPreconditionError("the communicator's init never started");
      if (ready_) return absl::OkStatus();
      if (aborted_) {
        failure = AbortedBy(why_);  // an Abort() during a split: stop it through the parent
        break;
      }
      // A split is done when its parent is (NCCL marks the parent in progress meanwhile).
      NcclComm* parent = split_parent_;
      int async = kNcclInProgress;
      int r;
      if (parent != nullptr) {
        absl::MutexLock parent_lock(&parent->mu_);
        r = parent->aborted_ ? kNcclSuccess : nccl_->CommGetAsyncError(parent->comm_, &async);
        if (parent->aborted_) {
          failure = AbortedBy(parent->why_);
          async = -1;
        }
      } else if (comm_ == nullptr) {
        r = kNcclSuccess;
        async = kNcclSuccess;  // a blocking init that already returned
      } else {
        r = nccl_->CommGetAsyncError(comm_, &async);
      }
      if (r != kNcclSuccess) {
        failure = nccl_->Check(r, "ncclCommGetAsyncError", parent ? nullptr : comm_);
      } else if (async == kNcclSuccess) {
        if (parent != nullptr) {
          comm_ = __atomic_load_n(&comm_, __ATOMIC_ACQUIRE);
          split_parent_ = nullptr;
        }
        ready_ = true;
        return absl::OkStatus();
      } else if (async != kNcclInProgress && failure.ok()) {
        failure = nccl_->Check(async, parent ? "ncclCommSplit" : "NCCL's communicator init",
                               parent ? nullptr : comm_);
      }
    }
    if (failure.ok() && stop) failure = stop();
    if (failure.ok() && absl::Now() >= deadline) {
      failure = absl::DeadlineExceededError("NCCL's init did not finish by its deadline");
    }
    if (!failure.ok()) break;
    Backoff(&wait);
  }
  // Stop the half-made communicator. A split can only be stopped through its parent; its child,
  // if NCCL made one meanwhile, is aborted too.
  NcclComm* parent = nullptr;
  {
    absl::MutexLock lock(&mu_);
    parent = split_parent_;
  }
  if (parent == nullptr) {
    Abort(failure);
    return failure;
  }
  // ncclCommAbort of the parent joins NCCL's split job: after it, the child handle (if NCCL made
  // one) is written and nothing else will write it.
  parent->Abort(failure);
  ncclComm_t child = nullptr;
  {
    absl::MutexLock lock(&mu_);
    child = __atomic_load_n(&comm_, __ATOMIC_ACQUIRE);
    comm_ = nullptr;
    split_parent_ = nullptr;
    if (!aborted_) {
      aborted_ = true;
      why_ = failure;
    }
  }
  if (child != nullptr) nccl_->CommAbort(child);
  return failure;
}

void NcclComm::Abort(const absl::Status& why) {
  ncclComm_t comm = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (aborted_) return;
    aborted_ = true;
    why_ = why.ok() ? absl::AbortedError("aborted") : why;
    // A split in flight: NCCL may still write the child's handle; WaitReady, which stops it
    // through the parent, releases the child.
    if (split_parent_ == nullptr) {
      comm = comm_;
      comm_ = nullptr;
    }
  }
  // Outside mu_ (status() stays answerable meanwhile); nobody else can reach the handle now.
  if (comm != nullptr) nccl_->CommAbort(comm);
}

absl::Status NcclComm::status() const {
  absl::MutexLock lock(&mu_);
  if (aborted_) return AbortedBy(why_);
  if (comm_ == nullptr || !ready_) return absl::OkStatus();
  int async = kNcclSuccess;
  const int r = nccl_->CommGetAsyncError(comm_, &async);
  if (r != kNcclSuccess) return nccl_->Check(r, "ncclCommGetAsyncError", comm_);
  if (async != kNcclSuccess && async != kNcclInProgress)
    return nccl_->Check(async, "the communicator", comm_);
  return absl::OkStatus();
}

bool NcclComm::aborted() const {
  absl::MutexLock lock(&mu_);
  return aborted_;
}

ncclComm_t NcclComm::handle() const {
  absl::MutexLock lock(&mu_);
  return aborted_ || !ready_ ? nullptr : comm_;
}

absl::StatusOr<int> NcclComm::Count() const {
  absl::MutexLock lock(&mu_);
  if (aborted_) return AbortedBy(why_);
  if (comm_ == nullptr) return absl::FailedPreconditionError("no communicator");
  int n = 0;
  if (absl::Status s = nccl_->Check(nccl_->CommCount(comm_, &n), "ncclCommCount", comm_); !s.ok())
    return s;
  return n;
}

absl::Status NcclComm::AllReduceSum(float* device_buffer, size_t count) {
  if (cuda_ == nullptr || stream_ == nullptr)
    return absl::FailedPreconditionError("the communicator has no CUDA stream");
  absl::Duration wait = kFirstPoll;
  {
    absl::MutexLock lock(&mu_);
    if (aborted_) return AbortedBy(why_);
    if (comm_ == nullptr || !ready_) return absl::FailedPreconditionError("no communicator");
    const int r = nccl_->AllReduce(device_buffer, device_buffer, count, /*ncclFloat32=*/7,
                                   /*ncclSum=*/0, comm_, stream_);
    if (r != kNcclSuccess && r != kNcclInProgress) return nccl_->Check(r, "ncclAllReduce", comm_);
  }
  // A non-blocking communicator may still be queueing it (ncclInProgress, e.g. while it connects
  // to its peers), then the stream runs it: poll both, so that an Abort() ends the wait.
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (aborted_) return AbortedBy(why_);
      int async = kNcclSuccess;
      const int r = nccl_->CommGetAsyncError(comm_, &async);
      if (r != kNcclSuccess) return nccl_->Check(r, "ncclCommGetAsyncError", comm_);
      if (async != kNcclSuccess && async != kNcclInProgress)
        return nccl_->Check(async, "ncclAllReduce", comm_);
      if (async == kNcclSuccess) {
        const int q = cuda_->StreamQuery(stream_);
        if (q == 0) return absl::OkStatus();
        if (q != kCudaErrorNotReady) return cuda_->Check(q, "cudaStreamQuery");
      }
    }
    Backoff(&wait);
  }
}

}  // namespace meshd::client_internal
