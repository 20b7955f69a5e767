// The agent's coordinator watch per generation (see generation_watch.h).
#include "daemon/agent/core/generation_watch.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"

namespace meshd::agent {

void GenerationWatch::Start(const std::string& job, uint64_t generation, bool again,
                            bool after_register) {
  client_->WatchJob(job, generation, CallOptions{absl::InfiniteDuration(), again},
                    [this, job, generation,
                     after_register](absl::StatusOr<domain::GenerationEnd> end) {
                      Done(job, generation, after_register, std::move(end));
                    });
}

void GenerationWatch::Done(const std::string& job, uint64_t generation, bool after_register,
                           absl::StatusOr<domain::GenerationEnd> result) {
  if (result.ok()) return hooks_.ended(job, *result);
  const absl::Status& s = result.status();
  if (s.code() == absl::StatusCode::kCancelled) return;  // the agent stops
  if (s.code() == absl::StatusCode::kUnavailable) {
    if (!hooks_.runs(job, generation)) return;  // over here already: nothing to watch
    log::Warn(
        "lost the watch on the coordinator; watching again once it answers (the generation "
        "goes on; an end is reported when the coordinator is back)",
        {{"job", job},
         {"generation", absl::StrCat(generation)},
         {"error", std::string(s.message())}});
    return Start(job, generation, /*again=*/true);
  }
  if (s.code() == absl::StatusCode::kNotFound && !after_register) {
    if (!hooks_.runs(job, generation)) return;
    log::Warn(
        "the coordinator does not know a running job (did it restart?): registering again, "
        "reporting it, then watching it again",
        {{"job", job}, {"generation", absl::StrCat(generation)}});
    return session_->RunAfterRegistering([this, job, generation] {
      if (hooks_.runs(job, generation)) {
        Start(job, generation, /*again=*/true, /*after_register=*/true);
      }
    });
  }
  domain::GenerationEnd end{job, generation, domain::EndReason::kNodeLost, "", ""};
  if (s.code() == absl::StatusCode::kNotFound) {
    end.reason = domain::EndReason::kShutdown;
    end.message =
        absl::StrCat("the coordinator no longer knows the job (it restarted): ", s.message());
  } else {
    end.message = absl::StrCat("lost the watch on the coordinator: ", s.message());
  }
  hooks_.ended(job, end);
}

}  // namespace meshd::agent
