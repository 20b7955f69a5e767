// meshd::Communicator (see <meshd/client.h>) and ClientImpl::MakeCommunicator, which makes one
// from a group's NCCL ids (ncclCommInitRank, ncclCommInitRankScalable, or ncclCommSplit of a
// world communicator made once per client). NCCL and CUDA are loaded with dlopen when first
// needed. Thread-safety: see client_impl.h; the world communicator is made under world_mu_.
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "client/src/client_impl.h"
#include "client/src/nccl_runtime.h"

namespace meshd {

using client_internal::CudaRuntime;
using client_internal::NcclRuntime;
using client_internal::NcclUniqueIdC;

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

namespace client_internal {

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
  ncclComm_t comm = nullptr;
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

}  // namespace client_internal
}  // namespace meshd
