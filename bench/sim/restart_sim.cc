// RestartSim (see restart_sim.h).
#include "bench/sim/restart_sim.h"

#include <chrono>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/sim/nodes.h"
#include "bench/sim/placement.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::bench {

absl::StatusOr<RestartResult> RunRestartSim(const RestartOptions& o) {
  if (o.node_ranks.size() != o.nodes) {
    return absl::InvalidArgumentError("node_ranks must give every node's rank");
  }
  // As the agents: new connections to the new coordinator (the old ones died with it).
  std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs;
  for (const auto& channel : SimChannels(o.address, o.channels)) {
    stubs.push_back(v1::Coordinator::NewStub(channel));
  }
  struct Call {
    grpc::ClientContext ctx;
    v1::RegisterNodeRequest req;
    v1::RegisterNodeResponse resp;
  };
  std::vector<std::unique_ptr<Call>> calls;  // ready before the clock, as each agent has its report
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(absl::ToInt64Milliseconds(o.timeout));
  for (uint32_t i = 0; i < o.nodes; ++i) {
    auto call = std::make_unique<Call>();
    call->req = SimulatedRegistration(i, o.gpus_per_node);
    v1::RunningJob* r = call->req.add_running_jobs();
    r->set_job(o.job);
    r->set_generation(o.generation);
    r->set_node_rank(o.node_ranks[i]);
    r->set_num_nodes(o.nodes);
    r->set_local_world(o.gpus_per_node);
    r->mutable_nodes()->set_min_nodes(o.nodes);
    r->mutable_nodes()->set_max_nodes(o.nodes);
    call->ctx.set_deadline(deadline);
    call->ctx.set_wait_for_ready(true);
    calls.push_back(std::move(call));
  }

  absl::Mutex mu;
  uint32_t answered = 0;
  absl::Status error;
  const auto start = std::chrono::steady_clock::now();
  double t_recovered = 0;
  for (uint32_t i = 0; i < o.nodes; ++i) {
    Call* c = calls[i].get();
    stubs[i % stubs.size()]->async()->RegisterNode(
        &c->ctx, &c->req, &c->resp, [&, i](grpc::Status s) {
          absl::MutexLock lock(&mu);
          if (!s.ok() && error.ok()) {
            error = absl::Status(
                static_cast<absl::StatusCode>(s.error_code()),
                absl::StrCat("RegisterNode for ", SimulatedNodeName(i), ": ", s.error_message()));
          }
          if (++answered == o.nodes) {
            t_recovered =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          }
        });
  }
  {
    absl::MutexLock lock(&mu);
    const auto all = [&] { return answered == o.nodes; };
    if (!mu.AwaitWithTimeout(absl::Condition(&all), o.timeout + absl::Seconds(5))) {
      // Every callback must have run before `calls`, `mu` and the stubs go (a cancelled call
      // always completes): see calls_in_flight.h.
      for (auto& c : calls) c->ctx.TryCancel();
      mu.Await(absl::Condition(&all));
      return absl::DeadlineExceededError(
          absl::StrCat(answered, " of ", o.nodes, " registrations answered in time"));
    }
    if (!error.ok()) return error;
  }

  // The job is back as it was: running, same generation, every node at its rank.
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline);
  v1::GetJobRequest req;
  req.set_job(o.job);
  v1::JobStatus job;
  if (grpc::Status s = stubs[0]->GetJob(&ctx, req, &job); !s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  if (job.phase() != v1::JOB_PHASE_RUNNING || job.generation() != o.generation ||
      job.members_size() != static_cast<int>(o.nodes)) {
    return absl::FailedPreconditionError(
        absl::StrCat("after every node registered again the job is at phase ", job.phase(),
                     ", generation ", job.generation(), " with ", job.members_size(),
                     " members; expected running generation ", o.generation, " with ", o.nodes));
  }
  for (const v1::Member& m : job.members()) {
    uint32_t index = 0;
    if (sscanf(m.node().c_str(), "node-%u", &index) != 1 || index >= o.nodes ||
        o.node_ranks[index] != m.node_rank()) {
      return absl::FailedPreconditionError(
          absl::StrCat("node ", m.node(), " came back at rank ", m.node_rank()));
    }
  }
  return RestartResult{t_recovered, o.nodes + 1};
}

}  // namespace meshd::bench
