// mesh_worker: an example training worker on libmeshd_client. It attaches to a job, builds a mesh
// from flags, prints its coordinate and groups with their NCCL unique ids, and — where NCCL and a
// GPU exist — creates a communicator per group and checks one all-reduce per group (each rank
// contributes rank+1; the sum over the group's ranks is checked).
//   mesh_worker --socket PATH --job NAME --local-rank I --nnodes N --shape 2,2,2 --names pp,dp,tp
//               [--world W] [--flatten dp,tp]... [--comm-init initrank|scalable|split] [--json]
//               [--wait [--allreduce-until-end]] [--require-nccl]
//   mesh_worker --check-nccl     (only load NCCL and print its version: an image's build check)
// --world W: the job has W ranks and the mesh covers the first prod(shape) of them (a mesh smaller
// than the world: the other ranks take part in kSplit's splits without a color).
// With --wait it then blocks until its generation ends and prints how (JSON: {"ended": {...}}),
// with how many of its communicators the client aborted; --allreduce-until-end instead runs
// all-reduces on its first communicator until one fails (the generation's end aborts it: the
// answer must be ABORTED, not a hang).
// With --require-nccl (a training job on GPUs) a missing NCCL is an error before attaching, and
// communicators that cannot be built fail the worker instead of being skipped.
// local_world = prod(shape) / nnodes. Exit status: 0 ok, 1 a meshd or NCCL call failed, 2 bad
// flags.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "examples/nccl_check.h"
#include "meshd/client.h"
#include "nlohmann/json.hpp"

namespace {

std::string Hex(const meshd::NcclUniqueId& id) {
  std::string out;
  for (uint8_t b : id) absl::StrAppend(&out, absl::Hex(b, absl::kZeroPad2));
  return out;
}

bool g_json = false;

// cudaMalloc / cudaMemcpy / cudaFree through dlopen, as libmeshd_client loads CUDA (the example
// builds without CUDA headers).
struct Cuda {
  int (*malloc_)(void**, size_t) = nullptr;
  int (*memcpy_)(void*, const void*, size_t, int) = nullptr;  // 1: host to device, 2: back
  int (*free_)(void*) = nullptr;
  bool Load() {
    const char* env = std::getenv("MESHD_CUDART_LIBRARY");
    for (const char* lib : {env ? env : "", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11",
                            "libcudart.so"}) {
      void* h = *lib ? dlopen(lib, RTLD_NOW | RTLD_GLOBAL) : nullptr;
      if (h == nullptr) continue;
      malloc_ = reinterpret_cast<decltype(malloc_)>(dlsym(h, "cudaMalloc"));
      memcpy_ = reinterpret_cast<decltype(memcpy_)>(dlsym(h, "cudaMemcpy"));
      free_ = reinterpret_cast<decltype(free_)>(dlsym(h, "cudaFree"));
      return malloc_ && memcpy_ && free_;
    }
    return false;
  }
};

// One all-reduce of 1024 floats on `comm`: every rank gives (its job rank + 1), so each element
// must come back as the sum of (r + 1) over the group's ranks. Returns the first element.
absl::StatusOr<float> CheckAllReduce(const Cuda& cuda, meshd::Communicator& comm,
                                     const meshd::Group& g, int rank) {
  constexpr size_t kCount = 1024;
  float* buf = nullptr;
  if (cuda.malloc_(reinterpret_cast<void**>(&buf), kCount * sizeof(float)) != 0)
    return absl::InternalError("cudaMalloc failed");
  std::vector<float> host(kCount, static_cast<float>(rank + 1));
  absl::Status s;
  if (cuda.memcpy_(buf, host.data(), kCount * sizeof(float), 1) != 0) {
    s = absl::InternalError("cudaMemcpy to the device failed");
  } else {
    s = comm.AllReduceSum(buf, kCount);
    if (s.ok() && cuda.memcpy_(host.data(), buf, kCount * sizeof(float), 2) != 0)
      s = absl::InternalError("cudaMemcpy from the device failed");
  }
  cuda.free_(buf);
  if (!s.ok()) return s;
  float expected = 0;
  for (int64_t r : g.ranks) expected += static_cast<float>(r + 1);
  for (float v : host) {
    if (v != expected) {
      return absl::DataLossError(
          absl::StrCat("all-reduce of group ", g.key, " gave ", v, ", expected ", expected));
    }
  }
  return expected;
}

int Fail(const absl::Status& s, const std::string& what) {
  if (g_json) {  // scripts read one JSON object either way
    std::cout << nlohmann::ordered_json{{"error",
                                         {{"during", what},
                                          {"code", absl::StatusCodeToString(s.code())},
                                          {"message", std::string(s.message())}}}}
                     .dump()
              << std::endl;
  }
  std::cerr << "mesh_worker: " << what << ": " << absl::StatusCodeToString(s.code()) << ": "
            << s.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Before the other flags are parsed (--job and the others are not needed for it).
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) != "--check-nccl") continue;
    const std::string library = meshd_example::NcclLibrary("");
    absl::StatusOr<std::string> version = meshd_example::RequireNccl(library);
    if (!version.ok()) return Fail(version.status(), "nccl");
    std::cout << "NCCL " << *version << " from " << library << std::endl;
    return 0;
  }
  CLI::App app{"mesh_worker: an example worker on libmeshd_client"};
  meshd::ClientOptions o;
  std::string shape_flag, names_flag, comm_init = "initrank";
  std::vector<std::string> flatten;
  int nnodes = 1;
  int64_t world_flag = 0;
  bool json = false;
  bool wait = false;
  bool allreduce_until_end = false;
  bool require_nccl = false;
  app.add_option("--socket", o.socket, "The agent's socket (default: $MESHD_SOCKET)");
  app.add_option("--job", o.job, "Job name")->required();
  app.add_option("--local-rank", o.local_rank, "This worker's index on the host")->required();
  app.add_option("--nnodes", nnodes, "Nodes in the job")->capture_default_str();
  app.add_option("--shape", shape_flag, "Mesh shape, e.g. 2,2,2")->required();
  app.add_option("--names", names_flag, "Dim names, e.g. pp,dp,tp");
  app.add_option("--flatten", flatten, "Also fetch the flattened group of these dims, e.g. dp,tp");
  app.add_option("--comm-init", comm_init, "How to build communicators")
      ->check(CLI::IsMember({"initrank", "scalable", "split"}))
      ->capture_default_str();
  app.add_flag("--json", json, "Print one JSON object");
  app.add_option("--world", world_flag,
                 "Ranks in the job (default: the mesh's); the mesh covers the first prod(shape)");
  app.add_flag("--wait", wait, "Then wait for the generation to end and print how");
  app.add_flag("--allreduce-until-end", allreduce_until_end,
               "With --wait: all-reduce on the first communicator until one fails (the "
               "generation's end must abort it, not hang it)");
  bool check_nccl = false;  // handled before parsing (above); listed here for --help
  app.add_flag("--check-nccl", check_nccl, "Only load NCCL ($MESHD_NCCL_LIBRARY or libnccl.so.2), print its "
               "version and exit: 0 loaded, 1 not (the message says what is missing)");
  app.add_flag("--require-nccl", require_nccl,
               "Fail (exit 1) when NCCL cannot be loaded, before attaching, or communicators "
               "cannot be built, instead of skipping them");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  g_json = json;
  std::vector<int64_t> shape;
  int64_t world = 1;
  for (absl::string_view part : absl::StrSplit(shape_flag, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      std::cerr << "mesh_worker: --shape must be positive integers like 2,2,2\n";
      return 2;
    }
    shape.push_back(v);
    world *= v;
  }
  std::vector<std::string> names;
  if (!names_flag.empty()) names = absl::StrSplit(names_flag, ',');
  if (world_flag != 0) {
    if (world_flag < world) {
      std::cerr << "mesh_worker: --world " << world_flag << " is smaller than the mesh's " << world
                << " ranks\n";
      return 2;
    }
    world = world_flag;
  }
  if (nnodes < 1 || world % nnodes != 0) {
    std::cerr << "mesh_worker: --nnodes " << nnodes << " must divide the job's " << world
              << " ranks\n";
    return 2;
  }
  o.local_world = static_cast<int>(world / nnodes);
  o.min_nodes = o.max_nodes = nnodes;
  if (require_nccl) {
    absl::StatusOr<std::string> version = meshd_example::RequireNccl(
        meshd_example::NcclLibrary(o.nccl_library));
    if (!version.ok()) return Fail(version.status(), "nccl");
    std::cerr << "mesh_worker: NCCL " << *version << " from "
              << meshd_example::NcclLibrary(o.nccl_library) << "\n";
  }

  auto client = meshd::Client::Attach(o);
  if (!client.ok()) return Fail(client.status(), "attach");
  const meshd::Placement& p = (*client)->placement();
  auto mesh = (*client)->InitDeviceMesh(shape, names);
  if (!mesh.ok()) return Fail(mesh.status(), "init_device_mesh");
  auto groups = (*client)->Groups(*mesh);
  if (!groups.ok()) return Fail(groups.status(), "groups");
  std::vector<meshd::Group> all = *groups;
  // Each group with the mesh and dim it is reached through (every rank asks for every one).
  std::vector<std::pair<meshd::DeviceMesh, int>> sources;
  for (int d = 0; d < mesh->ndim(); ++d) sources.emplace_back(*mesh, d);
  for (const std::string& spec : flatten) {
    std::vector<std::string> dims = absl::StrSplit(spec, ',');
    auto sliced = mesh->Slice(dims);
    if (!sliced.ok()) return Fail(sliced.status(), "slice " + spec);
    auto flat = sliced->Flatten();
    if (!flat.ok()) return Fail(flat.status(), "flatten " + spec);
    auto flat_groups = (*client)->Groups(*flat);
    if (!flat_groups.ok()) return Fail(flat_groups.status(), "flattened group " + spec);
    sources.emplace_back(*flat, 0);
    if (flat_groups->empty()) continue;  // this rank is outside the mesh
    meshd::Group g = (*flat_groups)[0];
    g.dims = dims;
    all.push_back(g);
  }

  // Communicators and one all-reduce per group, where NCCL and a GPU exist. Every rank asks for
  // every (mesh, dim), members or not: kSplit's splits need every rank of the job.
  const meshd::CommInit mode = comm_init == "scalable" ? meshd::CommInit::kScalable
                               : comm_init == "split"  ? meshd::CommInit::kSplit
                                                       : meshd::CommInit::kInitRank;
  std::string comm_note;
  std::vector<std::shared_ptr<meshd::Communicator>> comms;
  std::vector<meshd::Group> comm_groups;
  for (const auto& [source, dim] : sources) {
    auto comm = (*client)->MakeCommunicator(source, dim, mode);
    if (!comm.ok()) {
      if (comm.status().code() == absl::StatusCode::kFailedPrecondition && !require_nccl) {
        comm_note = absl::StrCat("skipped: ", comm.status().message());
        comms.clear();
        break;
      }
      return Fail(comm.status(), absl::StrCat("communicator of ", source.ToString(), " dim ", dim));
    }
    comm_note = "ok";
    if (*comm == nullptr) continue;  // not in this mesh
    auto g = (*client)->GroupOf(source, dim);
    if (!g.ok()) return Fail(g.status(), "group");
    comms.push_back(*comm);
    comm_groups.push_back(*g);
  }
  nlohmann::ordered_json allreduce = nlohmann::ordered_json::array();
  if (!comms.empty()) {
    Cuda cuda;
    if (!cuda.Load()) {
      return Fail(absl::FailedPreconditionError("cannot load the CUDA runtime"), "all-reduce");
    }
    for (size_t i = 0; i < comms.size(); ++i) {
      absl::StatusOr<float> sum = CheckAllReduce(cuda, *comms[i], comm_groups[i], p.rank);
      if (!sum.ok()) return Fail(sum.status(), "all-reduce of group " + comm_groups[i].key);
      allreduce.push_back({{"group", comm_groups[i].key},
                           {"name", comms[i]->name()},
                           {"size", comms[i]->size()},
                           {"sum", *sum}});
    }
  }

  const auto coord = mesh->coordinate();
  if (json) {
    nlohmann::ordered_json out;
    out["rank"] = p.rank;
    out["world_size"] = p.world_size;
    out["generation"] = p.generation;
    out["coordinate"] = coord ? nlohmann::ordered_json(*coord) : nlohmann::ordered_json();
    out["gpu"] = {{"uuid", p.gpu_uuid}, {"simulated", p.gpu_simulated}};
    out["groups"] = nlohmann::ordered_json::array();
    for (const meshd::Group& g : all) {
      out["groups"].push_back({{"dims", g.dims},
                               {"ranks", g.ranks},
                               {"key", g.key},
                               {"id", Hex(g.ids[0])},
                               {"num_ids", g.ids.size()}});
    }
    out["communicators"] = comm_note;
    out["allreduce"] = allreduce;
    std::cout << out.dump() << std::endl;
  } else {
    // One line per rank: coordinate, then each group's members and the first bytes of its id.
    std::cout << "rank " << p.rank << "/" << p.world_size << "  coord ("
              << (coord ? absl::StrJoin(*coord, ",") : "-") << ")";
    for (const meshd::Group& g : all) {
      std::cout << "  " << absl::StrJoin(g.dims, "_") << " [" << absl::StrJoin(g.ranks, ",") << "] "
                << Hex(g.ids[0]).substr(0, 8)
                << (g.ids.size() > 1 ? absl::StrCat("+", g.ids.size() - 1) : "");
    }
    std::cout << "\n  " << mesh->ToString() << ", node " << p.node_rank << ", GPU " << p.gpu_uuid
              << (p.gpu_simulated ? " (simulated)" : "") << ", generation " << p.generation << "\n";
    std::cout << "  communicators: " << comm_note;
    if (!allreduce.empty()) std::cout << ", " << allreduce.size() << " all-reduces checked";
    std::cout << std::endl;  // flushed before --wait blocks
  }
  if (wait) {
    absl::Notification ended;
    absl::Status why;
    (*client)->OnGenerationEnd([&](const absl::Status& s) {
      why = s;
      ended.Notify();
    });
    // Collectives until the generation's end aborts the communicator (a peer gone would
    // otherwise hang this one for good).
    absl::Status looped;
    int loops = 0;
    if (allreduce_until_end && !comms.empty()) {
      Cuda cuda;
      cuda.Load();
      while (looped.ok()) {
        looped = CheckAllReduce(cuda, *comms[0], comm_groups[0], p.rank).status();
        ++loops;
      }
    }
    ended.WaitForNotificationWithTimeout(absl::Minutes(10));
    // Later calls report the end as well.
    const absl::Status later = (*client)->InitDeviceMesh(shape, names).status();
    int aborted = 0;
    for (const auto& c : comms) aborted += c->aborted() ? 1 : 0;
    if (json) {
      nlohmann::ordered_json out{{"code", absl::StatusCodeToString(why.code())},
                                 {"message", std::string(why.message())},
                                 {"later_call", absl::StatusCodeToString(later.code())},
                                 {"communicators", comms.size()},
                                 {"communicators_aborted", aborted}};
      if (allreduce_until_end) {
        out["allreduces_before_end"] = loops;
        out["allreduce_at_end"] = absl::StatusCodeToString(looped.code());
      }
      std::cout << nlohmann::ordered_json{{"ended", out}}.dump() << std::endl;
    } else {
      std::cout << "generation ended: " << why << "\n";
      if (!comms.empty())
        std::cout << "  communicators aborted: " << aborted << " of " << comms.size() << "\n";
      if (allreduce_until_end && !comms.empty())
        std::cout << "  all-reduce at the end: " << looped << " after " << loops << "\n";
    }
  }
  return 0;
}
