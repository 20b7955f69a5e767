// Proto <-> domain conversions (see convert.h).
#include "daemon/wire/convert.h"

#include "daemon/wire/agent_convert.h"

namespace meshd::wire {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

domain::NodeInventory FromProto(const v1::NodeInventory& p) {
  domain::NodeInventory d{p.node(), p.hostname(), p.agent_address(), p.incarnation(), {}};
  for (const v1::Gpu& g : p.gpus()) {
    d.gpus.push_back(domain::Gpu{g.index(), g.uuid(), g.pci_bus_id(), g.name(),
                                      g.memory_bytes(), g.nvlink_clique(), g.simulated()});
  }
  return d;
}

void ToProto(const domain::NodeInventory& d, v1::NodeInventory* p) {
  p->set_node(d.node);
  p->set_hostname(d.hostname);
  p->set_agent_address(d.agent_address);
  p->set_incarnation(d.incarnation);
  for (const domain::Gpu& g : d.gpus) ToProto(g, p->add_gpus());
}

domain::NodeCount FromProto(const v1::NodeCount& p) {
  return domain::NodeCount{
      p.min_nodes(), p.max_nodes(),
      p.last_call_ms() == 0 ? absl::Seconds(1) : absl::Milliseconds(p.last_call_ms())};
}

void ToProto(const domain::NodeCount& d, v1::NodeCount* p) {
  p->set_min_nodes(d.min_nodes);
  p->set_max_nodes(d.max_nodes);
  p->set_last_call_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(d.last_call)));
}

domain::RunningJob FromProto(const v1::RunningJob& p) {
  return domain::RunningJob{p.job(),       p.generation(),  p.node_rank(),         p.num_nodes(),
                            p.local_world(), FromProto(p.nodes()), p.membership_token()};
}

void ToProto(const domain::RunningJob& d, v1::RunningJob* p) {
  p->set_job(d.job);
  p->set_generation(d.generation);
  p->set_node_rank(d.node_rank);
  p->set_num_nodes(d.num_nodes);
  p->set_local_world(d.local_world);
  ToProto(d.nodes, p->mutable_nodes());
  p->set_membership_token(d.membership_token);
}

void ToProto(const domain::JoinRequest& d, v1::JoinJobRequest* p) {
  p->set_job(d.job);
  p->set_node(d.node);
  p->set_incarnation(d.incarnation);
  p->set_local_world(d.local_world);
  ToProto(d.nodes, p->mutable_nodes());
}

domain::JoinRequest FromProto(const v1::JoinJobRequest& p) {
  return domain::JoinRequest{p.job(), p.node(), p.incarnation(), p.local_world(),
                             FromProto(p.nodes())};
}

namespace {

void ToProto(const domain::Member& d, v1::Member* p) {
  p->set_node(d.node);
  p->set_hostname(d.hostname);
  p->set_node_rank(d.node_rank);
  p->set_local_world(d.local_world);
  p->set_nvlink_clique(d.nvlink_clique);
}

v1::GenerationEnd::Reason ToProto(domain::EndReason r) {
  switch (r) {
    case domain::EndReason::kNodeLost:
      return v1::GenerationEnd::REASON_NODE_LOST;
    case domain::EndReason::kNodeRestarted:
      return v1::GenerationEnd::REASON_NODE_RESTARTED;
    case domain::EndReason::kNodeJoining:
      return v1::GenerationEnd::REASON_NODE_JOINING;
    case domain::EndReason::kNodeLeft:
      return v1::GenerationEnd::REASON_NODE_LEFT;
    case domain::EndReason::kShutdown:
      return v1::GenerationEnd::REASON_SHUTDOWN;
    case domain::EndReason::kNodeDrained:
      return v1::GenerationEnd::REASON_NODE_DRAINED;
    case domain::EndReason::kJobEnded:
      return v1::GenerationEnd::REASON_JOB_ENDED;
    case domain::EndReason::kJobFinished:
      return v1::GenerationEnd::REASON_JOB_FINISHED;
    case domain::EndReason::kMeshMismatch:
      return v1::GenerationEnd::REASON_MESH_MISMATCH;
  }
  return v1::GenerationEnd::REASON_UNSPECIFIED;
}

}  // namespace

domain::EndReason FromProto(v1::GenerationEnd::Reason r) {
  switch (r) {
    case v1::GenerationEnd::REASON_NODE_RESTARTED:
      return domain::EndReason::kNodeRestarted;
    case v1::GenerationEnd::REASON_NODE_JOINING:
      return domain::EndReason::kNodeJoining;
    case v1::GenerationEnd::REASON_NODE_LEFT:
      return domain::EndReason::kNodeLeft;
    case v1::GenerationEnd::REASON_SHUTDOWN:
      return domain::EndReason::kShutdown;
    case v1::GenerationEnd::REASON_NODE_DRAINED:
      return domain::EndReason::kNodeDrained;
    case v1::GenerationEnd::REASON_JOB_ENDED:
      return domain::EndReason::kJobEnded;
    case v1::GenerationEnd::REASON_JOB_FINISHED:
      return domain::EndReason::kJobFinished;
    case v1::GenerationEnd::REASON_MESH_MISMATCH:
      return domain::EndReason::kMeshMismatch;
    default:
      return domain::EndReason::kNodeLost;
  }
}

void ToProto(const domain::Assignment& d, bool with_members, v1::Assignment* p) {
  p->set_job(d.job);
  p->set_generation(d.generation);
  p->set_world_size(d.world_size);
  p->set_node_rank(d.node_rank);
  p->set_local_world(d.local_world);
  p->set_num_nodes(d.num_nodes);
  p->set_membership_token(d.membership_token);
  if (!with_members || !d.members) return;
  p->mutable_members()->Reserve(static_cast<int>(d.members->size()));
  for (const domain::Member& m : *d.members) ToProto(m, p->add_members());
}

domain::Assignment FromProto(const v1::Assignment& p) {
  domain::Assignment d{p.job(),       p.generation(),  p.world_size(),
                            p.node_rank(), p.local_world(), p.num_nodes(), nullptr,
                            p.membership_token()};
  if (p.members_size() > 0) {
    auto members = std::make_shared<std::vector<domain::Member>>();
    for (const v1::Member& m : p.members()) {
      members->push_back(
          {m.node(), m.hostname(), m.node_rank(), m.local_world(), m.nvlink_clique()});
    }
    d.members = std::move(members);
  }
  return d;
}

void ToProto(const domain::GenerationEnd& d, v1::GenerationEnd* p) {
  p->set_job(d.job);
  p->set_generation(d.generation);
  p->set_reason(ToProto(d.reason));
  p->set_node(d.node);
  p->set_message(d.message);
}

void ToProto(const domain::JobView& d, v1::JobStatus* p) {
  p->set_job(d.job);
  p->set_phase(d.phase == domain::JobPhase::kRunning      ? v1::JOB_PHASE_RUNNING
               : d.phase == domain::JobPhase::kRecovering ? v1::JOB_PHASE_RECOVERING
                                                               : v1::JOB_PHASE_JOINING);
  p->set_generation(d.generation);
  ToProto(d.nodes, p->mutable_nodes());
  for (const domain::Member& m : d.members) ToProto(m, p->add_members());
  for (const std::string& n : d.missing) p->add_missing(n);
  p->set_phase_ms(absl::ToInt64Milliseconds(d.in_phase));
  p->set_world_size(d.world_size);
  if (d.has_last_end) ToProto(d.last_end, p->mutable_last_end());
  if (d.has_store) {
    v1::StoreStatus* s = p->mutable_store();
    s->set_keys(d.store.keys);
    s->set_bytes(d.store.bytes);
    s->set_waiting(d.store.waiting);
    for (const auto& w : d.store.most_waited) {
      v1::WaitedKey* k = s->add_most_waited();
      k->set_key(w.key);
      k->set_waiting(w.waiting);
    }
  }
}

void ToProto(const domain::NodeView& d, v1::NodeStatus* p) {
  ToProto(d.inventory, p->mutable_inventory());
  p->set_state(d.alive  ? v1::NODE_STATE_ALIVE
               : d.left ? v1::NODE_STATE_LEFT
                        : v1::NODE_STATE_DEAD);
  p->set_last_heard_ms_ago(absl::ToInt64Milliseconds(d.since_heard));
  p->set_restarts(d.restarts);
  for (const std::string& j : d.jobs) p->add_jobs(j);
  p->set_cordoned(d.cordoned);
  p->set_cordon_reason(d.cordon_reason);
}

domain::GroupRequest FromProto(const v1::GroupRequest& p) {
  domain::GroupRequest d{p.key(), p.num_ids(), {}, p.mint_error()};
  for (const v1::MintedId& m : p.minted()) d.minted.emplace_back(m.index(), m.id());
  return d;
}

void ToProto(const std::vector<domain::SharedGroupIds>& d, v1::ResolveGroupsResponse* p) {
  for (const domain::SharedGroupIds& g : d) {
    v1::GroupIds* out = p->add_groups();
    out->set_key(g->key);
    for (const std::string& id : g->ids) out->add_ids(id);
  }
}

absl::Time CallDeadline(std::chrono::system_clock::time_point client_deadline, absl::Time now,
                        absl::Duration max_wait) {
  const absl::Time cap = now + max_wait;
  if (client_deadline == std::chrono::system_clock::time_point::max()) return cap;
  // The client's deadline is wall-clock; translate it to the server clock's frame.
  const absl::Duration left = absl::FromChrono(client_deadline) - absl::Now();
  return std::min(cap, now + left);
}

}  // namespace meshd::wire
