// AgentMetrics (see agent_metrics.h).
#include "daemon/metrics/agent_metrics.h"

#include "daemon/metrics/families.h"

namespace meshd::metrics {

std::vector<prometheus::MetricFamily> AgentMetrics::Collect() const {
  const domain::AgentView v = status_();
  double simulated = 0;
  for (const domain::Gpu& g : v.inventory.gpus) simulated += g.simulated ? 1 : 0;
  double waiting = 0;
  for (const domain::AgentView::Worker& w : v.workers) waiting += w.generation == 0 ? 1 : 0;
  const double node_gpus = static_cast<double>(v.inventory.gpus.size());
  return {
      GaugeFamily("meshd_agent_registered", "1 once the node is registered with the coordinator",
                  {{{{"node", v.inventory.node}}, v.connected ? 1.0 : 0.0}}),
      GaugeFamily("meshd_agent_gpus",
                  "GPUs of this node (simulated ones are declared with "
                  "--simulate-gpus)",
                  {{{{"simulated", "false"}}, node_gpus - simulated},
                   {{{"simulated", "true"}}, simulated}}),
      GaugeFamily("meshd_agent_workers", "Local workers attached to a job, by state",
                  {{{{"state", "waiting"}}, waiting},
                   {{{"state", "attached"}}, static_cast<double>(v.workers.size()) - waiting}}),
      CounterFamily("meshd_agent_registrations_total",
                    "Registrations with the coordinator (more than one: it re-registered)",
                    {{{}, static_cast<double>(v.registrations)}}),
      CounterFamily("meshd_agent_heartbeats_total", "Heartbeats sent to the coordinator, by result",
                    {{{{"result", "ok"}}, static_cast<double>(v.heartbeats)},
                     {{{"result", "failed"}}, static_cast<double>(v.heartbeat_failures)}}),
      CounterFamily("meshd_agent_store_calls_total",
                    "Key-value store calls of local workers; shared: sent within another "
                    "worker's coordinator call (an identical wait, or one batch)",
                    {{{{"sent", "own"}}, static_cast<double>(v.key_calls - v.key_calls_shared)},
                     {{{"sent", "shared"}}, static_cast<double>(v.key_calls_shared)}}),
      CounterFamily("meshd_agent_store_coordinator_calls_total",
                    "Coordinator calls (KeyBatch, or single calls to a coordinator without it) "
                    "that carried the local workers' key-value store calls",
                    {{{}, static_cast<double>(v.key_coordinator_calls)}}),
  };
}

}  // namespace meshd::metrics
