// Building Prometheus metric families from values sampled at scrape time (gauges and counters the
// cores keep themselves), so the cores need not know about Prometheus.
#ifndef MESHD_DAEMON_METRICS_FAMILIES_H_
#define MESHD_DAEMON_METRICS_FAMILIES_H_

#include <string>
#include <utility>
#include <vector>

#include "prometheus/metric_family.h"

namespace meshd::metrics {

using LabelPairs = std::vector<std::pair<std::string, std::string>>;

// One series of a family: its labels and its value.
struct Sample {
  LabelPairs labels;
  double value = 0;
};

prometheus::MetricFamily GaugeFamily(std::string name, std::string help,
                                     const std::vector<Sample>& samples);
prometheus::MetricFamily CounterFamily(std::string name, std::string help,
                                       const std::vector<Sample>& samples);

}  // namespace meshd::metrics

#endif  // MESHD_DAEMON_METRICS_FAMILIES_H_
