// Agent-side proto <-> domain conversions (see agent_convert.h).
#include "daemon/wire/agent_convert.h"

#include "daemon/wire/convert.h"

namespace meshd::wire {

domain::GenerationEnd FromProto(const v1::GenerationEnd& p, const std::string& job,
                                uint64_t generation) {
  return domain::GenerationEnd{job, generation, FromProto(p.reason()), p.node(), p.message()};
}

void ToProto(const domain::Gpu& g, v1::Gpu* out) {
  out->set_index(g.index);
  out->set_uuid(g.uuid);
  out->set_pci_bus_id(g.pci_bus_id);
  out->set_name(g.name);
  out->set_memory_bytes(g.memory_bytes);
  out->set_nvlink_clique(g.nvlink_clique);
  out->set_simulated(g.simulated);
}

void ToAttachResponse(const domain::Assignment& a, uint32_t local_rank, const domain::Gpu& gpu,
                      v1::AttachResponse* p) {
  p->set_job(a.job);
  p->set_generation(a.generation);
  p->set_rank(a.node_rank * a.local_world + local_rank);
  p->set_world_size(a.world_size);
  p->set_local_rank(local_rank);
  p->set_local_world(a.local_world);
  p->set_node_rank(a.node_rank);
  p->set_num_nodes(a.num_nodes);
  ToProto(gpu, p->mutable_gpu());
}

void ToProto(const domain::AgentView& d, v1::AgentStatus* p) {
  ToProto(d.inventory, p->mutable_inventory());
  p->set_coordinator(d.coordinator);
  p->set_connected(d.connected);
  for (const auto& w : d.workers) {
    v1::AgentStatus::Worker* out = p->add_workers();
    out->set_job(w.job);
    out->set_local_rank(w.local_rank);
    out->set_generation(w.generation);
    out->set_rank(w.rank);
  }
}

}  // namespace meshd::wire
