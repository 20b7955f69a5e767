// meshctl — the operator's command line: `status`, `nodes`, `jobs`, `job NAME` against a
// coordinator (or `status` and `leave` against an agent's socket with --agent); the operators'
// verbs `node cordon|uncordon|drain|forget NAME` and `job end NAME`; and `plan`, the mesh maths
// with no cluster.
//
// Exit status: 0 success; 1 a plan step failed (the output says which and why); 2 bad usage or
// input that could not be read (message on stderr).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "daemon/ctl/cluster_commands.h"
#include "daemon/main/build_info.h"
#include "daemon/ctl/plan_render.h"
#include "daemon/ctl/plan_script.h"
#include "daemon/security/tls_credentials.h"

namespace {

constexpr int kStepFailed = 1;
constexpr int kUsage = 2;

struct PlanFlags {
  int64_t world = 0;
  std::string script;
  std::string shape;
  std::string mesh;
  std::string names;
  std::string ranks;
  int64_t gpus_per_node = 0;
  bool json = false;
};

bool ParseIntList(const std::string& text, std::vector<int64_t>& out) {
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) return false;
    out.push_back(v);
  }
  return !out.empty();
}

// The largest world `meshctl plan` renders (8x the largest tested cluster, 131,072 ranks): every
// group table is materialized, so a larger one is refused before anything is allocated.
constexpr int64_t kMaxPlanWorld = int64_t{1} << 20;

int Fail(const std::string& message) {
  std::cerr << "meshctl: " << message << "\n";
  return kUsage;
}

int RunPlanCommand(const PlanFlags& f) {
  using meshd::ctl::StepOutcome;
  nlohmann::json steps;
  int64_t world = f.world;
  if (!f.script.empty() + !f.shape.empty() + !f.mesh.empty() > 1) {
    return Fail("give one of --script, --shape and --mesh");
  }
  if (!f.names.empty() && f.shape.empty() && f.mesh.empty()) {
    return Fail("--names goes with --shape or --mesh");
  }
  std::vector<std::string> names;
  if (!f.names.empty()) names = absl::StrSplit(f.names, ',');
  if (!f.script.empty()) {
    std::string text;
    // Read at most one byte past the limit: a larger script is refused, never read whole.
    auto read = [&text](std::istream& in) {
      text.resize(meshd::ctl::kMaxScriptBytes + 1);
      in.read(text.data(), static_cast<std::streamsize>(text.size()));
      text.resize(static_cast<size_t>(in.gcount()));
    };
    if (f.script == "-") {
      read(std::cin);
    } else {
      std::ifstream in(f.script, std::ios::binary);
      if (!in) return Fail("cannot read script '" + f.script + "'");
      read(in);
    }
    absl::StatusOr<nlohmann::json> parsed = meshd::ctl::ParsePlanScript(text);
    if (!parsed.ok()) return Fail(std::string(parsed.status().message()));
    steps = *std::move(parsed);
    if (world == 0) return Fail("--world N is required with --script");
  } else if (!f.shape.empty()) {
    std::vector<int64_t> shape;
    if (!ParseIntList(f.shape, shape))
      return Fail("--shape must be a comma-separated list of integers, e.g. 2,4,8");
    steps = nlohmann::json::array({meshd::ctl::InitStep(shape, names)});
    if (world == 0) {
      world = 1;
      for (int64_t s : shape) {
        // Checked before multiplying: a product past the limit is refused, never overflowed.
        if (std::max<int64_t>(s, 1) > kMaxPlanWorld / world) {
          return Fail(absl::StrCat("--shape ", f.shape, " makes more than ", kMaxPlanWorld,
                                   " ranks, the most meshctl plan renders"));
        }
        world *= std::max<int64_t>(s, 1);
      }
    }
  } else if (!f.mesh.empty()) {
    // PyTorch's DeviceMesh(mesh=[[0,2],[1,3]]): the table is checked here only as far as the
    // default world needs (its largest rank); the step says what else is wrong with it.
    // Parsed as a one-step script, within the script's limits.
    absl::StatusOr<nlohmann::json> wrapped =
        meshd::ctl::ParsePlanScript(absl::StrCat("[", f.mesh, "]"));
    if (!wrapped.ok() || wrapped->size() != 1 || !(*wrapped)[0].is_array()) {
      return Fail("--mesh must be a nested JSON list of ranks, e.g. '[[0,2],[1,3]]'");
    }
    const nlohmann::json& table = (*wrapped)[0];
    absl::StatusOr<meshd::layout::RankTensor> ranks =
        meshd::ctl::ParseRankTable(table, kMaxPlanWorld);
    if (!ranks.ok()) return Fail(absl::StrCat("--mesh: ", ranks.status().message()));
    steps = nlohmann::json::array({meshd::ctl::TableStep(table, names)});
    if (world == 0) {
      int64_t top = 0;
      for (int64_t r : ranks->values) top = std::max(top, r);
      if (top >= kMaxPlanWorld) {
        return Fail(absl::StrCat("--mesh holds rank ", top, ", past the ", kMaxPlanWorld,
                                 " ranks meshctl plan renders"));
      }
      world = top + 1;
    }
  } else {
    return Fail(
        "give a script (--script FILE, '-' for stdin), a mesh shape (--shape 2,4,8 --names "
        "pp,dp,tp) or a rank table (--mesh '[[0,2],[1,3]]' --names a,b)");
  }
  if (world < 1) return Fail("--world must be at least 1");
  if (world > kMaxPlanWorld) {
    return Fail(absl::StrCat("--world ", world, " is more than ", kMaxPlanWorld,
                             " ranks, the most meshctl plan renders"));
  }

  meshd::ctl::RenderOptions options;
  options.world_size = world;
  if (!f.ranks.empty()) {
    if (!ParseIntList(f.ranks, options.ranks))
      return Fail("--ranks must be a comma-separated list of ranks");
    for (int64_t r : options.ranks) {
      if (r < 0 || r >= world)
        return Fail("--ranks: rank " + std::to_string(r) + " is outside the world");
    }
  }
  if (f.gpus_per_node != 0) {
    if (f.gpus_per_node < 1) return Fail("--gpus-per-node must be at least 1");
    options.gpus_per_node = f.gpus_per_node;
  }

  const std::vector<StepOutcome> outcomes = meshd::ctl::RunPlan(steps, world);
  const bool failed = !outcomes.empty() && !outcomes.back().mesh.ok();
  if (f.json) {
    absl::StatusOr<nlohmann::ordered_json> out = meshd::ctl::PlanToJson(outcomes, options);
    if (!out.ok()) return Fail(std::string(out.status().message()));
    std::cout << out->dump() << "\n";
  } else {
    std::cout << meshd::ctl::PlanToText(outcomes, options);
  }
  return failed ? kStepFailed : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"meshctl: inspect meshd clusters and plan device meshes"};
  app.require_subcommand(1);
  app.set_version_flag("--version", meshd::VersionLine("meshctl"));
  app.fallthrough();  // global flags may follow the subcommand: meshctl jobs --json

  std::string coordinator = "127.0.0.1:7070";
  std::string agent_socket;
  std::string timeout = "10s";
  bool json = false;
  CLI::Option* coordinator_flag =
      app.add_option("--coordinator", coordinator, "Coordinator to ask (HOST:PORT)")
          ->envname("MESHD_COORDINATOR")
          ->capture_default_str();
  app.add_option("--agent", agent_socket,
                 "Ask the node agent on this unix socket instead (`status`, `leave`). Without it, "
                 "`meshctl status` asks the agent at $MESHD_SOCKET when that is set and "
                 "--coordinator is not");
  app.add_option("--timeout", timeout, "Deadline of each call, e.g. 5s")->capture_default_str();
  meshd::security::TlsFiles tls;
  app.add_option("--tls-cert", tls.cert,
                 "PEM certificate to present to a TLS coordinator (an operator's; with "
                 "--tls-key and --tls-ca)")
      ->envname("MESHD_TLS_CERT");
  app.add_option("--tls-key", tls.key, "PEM private key of --tls-cert")->envname("MESHD_TLS_KEY");
  app.add_option("--tls-ca", tls.ca, "PEM CA bundle the coordinator's certificate must chain to")
      ->envname("MESHD_TLS_CA");
  app.add_flag("--json", json, "Print JSON for scripts instead of tables");

  std::string job_name;
  CLI::App* status =
      app.add_subcommand("status", "The coordinator's (or with --agent, the agent's) state");
  CLI::App* nodes = app.add_subcommand("nodes", "Registered nodes, their GPUs and liveness");
  CLI::App* jobs = app.add_subcommand("jobs", "Jobs, their phase and generation");
  CLI::App* job = app.add_subcommand(
      "job", "One job: generation, members and ranks, who is missing (meshctl job NAME)");
  job->add_option("name", job_name, "Job name");

  // Operators' verbs (meshd.v1.Admin): an operator's certificate with TLS, this host without.
  std::string target_name, reason;
  std::vector<std::pair<std::string, CLI::App*>> verbs;
  CLI::App* node =
      app.add_subcommand("node", "Operators' verbs on a node: cordon, uncordon, drain, forget");
  node->require_subcommand(1);
  for (const auto& [verb, help] : std::vector<std::pair<std::string, std::string>>{
           {"cordon", "The node joins no new rounds; its running jobs carry on"},
           {"uncordon", "The node joins rounds again"},
           {"drain", "Cordon the node and end the generations of its jobs (elastic jobs re-form "
                     "without it)"},
           {"forget", "Remove a dead node's record"}}) {
    CLI::App* c = node->add_subcommand(verb, help);
    c->add_option("name", target_name, "Node name")->required();
    if (verb == "cordon" || verb == "drain") {
      c->add_option("--reason", reason, "Why (shown in meshctl nodes and told to workers)");
    }
    verbs.emplace_back(verb, c);
  }
  CLI::App* end = job->add_subcommand(
      "end", "End the job's running generation: every worker is told, with --reason");
  end->add_option("name", target_name, "Job name")->required();
  end->add_option("--reason", reason, "Why (told to every worker)");
  verbs.emplace_back("end", end);

  // On this host's agent (its socket), not the coordinator: no operator's certificate needed.
  std::string leave_reason;
  CLI::App* leave = app.add_subcommand(
      "leave",
      "This host's node leaves the cluster before its agent stops (the DaemonSet's preStop "
      "hook): its jobs end their generations (elastic ones re-form without it), its workers are "
      "told. Asks the agent at --agent or $MESHD_SOCKET; the agent's own user or root only");
  leave->add_option("--reason", leave_reason, "Why (logged by the coordinator)");

  PlanFlags plan;
  CLI::App* cmd = app.add_subcommand(
      "plan",
      "Do the DeviceMesh maths with no cluster: groups, coordinates and per-rank views of a mesh, "
      "exactly as PyTorch's DeviceMesh computes them.\n"
      "  meshctl plan --world 64 --shape 2,4,8 --names pp,dp,tp --gpus-per-node 8\n"
      "  meshctl plan --world 8 --mesh '[[4,6],[5,7]]' --names dp,tp\n"
      "  meshctl plan --world 8 --script steps.json --json");
  cmd->add_option("--world", plan.world,
                  "World size: ranks 0..N-1 (default with --shape: the product of the shape)");
  cmd->add_option("--script", plan.script,
                  "JSON array of steps (init_device_mesh, device_mesh, from_group, slice, flatten, "
                  "unflatten, concatenate); '-' reads stdin");
  cmd->add_option("--shape", plan.shape, "Shorthand for one init_device_mesh step, e.g. 2,4,8");
  cmd->add_option("--mesh", plan.mesh,
                  "Shorthand for one device_mesh step: a rank table in any order, over any subset "
                  "of the world, e.g. '[[0,2],[1,3]]' (PyTorch's DeviceMesh(mesh=...)); --world "
                  "defaults to its largest rank + 1");
  cmd->add_option("--names", plan.names, "Dim names for --shape or --mesh, e.g. pp,dp,tp");
  cmd->add_option(
      "--gpus-per-node", plan.gpus_per_node,
      "GPUs per host: report which dims' groups stay inside a host and which cross hosts");
  cmd->add_option("--ranks", plan.ranks,
                  "Only report coordinates/local ranks/views of these ranks (comma-separated)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kUsage;
  }
  plan.json = json;
  if (cmd->parsed()) return RunPlanCommand(plan);

  // The agent's socket from the variable meshd agent and the clients read (the old name still
  // works, with a line saying so), for `status` when no coordinator was named.
  if (agent_socket.empty() &&
      (leave->parsed() || (status->parsed() && coordinator_flag->count() == 0 &&
                           std::getenv("MESHD_COORDINATOR") == nullptr))) {
    if (const char* s = std::getenv("MESHD_SOCKET"); s != nullptr && *s != '\0') {
      agent_socket = s;
    } else if (const char* old = std::getenv("MESHD_AGENT_SOCKET");
               old != nullptr && *old != '\0') {
      std::cerr << "meshctl: MESHD_AGENT_SOCKET is deprecated; set MESHD_SOCKET (the variable meshd "
                   "agent and the clients read)\n";
      agent_socket = old;
    }
  }
  meshd::ctl::ClusterTarget target;
  target.agent = !agent_socket.empty();
  target.address = target.agent ? (absl::StartsWith(agent_socket, "unix:") ? agent_socket
                                                                           : "unix:" + agent_socket)
                                : coordinator;
  if (!absl::ParseDuration(timeout, &target.timeout) || target.timeout <= absl::ZeroDuration()) {
    return Fail("--timeout must be a positive duration like 5s");
  }
  if (!target.agent && tls.enabled()) {
    auto credentials = meshd::security::MutualTlsChannelCredentials(tls);
    if (!credentials.ok()) return Fail(std::string(credentials.status().message()));
    target.credentials = *std::move(credentials);
  }
  // What a command answered, or its error with the canonical code.
  auto print = [](const absl::StatusOr<std::string>& out) {
    if (!out.ok()) {
      std::cerr << "meshctl: " << absl::StatusCodeToString(out.status().code()) << ": "
                << out.status().message() << "\n";
      return kStepFailed;
    }
    std::cout << *out;
    return 0;
  };
  if (leave->parsed()) return print(meshd::ctl::RunLeaveCommand(leave_reason, target, json));
  for (const auto& [verb, c] : verbs) {
    if (c->parsed()) {
      return print(meshd::ctl::RunAdminCommand(verb, target_name, reason, target, json));
    }
  }
  if (job->parsed() && job_name.empty()) return Fail("meshctl job NAME: give the job's name");
  for (CLI::App* c : {status, nodes, jobs, job}) {
    if (c->parsed()) {
      return print(meshd::ctl::RunClusterCommand(c->get_name(), job_name, target, json));
    }
  }
  return kUsage;
}
