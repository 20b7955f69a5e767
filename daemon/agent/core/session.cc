// The node's registration and heartbeats (see session.h).
#include "daemon/agent/core/session.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"

namespace meshd::agent {
namespace {

std::string CodeName(const absl::Status& s) { return absl::StatusCodeToString(s.code()); }

// The coordinator asks for at least 10 ms between heartbeats.
absl::Duration Interval(absl::Duration asked) { return std::max(asked, absl::Milliseconds(10)); }

}  // namespace

Session::Session(const domain::NodeInventory* inventory, SessionOptions options,
                 const Clock* clock, CoordinatorClient* client, Hooks hooks)
    : inventory_(inventory),
      options_(std::move(options)),
      clock_(clock),
      client_(client),
      hooks_(std::move(hooks)) {}

void Session::Start() { Register(); }

void Session::Register() {
  std::vector<std::function<void()>> after;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (in_flight_) {
      register_again_ = true;
      return;
    }
    in_flight_ = true;
    registered_ = false;
    after.swap(after_register_);
  }
  std::vector<domain::RunningJob> running = hooks_.running_jobs();
  std::vector<domain::RunningJob> sent = running;
  client_->RegisterNode(*inventory_, sent, CallOptions{options_.rpc_timeout, false},
                        [this, running = std::move(running), after = std::move(after)](
                            absl::StatusOr<absl::Duration> interval) mutable {
                          Registered(std::move(interval), std::move(running), std::move(after));
                        });
}

void Session::Registered(absl::StatusOr<absl::Duration> interval,
                         std::vector<domain::RunningJob> running,
                         std::vector<std::function<void()>> after) {
  if (interval.status().code() == absl::StatusCode::kInvalidArgument && !running.empty()) {
    // A coordinator that refuses the reports (another version?) must not keep the node out:
    // register without them; those generations then end when their watches find no job.
    log::Warn("the coordinator refused this node's running jobs; registering without them",
              {{"error", std::string(interval.status().message())}});
    client_->RegisterNode(*inventory_, {}, CallOptions{options_.rpc_timeout, false},
                          [this, after = std::move(after)](
                              absl::StatusOr<absl::Duration> again) mutable {
                            Registered(std::move(again), {}, std::move(after));
                          });
    return;
  }
  if (!interval.ok()) {
    log::Warn("cannot register with the coordinator; retrying",
              {{"coordinator", options_.coordinator},
               {"code", CodeName(interval.status())},
               {"error", std::string(interval.status().message())}});
    {
      absl::MutexLock lock(&mu_);
      // Jittered exponential backoff, so that a restarted coordinator is not hit by every agent at
      // once.
      next_ = clock_->Now() + backoff_ * absl::Uniform(gen_, 0.5, 1.5);
      backoff_ = std::min(backoff_ * 2, options_.max_backoff);
      CallReturned();
      // Functions waiting for a registration wait for the next one, ahead of those queued since.
      if (!stopping_) {
        after_register_.insert(after_register_.begin(), std::make_move_iterator(after.begin()),
                               std::make_move_iterator(after.end()));
        after.clear();
      }
    }
    for (auto& f : after) f();  // stopping: they see it
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    registered_ = true;
    ++counts_.registrations;
    backoff_ = absl::Milliseconds(100);
    heartbeat_interval_ = Interval(*interval);
    next_ = clock_->Now() + heartbeat_interval_;
    CallReturned();
  }
  log::Info("registered with the coordinator",
            {{"coordinator", options_.coordinator},
             {"running_jobs", absl::StrCat(running.size())},
             {"node", inventory_->node},
             {"gpus", absl::StrCat(inventory_->gpus.size(),
                                   !inventory_->gpus.empty() && inventory_->gpus[0].simulated
                                       ? " (simulated)"
                                       : "")}});
  hooks_.registered();
  for (auto& f : after) f();
}

void Session::CallReturned() {
  in_flight_ = false;
  if (register_again_ && !stopping_) {
    register_again_ = false;
    next_ = absl::InfinitePast();
    registered_ = false;
  }
}

void Session::Tick() {
  bool heartbeat = false;
  absl::Duration timeout;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || in_flight_ || clock_->Now() < next_) return;
    if (registered_) {
      heartbeat = true;
      in_flight_ = true;
      timeout = std::min(heartbeat_interval_, options_.rpc_timeout);
    }
  }
  if (!heartbeat) return Register();
  client_->Heartbeat(inventory_->node, inventory_->incarnation, CallOptions{timeout, false},
                     [this](absl::StatusOr<absl::Duration> interval) {
                       Heartbeated(std::move(interval));
                     });
}

void Session::Heartbeated(absl::StatusOr<absl::Duration> interval) {
  const absl::StatusCode code = interval.status().code();
  if (code == absl::StatusCode::kNotFound || code == absl::StatusCode::kFailedPrecondition ||
      code == absl::StatusCode::kPermissionDenied) {
    log::Warn(code == absl::StatusCode::kPermissionDenied
                  ? "the coordinator no longer takes this agent as the node (another agent "
                    "registered it?); registering again"
                  : "the coordinator does not know this node any more; registering again",
              {{"error", std::string(interval.status().message())}});
    {
      absl::MutexLock lock(&mu_);
      in_flight_ = false;
      register_again_ = false;
    }
    return Register();
  }
  bool first_failure = false;
  bool recovered = false;
  {
    absl::MutexLock lock(&mu_);
    if (interval.ok()) {
      recovered = heartbeat_failing_;
      heartbeat_failing_ = false;
      ++counts_.heartbeats;
      // The coordinator stretches the interval as the cluster grows (its heartbeat rate cap).
      if (*interval > absl::ZeroDuration()) heartbeat_interval_ = Interval(*interval);
    } else {
      first_failure = !heartbeat_failing_;
      heartbeat_failing_ = true;
      ++counts_.heartbeat_failures;
    }
    next_ = clock_->Now() + heartbeat_interval_;
    CallReturned();
  }
  if (first_failure) {
    log::Warn("heartbeats to the coordinator fail; retrying",
              {{"node", inventory_->node},
               {"coordinator", options_.coordinator},
               {"code", CodeName(interval.status())},
               {"error", std::string(interval.status().message())}});
  } else if (recovered) {
    log::Info("heartbeats to the coordinator answered again",
              {{"node", inventory_->node}, {"coordinator", options_.coordinator}});
  }
}

void Session::RunAfterRegistering(std::function<void()> f) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      after_register_.push_back(std::move(f));
      f = nullptr;
    }
  }
  if (f) return f();
  Register();
}

void Session::Stop() {
  std::vector<std::function<void()>> after;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    after.swap(after_register_);
  }
  for (auto& f : after) f();
}

bool Session::registered() const {
  absl::MutexLock lock(&mu_);
  return registered_;
}

Session::Counts Session::counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

}  // namespace meshd::agent
