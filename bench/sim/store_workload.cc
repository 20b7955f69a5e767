// StoreWorkload (see store_workload.h).
#include "bench/sim/store_workload.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/sim/workload.h"
#include "common/layout/device_mesh.h"

namespace meshd::bench {
namespace {

uint32_t Rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

// torch's prefixes: the rendezvous store wrapped in PrefixStore("default_pg"), the world group's
// PrefixStore("0/"), a group's PrefixStore("<name>/"), its NCCL backend's PrefixStore("cuda/");
// PrefixStore::joinKey is prefix + "/" + key.
constexpr char kDefaultPg[] = "default_pg/";
constexpr char kWorldPrefix[] = "default_pg/0//";
constexpr char kBarrierPrefix[] = "store_based_barrier_key:";  // STORE_BASED_BARRIER_PREFIX + ":"
constexpr char kNcclKey[] = "cuda//0";  // the backend's prefix + ncclCommCounter_ of its 1st comm

}  // namespace

std::string Sha1Hex(absl::string_view data) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string m(data);
  const uint64_t bits = uint64_t{data.size()} * 8;
  m.push_back(static_cast<char>(0x80));
  while (m.size() % 64 != 56) m.push_back('\0');
  for (int i = 7; i >= 0; --i) m.push_back(static_cast<char>(bits >> (8 * i)));
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(m.data() + off + 4 * i);
      w[i] = uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = Rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d), k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d, k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d, k = 0xCA62C1D6;
      }
      const uint32_t t = Rotl(a, 5) + f + e + k + w[i];
      e = d, d = c, c = Rotl(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint32_t v : h) {
    for (int i = 28; i >= 0; i -= 4) out.push_back(kHex[(v >> i) & 0xf]);
  }
  return out;
}

std::string StoreWorkload::IdOf(uint32_t group) const {
  std::string id(128, '\0');
  uint64_t x = 0x6d65736864ULL ^ (uint64_t{group} * 0x9E3779B97F4A7C15ULL);
  for (size_t i = 0; i < id.size(); i += 8) {
    x += 0x9E3779B97F4A7C15ULL;  // splitmix64
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    std::memcpy(&id[i], &z, 8);
  }
  return id;
}

uint64_t StoreWorkload::FixedRankCalls() const {
  // Per rank: 3 calls per barrier (two adds, a wait), 1 per group's id (a set or a get).
  return uint64_t{world_size} * slots * ((barriers ? 3 : 0) + 1);
}

absl::StatusOr<StoreWorkload> BuildStoreWorkload(const StoreWorkloadOptions& o) {
  if (o.nodes < 1 || o.gpus_per_node < 1) {
    return absl::InvalidArgumentError("--nodes and --gpus-per-node must be at least 1");
  }
  const uint64_t world = uint64_t{o.nodes} * o.gpus_per_node;
  if (world > (1u << 24)) return absl::InvalidArgumentError("at most 16,777,216 ranks");
  StoreWorkload w;
  w.world_size = static_cast<uint32_t>(world);
  w.gpus_per_node = o.gpus_per_node;
  w.barriers = o.barriers;
  std::string shape = o.shape;
  if (shape.empty()) {
    shape = o.nodes % 8 == 0 ? absl::StrCat("pp=4,dp=-1,tp=", o.gpus_per_node)
            : o.nodes > 1    ? absl::StrCat("dp=-1,tp=", o.gpus_per_node)
                             : absl::StrCat("tp=", o.gpus_per_node);
  }
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> dims = ParseShape(shape, world);
  if (!dims.ok()) return dims.status();
  w.dims = *dims;
  for (const auto& [name, size] : w.dims) {
    // A dim of size 1 has one-rank groups whose names (the SHA-1 of their ranks) other dims'
    // one-rank groups share: torch would refuse the second one.
    if (size < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("--shape ", shape, ": dim ", name, " has size 1; give dims of 2 or more"));
    }
  }
  std::vector<int64_t> sizes;
  std::vector<std::string> names;
  for (const auto& [name, size] : w.dims) {
    names.push_back(name);
    sizes.push_back(size);
  }
  absl::StatusOr<layout::DeviceMesh> mesh =
      layout::DeviceMesh::Create(sizes, names, static_cast<int64_t>(world));
  if (!mesh.ok()) return mesh.status();
  w.description = mesh->ToString();
  const int ndim = mesh->ndim();
  w.slots = 1 + static_cast<uint32_t>(ndim);
  w.group_of.assign(uint64_t{w.slots} * world, 0);

  StoreGroup& world_group = w.groups.emplace_back();
  world_group.name = std::string(1, '0');  // (GCC 12's -Wrestrict misreads `= "0"` here)
  world_group.barrier_key = absl::StrCat(kDefaultPg, kBarrierPrefix, world_group.name);
  world_group.last_worker_key = absl::StrCat(world_group.barrier_key, ":last_worker");
  world_group.id_key = absl::StrCat(kWorldPrefix, kNcclKey);
  world_group.size = w.world_size;
  world_group.leader = 0;
  for (int d = 0; d < ndim; ++d) {
    const layout::GroupTable table = mesh->Groups(d);
    for (int64_t g = 0; g < table.num_groups(); ++g) {
      absl::Span<const int64_t> row = table.row(g);
      std::vector<int64_t> ranks(row.begin(), row.end());
      std::sort(ranks.begin(), ranks.end());  // new_group sorts them
      const uint32_t index = static_cast<uint32_t>(w.groups.size());
      StoreGroup& group = w.groups.emplace_back();
      group.name = Sha1Hex(absl::StrJoin(ranks, "_"));
      const std::string prefix = absl::StrCat(kWorldPrefix, group.name, "//");
      group.barrier_key = absl::StrCat(prefix, kBarrierPrefix, group.name);
      group.last_worker_key = absl::StrCat(group.barrier_key, ":last_worker");
      group.id_key = absl::StrCat(prefix, kNcclKey);
      group.size = static_cast<uint32_t>(ranks.size());
      group.leader = static_cast<uint32_t>(ranks.front());
      for (int64_t r : ranks) w.group_of[uint64_t(1 + d) * world + r] = index;
    }
  }
  return w;
}

}  // namespace meshd::bench
