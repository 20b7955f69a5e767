// meshctl cluster commands (see cluster_commands.h).
#include "daemon/ctl/cluster_commands.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/domain/quote.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "meshd/v1/admin.grpc.pb.h"
#include "meshd/v1/agent.grpc.pb.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::ctl {
namespace {

std::string Duration(int64_t ms) {
  return absl::FormatDuration(
      absl::Trunc(absl::Milliseconds(ms), ms >= 60000 ? absl::Seconds(1) : absl::Milliseconds(1)));
}

// Left-aligned columns, two spaces apart.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      absl::StrAppend(&line, row[c],
                      c + 1 < row.size() ? std::string(width[c] - row[c].size() + 2, ' ') : "");
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string GpuSummary(const v1::NodeInventory& inv) {
  const bool simulated = std::any_of(inv.gpus().begin(), inv.gpus().end(),
                                     [](const v1::Gpu& g) { return g.simulated(); });
  return absl::StrCat(inv.gpus_size(), simulated ? " (simulated)" : "");
}

std::string Phase(v1::JobPhase p) {
  return p == v1::JOB_PHASE_RUNNING      ? "running"
         : p == v1::JOB_PHASE_RECOVERING ? "recovering"
                                         : "joining";
}

std::string Count(const v1::NodeCount& c) {
  return c.min_nodes() == c.max_nodes() ? absl::StrCat(c.min_nodes())
                                        : absl::StrCat(c.min_nodes(), ":", c.max_nodes());
}

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out + "\n";
}

absl::Status Failed(const grpc::Status& s, const std::string& what, const std::string& address) {
  const std::string hint =
      s.error_code() == grpc::StatusCode::UNAVAILABLE
          ? " (is meshd running there? see --coordinator / --agent; a TLS coordinator needs "
            "--tls-cert, --tls-key and --tls-ca)"
      : s.error_code() == grpc::StatusCode::PERMISSION_DENIED
          ? " (operators' verbs need an operator's certificate in --tls-cert)"
          : "";
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, " from ", address, ": ", s.error_message(), hint));
}

}  // namespace

std::string RenderStatus(const v1::CoordinatorStatus& s, const std::string& address) {
  return Table(
      {{"coordinator", address},
       {"version", s.version()},
       {"uptime", Duration(s.uptime_ms())},
       {"nodes", absl::StrCat(s.nodes_alive(), " alive, ", s.nodes_dead(), " dead",
                              s.nodes_left() ? absl::StrCat(", ", s.nodes_left(), " left") : "",
                              s.nodes_cordoned() ? absl::StrCat(", ", s.nodes_cordoned(),
                                                                " cordoned")
                                                 : "")},
       {"jobs", absl::StrCat(s.jobs_running(), " running, ", s.jobs_joining(), " joining")},
       {"waiting calls", absl::StrCat(s.waiters())},
       {"heartbeat timeout", Duration(s.heartbeat_timeout_ms())}});
}

std::string RenderAgentStatus(const v1::AgentStatus& s, const std::string& address) {
  std::string out =
      Table({{"agent", address},
             {"version", s.version()},
             {"node", s.inventory().node()},
             {"hostname", s.inventory().hostname()},
             {"gpus", GpuSummary(s.inventory())},
             {"coordinator",
              absl::StrCat(s.coordinator(), s.connected() ? " (connected)" : " (NOT connected)")}});
  if (s.workers_size() == 0) return out + "no workers attached\n";
  std::vector<std::vector<std::string>> rows = {
      {"JOB", "LOCAL RANK", "GENERATION", "RANK", "PID", "UID", "GID"}};
  for (const auto& w : s.workers()) {
    rows.push_back({w.job(), absl::StrCat(w.local_rank()),
                    w.generation() ? absl::StrCat(w.generation()) : "waiting",
                    w.generation() ? absl::StrCat(w.rank()) : "-",
                    w.has_pid() ? absl::StrCat(w.pid()) : "-",
                    w.has_uid() ? absl::StrCat(w.uid()) : "-",
                    w.has_gid() ? absl::StrCat(w.gid()) : "-"});
  }
  return out + "\n" + Table(rows);
}

std::string RenderNodes(const v1::ListNodesResponse& nodes) {
  if (nodes.nodes_size() == 0) return "no nodes registered\n";
  std::vector<std::vector<std::string>> rows = {
      {"NODE", "STATE", "GPUS", "HOSTNAME", "LAST HEARD", "RESTARTS", "JOBS"}};
  for (const auto& n : nodes.nodes()) {
    rows.push_back({n.inventory().node(),
                    absl::StrCat(n.state() == v1::NODE_STATE_ALIVE  ? "alive"
                                 : n.state() == v1::NODE_STATE_LEFT ? "left"
                                                                    : "DEAD",
                                 n.cordoned() ? ",cordoned" : ""),
                    GpuSummary(n.inventory()), n.inventory().hostname(),
                    Duration(n.last_heard_ms_ago()) + " ago", absl::StrCat(n.restarts()),
                    n.jobs().empty() ? "-" : absl::StrJoin(n.jobs(), ",")});
  }
  return Table(rows);
}

std::string RenderJobs(const v1::ListJobsResponse& jobs) {
  if (jobs.jobs_size() == 0) return "no jobs\n";
  std::vector<std::vector<std::string>> rows = {
      {"JOB", "PHASE", "GENERATION", "NODES", "WORLD", "SINCE"}};
  for (const auto& j : jobs.jobs()) {
    rows.push_back({j.job(), Phase(j.phase()), absl::StrCat(j.generation()),
                    absl::StrCat(j.members_size(), "/", Count(j.nodes())),
                    j.phase() == v1::JOB_PHASE_RUNNING ? absl::StrCat(j.world_size()) : "-",
                    Duration(j.phase_ms())});
  }
  return Table(rows);
}

std::string Plural(uint64_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

std::string RenderJob(const v1::JobStatus& j) {
  std::vector<std::vector<std::string>> head = {
      {"job", j.job()},
      {"phase", absl::StrCat(Phase(j.phase()), " for ", Duration(j.phase_ms()))},
      {"generation", absl::StrCat(j.generation())},
      {"nodes", absl::StrCat(j.members_size(), " of ", Count(j.nodes()))},
      {"world", j.phase() == v1::JOB_PHASE_RUNNING ? absl::StrCat(j.world_size(), " ranks")
                                                   : "not assigned yet"}};
  if (j.has_store()) {
    const v1::StoreStatus& s = j.store();
    head.push_back({"store", absl::StrCat(Plural(s.keys(), "key", "keys"), ", ",
                                          Plural(s.bytes(), "byte", "bytes"), ", ",
                                          Plural(s.waiting(), "operation", "operations"),
                                          " waiting")});
  }
  std::string out = Table(head);
  if (j.phase() == v1::JOB_PHASE_RUNNING) {
    std::vector<std::vector<std::string>> rows = {
        {"NODE RANK", "NODE", "HOSTNAME", "RANKS", "NVLINK CLIQUE"}};
    for (const auto& m : j.members()) {
      const uint32_t first = m.node_rank() * m.local_world();
      rows.push_back({absl::StrCat(m.node_rank()), m.node(), m.hostname(),
                      absl::StrCat(first, "..", first + m.local_world() - 1),
                      m.nvlink_clique().empty() ? "-" : m.nvlink_clique()});
    }
    absl::StrAppend(&out, "\n", Table(rows));
  } else {
    std::vector<std::string> joined;
    for (const auto& m : j.members()) joined.push_back(m.node());
    absl::StrAppend(&out, "joined:  ", joined.empty() ? "(none yet)" : absl::StrJoin(joined, ", "),
                    "\n");
    if (j.missing_size() > 0) {
      absl::StrAppend(&out, "missing: ", absl::StrJoin(j.missing(), ", "),
                      " (members of the previous generation)\n");
    }
  }
  if (j.has_store() && j.store().most_waited_size() > 0) {
    // The coordinator's: an agent sends its workers' identical waits as one.
    std::vector<std::vector<std::string>> rows = {{"WAITING", "FOR KEY"}};
    for (const auto& w : j.store().most_waited()) {
      rows.push_back({absl::StrCat(w.waiting()), domain::Quote(w.key())});
    }
    absl::StrAppend(&out, "\n", Table(rows));
  }
  if (j.has_last_end()) {
    absl::StrAppend(&out, "\nprevious generation ", j.last_end().generation(),
                    " ended: ", j.last_end().message(), "\n");
  }
  return out;
}

absl::StatusOr<std::string> RunClusterCommand(const std::string& command, const std::string& arg,
                                              const ClusterTarget& target, bool json) {
  auto channel = grpc::CreateChannel(target.address, target.credentials != nullptr && !target.agent
                                                         ? target.credentials
                                                         : grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + target.timeout));
  if (target.agent) {
    if (command != "status") {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", command,
          "' asks the coordinator; use --coordinator HOST:PORT (an agent serves status)"));
    }
    v1::AgentStatus s;
    const grpc::Status r =
        v1::Agent::NewStub(channel)->GetStatus(&ctx, v1::GetAgentStatusRequest(), &s);
    if (!r.ok()) return Failed(r, "cannot get the agent's status", target.address);
    return json ? ToJson(s) : RenderAgentStatus(s, target.address);
  }
  auto stub = v1::Coordinator::NewStub(channel);
  if (command == "status") {
    v1::CoordinatorStatus s;
    const grpc::Status r = stub->GetStatus(&ctx, v1::GetStatusRequest(), &s);
    if (!r.ok()) return Failed(r, "cannot get the coordinator's status", target.address);
    return json ? ToJson(s) : RenderStatus(s, target.address);
  }
  if (command == "nodes") {
    v1::ListNodesResponse s;
    const grpc::Status r = stub->ListNodes(&ctx, v1::ListNodesRequest(), &s);
    if (!r.ok()) return Failed(r, "cannot list nodes", target.address);
    return json ? ToJson(s) : RenderNodes(s);
  }
  if (command == "jobs") {
    v1::ListJobsResponse s;
    const grpc::Status r = stub->ListJobs(&ctx, v1::ListJobsRequest(), &s);
    if (!r.ok()) return Failed(r, "cannot list jobs", target.address);
    return json ? ToJson(s) : RenderJobs(s);
  }
  if (command == "job") {
    v1::GetJobRequest req;
    req.set_job(arg);
    v1::JobStatus s;
    const grpc::Status r = stub->GetJob(&ctx, req, &s);
    if (!r.ok()) return Failed(r, absl::StrCat("cannot get job '", arg, "'"), target.address);
    return json ? ToJson(s) : RenderJob(s);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown command '", command, "'"));
}

absl::StatusOr<std::string> RunAdminCommand(const std::string& verb, const std::string& name,
                                            const std::string& reason,
                                            const ClusterTarget& target, bool json) {
  if (target.agent) {
    return absl::InvalidArgumentError(
        "operators' verbs go to the coordinator; use --coordinator HOST:PORT, not --agent");
  }
  auto stub = v1::Admin::NewStub(grpc::CreateChannel(
      target.address, target.credentials != nullptr ? target.credentials
                                                    : grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + target.timeout));
  v1::AdminResponse resp;
  grpc::Status r;
  if (verb == "cordon") {
    v1::CordonNodeRequest req;
    req.set_node(name);
    req.set_reason(reason);
    r = stub->CordonNode(&ctx, req, &resp);
  } else if (verb == "uncordon") {
    v1::UncordonNodeRequest req;
    req.set_node(name);
    r = stub->UncordonNode(&ctx, req, &resp);
  } else if (verb == "drain") {
    v1::DrainNodeRequest req;
    req.set_node(name);
    req.set_reason(reason);
    r = stub->DrainNode(&ctx, req, &resp);
  } else if (verb == "forget") {
    v1::ForgetNodeRequest req;
    req.set_node(name);
    r = stub->ForgetNode(&ctx, req, &resp);
  } else if (verb == "end") {
    v1::EndJobRequest req;
    req.set_job(name);
    req.set_reason(reason);
    r = stub->EndJob(&ctx, req, &resp);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown verb '", verb, "'"));
  }
  if (!r.ok()) {
    return Failed(r, absl::StrCat("cannot ", verb, " ", verb == "end" ? "job" : "node", " '", name,
                                  "'"),
                  target.address);
  }
  return json ? ToJson(resp) : resp.summary() + "\n";
}

absl::StatusOr<std::string> RunLeaveCommand(const std::string& reason,
                                            const ClusterTarget& target, bool json) {
  if (!target.agent) {
    return absl::InvalidArgumentError(
        "leave asks this host's agent: meshctl --agent /run/meshd/agent.sock leave (or set "
        "MESHD_SOCKET); to take another node out, an operator drains it on the coordinator "
        "(meshctl node drain NAME)");
  }
  auto stub = v1::Agent::NewStub(grpc::CreateChannel(target.address,
                                                     grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + target.timeout));
  v1::LeaveRequest req;
  req.set_reason(reason);
  v1::LeaveResponse resp;
  const grpc::Status r = stub->Leave(&ctx, req, &resp);
  if (!r.ok()) return Failed(r, "the node could not leave the cluster", target.address);
  return json ? ToJson(resp) : resp.summary() + "\n";
}

}  // namespace meshd::ctl
