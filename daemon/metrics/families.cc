// Metric families from sampled values (see families.h).
#include "daemon/metrics/families.h"

namespace meshd::metrics {
namespace {

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type,
                                const std::vector<Sample>& samples) {
  prometheus::MetricFamily f{std::move(name), std::move(help), type, {}};
  for (const Sample& s : samples) {
    prometheus::ClientMetric m;
    for (const auto& [label, value] : s.labels) m.label.push_back({label, value});
    if (type == prometheus::MetricType::Counter) {
      m.counter.value = s.value;
    } else {
      m.gauge.value = s.value;
    }
    f.metric.push_back(std::move(m));
  }
  return f;
}

}  // namespace

prometheus::MetricFamily GaugeFamily(std::string name, std::string help,
                                     const std::vector<Sample>& samples) {
  return Family(std::move(name), std::move(help), prometheus::MetricType::Gauge, samples);
}

prometheus::MetricFamily CounterFamily(std::string name, std::string help,
                                       const std::vector<Sample>& samples) {
  return Family(std::move(name), std::move(help), prometheus::MetricType::Counter, samples);
}

}  // namespace meshd::metrics
