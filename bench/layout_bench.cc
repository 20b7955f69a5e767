// Mesh-maths benchmarks on a 131,072-rank 5-D mesh (pp=16, dp=32, cp=4, ep=8, tp=8).
// Targets (issue 2): one rank's coordinate + its group along every dim under 2 us; the full group
// enumeration of every dim under 100 ms.
//   build/bin/layout_bench                      # all
//   build/bin/layout_bench --benchmark_filter=OneRank
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/layout/device_mesh.h"
#include "common/layout/mesh_ops.h"

namespace {

using meshd::layout::DeviceMesh;

constexpr int64_t kWorld = 131072;

const DeviceMesh& Mesh5d() {
  static const DeviceMesh* mesh = new DeviceMesh(*DeviceMesh::Create(
      {16, 32, 4, 8, 8}, std::vector<std::string>{"pp", "dp", "cp", "ep", "tp"}, kWorld));
  return *mesh;
}

// One rank: its coordinate and its group (members + local rank) along each of the 5 dims.
void BM_OneRank_CoordinateAndGroups(benchmark::State& state) {
  const DeviceMesh& mesh = Mesh5d();
  int64_t rank = 0;
  int64_t members = 0;
  for (auto _ : state) {
    auto coord = mesh.coordinate(rank);
    benchmark::DoNotOptimize(coord);
    for (int d = 0; d < mesh.ndim(); ++d) {
      auto g = mesh.GroupOf(rank, d);
      members += static_cast<int64_t>(g->ranks.size());
      benchmark::DoNotOptimize(g);
    }
    rank = (rank + 7919) % kWorld;  // a different rank each time
  }
  state.counters["group_members_per_rank"] =
      benchmark::Counter(static_cast<double>(members) / state.iterations());
}
BENCHMARK(BM_OneRank_CoordinateAndGroups);

// Same, over a mesh with an explicit (reversed) rank table: the position lookup is a hash probe.
void BM_OneRank_CoordinateAndGroups_ExplicitRankMap(benchmark::State& state) {
  static const DeviceMesh* mesh = [] {
    meshd::layout::RankTensor table{{16, 32, 4, 8, 8}, std::vector<int64_t>(kWorld)};
    for (int64_t i = 0; i < kWorld; ++i) table.values[i] = kWorld - 1 - i;
    return new DeviceMesh(*DeviceMesh::FromRankTable(
        table, std::vector<std::string>{"pp", "dp", "cp", "ep", "tp"}, kWorld));
  }();
  int64_t rank = 0;
  for (auto _ : state) {
    auto coord = mesh->coordinate(rank);
    benchmark::DoNotOptimize(coord);
    for (int d = 0; d < mesh->ndim(); ++d) benchmark::DoNotOptimize(mesh->GroupOf(rank, d));
    rank = (rank + 7919) % kWorld;
  }
}
BENCHMARK(BM_OneRank_CoordinateAndGroups_ExplicitRankMap);

// Every group of every dim of the mesh (what the coordinator and meshctl enumerate).
void BM_AllGroups_EveryDim(benchmark::State& state) {
  const DeviceMesh& mesh = Mesh5d();
  for (auto _ : state) {
    for (int d = 0; d < mesh.ndim(); ++d) {
      auto table = mesh.Groups(d);
      benchmark::DoNotOptimize(table.ranks.data());
    }
  }
  state.SetItemsProcessed(state.iterations() * kWorld * Mesh5d().ndim());
}
BENCHMARK(BM_AllGroups_EveryDim)->Unit(benchmark::kMillisecond);

// Building a root mesh and deriving the meshes a 5-D trainer typically asks for.
void BM_CreateSliceFlatten(benchmark::State& state) {
  for (auto _ : state) {
    auto mesh = DeviceMesh::Create({16, 32, 4, 8, 8},
                                   std::vector<std::string>{"pp", "dp", "cp", "ep", "tp"}, kWorld);
    auto dp_cp = meshd::layout::Slice(*mesh, {"dp", "cp"});
    auto flat = meshd::layout::Flatten(*dp_cp);
    benchmark::DoNotOptimize(flat);
  }
}
BENCHMARK(BM_CreateSliceFlatten);

}  // namespace

BENCHMARK_MAIN();
