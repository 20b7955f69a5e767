// Conversions on the agent's side of the protocol: what comes back from the coordinator (a
// generation's end) and what the agent answers its workers (Attach, GetStatus).
// Translation only: no decisions are made here.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_WIRE_AGENT_CONVERT_H_
#define MESHD_DAEMON_WIRE_AGENT_CONVERT_H_

#include <cstdint>

#include "daemon/domain/types.h"
#include "daemon/domain/views.h"
#include "meshd/v1/agent.pb.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::wire {

domain::GenerationEnd FromProto(const v1::GenerationEnd& p, const std::string& job,
                                uint64_t generation);
void ToProto(const domain::Gpu& d, v1::Gpu* p);
// A worker's placement: its local rank in `a`, on `gpu`.
void ToAttachResponse(const domain::Assignment& a, uint32_t local_rank, const domain::Gpu& gpu,
                      v1::AttachResponse* p);
// Without the version (the service adds it).
void ToProto(const domain::AgentView& d, v1::AgentStatus* p);

}  // namespace meshd::wire

#endif  // MESHD_DAEMON_WIRE_AGENT_CONVERT_H_
