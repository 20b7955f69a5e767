// AgentMetrics: the node agent's Prometheus series, sampled from the agent at scrape time.
//
//   meshd_agent_registered                          gauge, 1 once registered with the coordinator
//   meshd_agent_gpus{simulated="true|false"}        gauge
//   meshd_agent_workers{state="waiting|attached"}   gauge, local workers by state
//   meshd_agent_registrations_total                 counter (more than 1: re-registered)
//   meshd_agent_heartbeats_total{result="ok|failed"} counter
//
// Thread-safety: thread-safe.
#ifndef MESHD_DAEMON_METRICS_AGENT_METRICS_H_
#define MESHD_DAEMON_METRICS_AGENT_METRICS_H_

#include <functional>
#include <vector>

#include "daemon/domain/views.h"
#include "prometheus/collectable.h"

namespace meshd::metrics {

class AgentMetrics : public prometheus::Collectable {
 public:
  // `status` samples the agent (called on the scrape thread).
  explicit AgentMetrics(std::function<domain::AgentView()> status)
      : status_(std::move(status)) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::function<domain::AgentView()> status_;
};

}  // namespace meshd::metrics

#endif  // MESHD_DAEMON_METRICS_AGENT_METRICS_H_
