// A fake NVML, built as a real shared library that the agent's discovery loads with the real
// dlopen. FAKE_NVML_GPUS (default 2) sets the GPU count, FAKE_NVML_FAIL_INIT=1 makes nvmlInit fail,
// and FAKE_NVML_FABRIC=1 reports every GPU in NVLink clique 7 of cluster 0x11...11.
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" {

struct nvmlDevice_st {
  unsigned index;
};
static nvmlDevice_st g_devices[64];

static int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

int nvmlInit_v2() { return EnvInt("FAKE_NVML_FAIL_INIT", 0) ? 9 : 0; }
int nvmlShutdown() { return 0; }
int nvmlDeviceGetCount_v2(unsigned* n) {
  *n = static_cast<unsigned>(EnvInt("FAKE_NVML_GPUS", 2));
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_st** dev) {
  if (i >= 64) return 2;
  g_devices[i].index = i;
  *dev = &g_devices[i];
  return 0;
}
int nvmlDeviceGetUUID(nvmlDevice_st* dev, char* buf, unsigned len) {
  std::snprintf(buf, len, "GPU-fake-%u", dev->index);
  return 0;
}
int nvmlDeviceGetName(nvmlDevice_st*, char* buf, unsigned len) {
  std::snprintf(buf, len, "Fake H200");
  return 0;
}
struct PciInfo {
  char bus_id_legacy[16];
  unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
  char bus_id[32];
};
int nvmlDeviceGetPciInfo_v3(nvmlDevice_st* dev, PciInfo* p) {
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->bus_id, sizeof p->bus_id, "00000000:%02X:00.0", 0x17 + dev->index);
  return 0;
}
struct Memory {
  unsigned long long total, free, used;
};
int nvmlDeviceGetMemoryInfo(nvmlDevice_st*, Memory* m) {
  m->total = 143771336704ull;
  m->free = m->total;
  m->used = 0;
  return 0;
}
struct FabricInfo {
  unsigned char cluster_uuid[16];
  int status;
  unsigned clique_id;
  unsigned char state;
};
int nvmlDeviceGetGpuFabricInfo(nvmlDevice_st*, FabricInfo* f) {
  if (!EnvInt("FAKE_NVML_FABRIC", 0)) return 3;  // NVML_ERROR_NOT_SUPPORTED
  std::memset(f->cluster_uuid, 0x11, sizeof f->cluster_uuid);
  f->status = 0;
  f->clique_id = 7;
  f->state = 3;
  return 0;
}

}  // extern "C"
