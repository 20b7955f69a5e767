// What a coordinator holds (see coordinator_holds.h).
#include "bench/sim/coordinator_holds.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/support/scrape.h"
#include "tests/support/wait_for.h"

namespace meshd::bench {
namespace {

template <typename Req, typename Resp, typename Method>
absl::Status Call(v1::Coordinator::Stub& stub, Method method, Resp* resp, absl::Duration timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
  Req req;
  const grpc::Status s = (stub.*method)(&ctx, req, resp);
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace

std::string Holds::ToString() const {
  return absl::StrFormat(
      "%u nodes listed (%u alive, %u dead, %u left), %u jobs listed (%u joining, %u running), "
      "%u calls held",
      nodes_listed, nodes_alive, nodes_dead, nodes_left, jobs_listed, jobs_joining, jobs_running,
      waiters);
}

absl::StatusOr<Holds> ReadHolds(v1::Coordinator::Stub& stub, absl::Duration timeout) {
  Holds h;
  v1::CoordinatorStatus status;
  v1::ListNodesResponse nodes;
  v1::ListJobsResponse jobs;
  if (absl::Status s = Call<v1::GetStatusRequest>(stub, &v1::Coordinator::Stub::GetStatus,
                                                  &status, timeout);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Call<v1::ListNodesRequest>(stub, &v1::Coordinator::Stub::ListNodes,
                                                  &nodes, timeout);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          Call<v1::ListJobsRequest>(stub, &v1::Coordinator::Stub::ListJobs, &jobs, timeout);
      !s.ok()) {
    return s;
  }
  h.nodes_listed = nodes.nodes_size();
  h.jobs_listed = jobs.jobs_size();
  h.nodes_alive = status.nodes_alive();
  h.nodes_dead = status.nodes_dead();
  h.nodes_left = status.nodes_left();
  h.jobs_joining = status.jobs_joining();
  h.jobs_running = status.jobs_running();
  h.waiters = status.waiters();
  return h;
}

absl::StatusOr<absl::Duration> WaitUntilEmpty(v1::Coordinator::Stub& stub,
                                              absl::Duration timeout) {
  const absl::Time start = absl::Now();
  absl::StatusOr<Holds> h;
  const bool empty = testing::WaitFor(
      [&] {
        h = ReadHolds(stub, absl::Seconds(10));
        return !h.ok() || h->Empty();
      },
      timeout, absl::Milliseconds(100));
  if (!h.ok()) return h.status();
  if (!empty) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the coordinator still holds ", h->ToString(), " after ", absl::FormatDuration(timeout)));
  }
  return absl::Now() - start;
}

absl::StatusOr<Series> ReadSeries(const std::string& url) {
  absl::StatusOr<std::map<std::string, double>> scraped = testing::Scrape(url);
  if (!scraped.ok()) return scraped.status();
  Series out;
  out.all = *std::move(scraped);
  for (const auto& [series, value] : out.all) {
    if (absl::StrContains(series, "node=\"") || absl::StrContains(series, "job=\"")) {
      out.per_thing.insert(series);
    }
    for (const char* held : {"meshd_coordinator_nodes{", "meshd_coordinator_jobs{",
                             "meshd_coordinator_waiters{"}) {
      if (absl::StartsWith(series, held)) out.held += value;
    }
  }
  return out;
}

}  // namespace meshd::bench
