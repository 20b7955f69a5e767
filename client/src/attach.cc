// meshd::Client::Attach (see <meshd/client.h>): the option defaults from the environment, the
// Attach call to the agent, and the ClientImpl it makes. Thread-safety: Attach may be called from
// any thread; it reads the environment.
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/src/client_impl.h"
#include "client/src/interrupter.h"

namespace meshd {
namespace {

using client_internal::ClientImpl;
using client_internal::FromGrpc;
using client_internal::InterruptibleCall;

// This process's name for its attaches (new after a fork: a child is another worker) and the
// next attach's place among them, for AttachRequest's client_instance and attach_sequence.
struct AttachOrigins {
  std::mutex mu;
  pid_t owner = 0;
  std::string instance;
  uint64_t sequence = 0;
};

// Made when the library is loaded, so that no thread can fork in the middle of making it (a
// function-local static's guard would stay held in the child). A fork while another thread is in
// NextAttachOrigin would leave the child's copy locked for good, its instance half written: the
// child (one thread) starts afresh, leaking the old.
AttachOrigins* const g_origins = [] {
  auto* origins = new AttachOrigins;
  pthread_atfork(nullptr, nullptr, [] { new (g_origins) AttachOrigins; });
  return origins;
}();

std::pair<std::string, uint64_t> NextAttachOrigin() {
  AttachOrigins& o = *g_origins;
  std::lock_guard<std::mutex> lock(o.mu);
  if (o.owner != getpid()) {
    o.owner = getpid();
    std::random_device random;  // the kernel's random source
    o.instance.clear();
    for (int i = 0; i < 4; ++i) absl::StrAppend(&o.instance, absl::Hex(random(), absl::kZeroPad8));
    o.sequence = 0;
  }
  return {o.instance, ++o.sequence};
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// A count from the environment: INVALID_ARGUMENT naming the option and the variable when it is
// unset, and the text when it is not a count.
absl::Status FromEnv(const char* var, absl::string_view what, absl::string_view option, int& out) {
  const std::string text = Env(var);
  if (text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no ", what, ": set ClientOptions::", option, " or ", var));
  }
  if (!absl::SimpleAtoi(text, &out) || out < 0) {
    out = -1;
    return absl::InvalidArgumentError(
        absl::StrCat(var, "='", text, "' is not a ", what, " (a number from 0)"));
  }
  return absl::OkStatus();
}

absl::Status ResolveDefaults(ClientOptions& o) {
  if (o.socket.empty()) o.socket = Env("MESHD_SOCKET");
  if (o.socket.empty()) o.socket = "/run/meshd/agent.sock";
  if (o.job.empty()) o.job = Env("MESHD_JOB");
  if (o.job.empty())
    return absl::InvalidArgumentError("no job: set ClientOptions::job or MESHD_JOB");
  if (o.local_rank < 0) {
    if (absl::Status s = FromEnv("LOCAL_RANK", "local rank", "local_rank", o.local_rank); !s.ok())
      return s;
  }
  if (o.local_world < 0) {
    if (absl::Status s = FromEnv("LOCAL_WORLD_SIZE", "local world size", "local_world",
                                 o.local_world);
        !s.ok())
      return s;
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
  if (!o.abort_communicators_on_generation_end) {
    const std::string abort = Env("MESHD_ABORT_COMMUNICATORS");
    if (abort.empty() || abort == "1" || abort == "true") {
      o.abort_communicators_on_generation_end = true;
    } else if (abort == "0" || abort == "false") {
      o.abort_communicators_on_generation_end = false;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("MESHD_ABORT_COMMUNICATORS='", abort,
                                                     "' must be 1/true (abort them) or 0/false"));
    }
  }
  if (o.timeout <= absl::ZeroDuration())
    return absl::InvalidArgumentError("timeout must be positive");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Attach(ClientOptions options) {
  if (absl::Status s = ResolveDefaults(options); !s.ok()) return s;
  struct stat st {};
  if (stat(options.socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return absl::UnavailableError(absl::StrCat("no meshd agent socket at ", options.socket,
                                               " (is meshd running? set MESHD_SOCKET)"));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);  // store values of up to 4 MiB plus their framing
  auto channel =
      grpc::CreateCustomChannel("unix:" + options.socket, grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Agent::NewStub(channel);
  v1::AttachRequest req;
  req.set_job(options.job);
  req.set_local_rank(static_cast<uint32_t>(options.local_rank));
  req.set_local_world(static_cast<uint32_t>(options.local_world));
  req.mutable_nodes()->set_min_nodes(static_cast<uint32_t>(options.min_nodes));
  req.mutable_nodes()->set_max_nodes(static_cast<uint32_t>(options.max_nodes));
  auto [instance, sequence] = NextAttachOrigin();
  req.set_client_instance(std::move(instance));
  req.set_attach_sequence(sequence);
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
