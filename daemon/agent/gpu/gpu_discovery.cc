// GPU discovery: NVML through dlopen, and simulated GPUs (see gpu_discovery.h).
#include "daemon/agent/gpu/gpu_discovery.h"

#include <dlfcn.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace meshd::agent {
namespace {

// The slice of NVML's C API meshd uses, declared here because the CUDA toolkit ships no nvml.h
// (NVML comes with the driver). Layouts follow NVML's public header.
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
struct NvmlPciInfo {  // nvmlPciInfo_t (v3)
  char bus_id_legacy[16];
  unsigned int domain, bus, device, pci_device_id, pci_subsystem_id;
  char bus_id[32];
};
struct NvmlMemory {  // nvmlMemory_t
  unsigned long long total, free, used;
};
struct NvmlFabricInfo {  // nvmlGpuFabricInfo_t
  unsigned char cluster_uuid[16];
  nvmlReturn_t status;
  unsigned int clique_id;
  unsigned char state;
};
constexpr unsigned char kFabricStateCompleted = 3;

class Nvml final : public GpuDiscovery {
 public:
  explicit Nvml(std::string library) : library_(std::move(library)) {}
  ~Nvml() override {
    if (handle_ != nullptr) dlclose(handle_);
  }

  absl::StatusOr<std::vector<domain::Gpu>> Discover() override {
    if (handle_ == nullptr) {
      handle_ = dlopen(library_.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle_ == nullptr) {
        return absl::UnavailableError(absl::StrCat("cannot load NVML (", library_, "): ", dlerror(),
                                                   "; is the NVIDIA driver installed?"));
      }
    }
    auto sym = [this](const char* name) { return dlsym(handle_, name); };
    auto init = reinterpret_cast<nvmlReturn_t (*)()>(sym("nvmlInit_v2"));
    auto shutdown = reinterpret_cast<nvmlReturn_t (*)()>(sym("nvmlShutdown"));
    auto count = reinterpret_cast<nvmlReturn_t (*)(unsigned*)>(sym("nvmlDeviceGetCount_v2"));
    auto by_index = reinterpret_cast<nvmlReturn_t (*)(unsigned, nvmlDevice_t*)>(
        sym("nvmlDeviceGetHandleByIndex_v2"));
    auto uuid =
        reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned)>(sym("nvmlDeviceGetUUID"));
    auto name =
        reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned)>(sym("nvmlDeviceGetName"));
    auto pci = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, NvmlPciInfo*)>(
        sym("nvmlDeviceGetPciInfo_v3"));
    auto memory = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, NvmlMemory*)>(
        sym("nvmlDeviceGetMemoryInfo"));
    // Optional: only drivers with multi-node NVLink support have it.
    auto fabric = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, NvmlFabricInfo*)>(
        sym("nvmlDeviceGetGpuFabricInfo"));
    if (!init || !shutdown || !count || !by_index || !uuid || !name || !pci || !memory) {
      return absl::UnavailableError(absl::StrCat(library_, " lacks a required NVML function"));
    }
    if (nvmlReturn_t r = init(); r != kNvmlSuccess) {
      return absl::FailedPreconditionError(absl::StrCat("nvmlInit failed with NVML error ", r));
    }
    std::vector<domain::Gpu> gpus;
    unsigned n = 0;
    absl::Status status;
    if (count(&n) != kNvmlSuccess) status = absl::InternalError("nvmlDeviceGetCount failed");
    for (unsigned i = 0; status.ok() && i < n; ++i) {
      nvmlDevice_t dev = nullptr;
      char uuid_buf[96] = {}, name_buf[96] = {};
      NvmlPciInfo pci_info{};
      NvmlMemory mem{};
      if (by_index(i, &dev) != kNvmlSuccess ||
          uuid(dev, uuid_buf, sizeof uuid_buf) != kNvmlSuccess ||
          name(dev, name_buf, sizeof name_buf) != kNvmlSuccess ||
          pci(dev, &pci_info) != kNvmlSuccess || memory(dev, &mem) != kNvmlSuccess) {
        status = absl::InternalError(absl::StrCat("NVML could not describe GPU ", i));
        break;
      }
      domain::Gpu g{i, uuid_buf, pci_info.bus_id, name_buf, mem.total, "", false};
      NvmlFabricInfo f{};
      if (fabric && fabric(dev, &f) == kNvmlSuccess && f.state == kFabricStateCompleted &&
          f.status == kNvmlSuccess) {
        std::string cluster;
        for (unsigned char c : f.cluster_uuid)
          absl::StrAppend(&cluster, absl::Hex(c, absl::kZeroPad2));
        g.nvlink_clique = absl::StrCat(cluster, ".", f.clique_id);
      }
      gpus.push_back(std::move(g));
    }
    shutdown();
    if (!status.ok()) return status;
    if (gpus.empty()) return absl::NotFoundError("NVML reports no GPU on this host");
    return gpus;
  }

 private:
  const std::string library_;
  void* handle_ = nullptr;
};

class Simulated final : public GpuDiscovery {
 public:
  Simulated(int count, std::string node) : count_(count), node_(std::move(node)) {}
  absl::StatusOr<std::vector<domain::Gpu>> Discover() override {
    if (count_ < 1 || count_ > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("--simulate-gpus must be between 1 and 64, got ", count_));
    }
    std::vector<domain::Gpu> gpus;
    for (int i = 0; i < count_; ++i) {
      gpus.push_back(domain::Gpu{static_cast<uint32_t>(i), absl::StrCat("SIM-", node_, "-", i),
                                      "", "simulated GPU", 0, "", true});
    }
    return gpus;
  }

 private:
  const int count_;
  const std::string node_;
};

}  // namespace

std::unique_ptr<GpuDiscovery> NvmlDiscovery(std::string library) {
  return std::make_unique<Nvml>(std::move(library));
}

std::unique_ptr<GpuDiscovery> SimulatedDiscovery(int count, std::string node) {
  return std::make_unique<Simulated>(count, std::move(node));
}

}  // namespace meshd::agent
