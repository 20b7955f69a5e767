// CoordinatorMetrics: the coordinator's Prometheus series. Gauges and totals the core keeps are
// sampled at scrape time (Status()); transitions are counted from the core's events (OnEvent).
//
//   meshd_coordinator_nodes{state="alive|dead"}                      gauge
//   meshd_coordinator_jobs{phase="joining|running"}                  gauge
//   meshd_coordinator_waiters{kind="join|kv|groups|watch"}           gauge, calls held open
//   meshd_coordinator_heartbeat_timeout_seconds                      gauge, as told to agents
//   meshd_coordinator_ids_relayed_total                              counter, NCCL ids handed out
//   meshd_coordinator_group_answers_total                            counter, ResolveGroups done
//   meshd_coordinator_group_partial_answers_total                    counter, ... done in part
//   meshd_coordinator_generations_started_total                      counter
//   meshd_coordinator_generation_ends_total{reason}                  counter, the generation bumps
//   meshd_coordinator_events_total{event}                            counter, every transition
//   meshd_coordinator_rendezvous_duration_seconds                    histogram, round open -> close
//
// Thread-safety: thread-safe.
#ifndef MESHD_DAEMON_METRICS_COORDINATOR_METRICS_H_
#define MESHD_DAEMON_METRICS_COORDINATOR_METRICS_H_

#include <functional>
#include <vector>

#include "daemon/coordinator/types.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace meshd::metrics {

class CoordinatorMetrics : public prometheus::Collectable {
 public:
  // `status` samples the core (called on the scrape thread).
  explicit CoordinatorMetrics(std::function<domain::StatusView()> status);

  void OnEvent(const coordinator::Event& event);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::function<domain::StatusView()> status_;
  prometheus::Registry registry_;
  prometheus::Family<prometheus::Counter>& events_;
  prometheus::Family<prometheus::Counter>& ends_;
  prometheus::Histogram& rendezvous_;
};

}  // namespace meshd::metrics

#endif  // MESHD_DAEMON_METRICS_COORDINATOR_METRICS_H_
