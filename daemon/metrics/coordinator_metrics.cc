// CoordinatorMetrics (see coordinator_metrics.h).
#include "daemon/metrics/coordinator_metrics.h"

#include <string>
#include <utility>

#include "absl/strings/str_replace.h"
#include "daemon/metrics/families.h"

namespace meshd::metrics {
namespace {

// From a job whose nodes were all there (milliseconds) to one that waited for a slow node.
const prometheus::Histogram::BucketBoundaries& RendezvousBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
  return *b;
}

// "node lost" -> "node_lost".
std::string ReasonLabel(domain::EndReason reason) {
  if (reason == domain::EndReason::kShutdown) return "shutdown";
  return absl::StrReplaceAll(domain::EndReasonName(reason), {{" ", "_"}});
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(std::function<domain::StatusView()> status)
    : status_(std::move(status)),
      events_(prometheus::BuildCounter()
                  .Name("meshd_coordinator_events_total")
                  .Help("State transitions of nodes and jobs, by event")
                  .Register(registry_)),
      ends_(prometheus::BuildCounter()
                .Name("meshd_coordinator_generation_ends_total")
                .Help("Job generations ended (each one bumps the job's generation), by reason")
                .Register(registry_)),
      rendezvous_(prometheus::BuildHistogram()
                      .Name("meshd_coordinator_rendezvous_duration_seconds")
                      .Help("How long a job had no running generation: from its round opening "
                            "(job created or previous generation ended) to the round closing")
                      .Register(registry_)
                      .Add({}, RendezvousBuckets())) {
  // Every reason is shown from the start (at 0), so rate() works on the first bump.
  for (auto r : {domain::EndReason::kNodeLost, domain::EndReason::kNodeRestarted,
                 domain::EndReason::kNodeJoining, domain::EndReason::kNodeLeft,
                 domain::EndReason::kShutdown, domain::EndReason::kNodeDrained,
                 domain::EndReason::kJobEnded, domain::EndReason::kJobFinished,
                 domain::EndReason::kMeshMismatch}) {
    ends_.Add({{"reason", ReasonLabel(r)}});
  }
}

void CoordinatorMetrics::OnEvent(const coordinator::Event& e) {
  events_.Add({{"event", coordinator::EventKindName(e.kind)}}).Increment();
  if (e.kind == coordinator::EventKind::kGenerationStarted) {
    rendezvous_.Observe(absl::ToDoubleSeconds(e.rendezvous));
  } else if (e.kind == coordinator::EventKind::kGenerationEnded) {
    ends_.Add({{"reason", ReasonLabel(e.reason)}}).Increment();
  }
}

std::vector<prometheus::MetricFamily> CoordinatorMetrics::Collect() const {
  const domain::StatusView s = status_();
  std::vector<prometheus::MetricFamily> out = registry_.Collect();
  out.push_back(GaugeFamily("meshd_coordinator_nodes", "Registered nodes, by state",
                            {{{{"state", "alive"}}, static_cast<double>(s.nodes_alive)},
                             {{{"state", "dead"}}, static_cast<double>(s.nodes_dead)},
                             {{{"state", "left"}}, static_cast<double>(s.nodes_left)}}));
  out.push_back(GaugeFamily("meshd_coordinator_nodes_cordoned",
                            "Nodes an operator cordoned or drained (they join no new rounds)",
                            {{{}, static_cast<double>(s.nodes_cordoned)}}));
  out.push_back(GaugeFamily("meshd_coordinator_jobs", "Jobs, by phase",
                            {{{{"phase", "joining"}}, static_cast<double>(s.jobs_joining)},
                             {{{"phase", "running"}}, static_cast<double>(s.jobs_running)}}));
  out.push_back(GaugeFamily("meshd_coordinator_waiters",
                            "Calls held open until something happens, by what they wait for",
                            {{{{"kind", "join"}}, static_cast<double>(s.waiting.join)},
                             {{{"kind", "kv"}}, static_cast<double>(s.waiting.kv)},
                             {{{"kind", "groups"}}, static_cast<double>(s.waiting.groups)},
                             {{{"kind", "watch"}}, static_cast<double>(s.waiting.watch)}}));
  out.push_back(GaugeFamily("meshd_coordinator_heartbeat_timeout_seconds",
                            "Silence after which a node is declared dead, as told to agents now",
                            {{{}, absl::ToDoubleSeconds(s.heartbeat_timeout)}}));
  out.push_back(CounterFamily("meshd_coordinator_ids_relayed_total",
                              "NCCL unique ids handed out in ResolveGroups answers",
                              {{{}, static_cast<double>(s.counters.ids_relayed)}}));
  out.push_back(CounterFamily("meshd_coordinator_group_answers_total",
                              "ResolveGroups calls answered with their groups' ids",
                              {{{}, static_cast<double>(s.counters.groups_answered)}}));
  out.push_back(CounterFamily("meshd_coordinator_group_partial_answers_total",
                              "ResolveGroups calls answered with only the groups that had their "
                              "ids (partial_after_ms); the agent asks again for the rest",
                              {{{}, static_cast<double>(s.counters.partial_answers)}}));
  out.push_back(CounterFamily("meshd_coordinator_generations_started_total",
                              "Job generations started (rounds closed)",
                              {{{}, static_cast<double>(s.counters.generations_started)}}));
  out.push_back(CounterFamily("meshd_coordinator_generations_recovered_total",
                              "Running generations taken back from the agents after a restart",
                              {{{}, static_cast<double>(s.counters.generations_recovered)}}));
  return out;
}

}  // namespace meshd::metrics
