// The operators' verbs of the coordinator's façade (see coordinator.h): cordon, uncordon, drain,
// forget, end a job. Each checks that the caller is an operator, acts under the one lock, and
// emits one event naming who did it.
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/coordinator/coordinator.h"
#include "daemon/domain/validation.h"

namespace meshd::coordinator {
namespace {

Event AdminEvent(EventKind kind, std::string what, const std::string& node, const std::string& job,
                 uint64_t generation, const Caller& caller) {
  Event e;
  e.kind = kind;
  e.what = std::move(what);
  e.node = node;
  e.job = job;
  e.generation = generation;
  e.by = caller.identity.empty() ? "unknown" : caller.identity;
  return e;
}

// " (why)" or "".
std::string Because(const std::string& reason) {
  return reason.empty() ? "" : absl::StrCat(" (", reason, ")");
}

// "; generations ended: train 4, eval 2" or "".
std::string EndedText(const std::vector<std::pair<std::string, uint64_t>>& ended) {
  if (ended.empty()) return "";
  std::vector<std::string> parts;
  for (const auto& [job, generation] : ended) parts.push_back(absl::StrCat(job, " ", generation));
  return absl::StrCat("; generations ended: ", absl::StrJoin(parts, ", "));
}

}  // namespace

absl::Status Coordinator::CheckAdmin(const Caller& caller, const char* what,
                                     const std::string& name, size_t max_name,
                                     const std::string& reason) const {
  if (!caller.admin) {
    return absl::PermissionDeniedError(absl::StrCat(
        "this is an operator's call, and its sender (", caller.identity.substr(0, 256),
        ") is not an operator: with TLS, present a client certificate the coordinator's "
        "--admin-identity matches (a node's certificate is not one); without TLS, call from the "
        "coordinator's own host"));
  }
  if (absl::Status s = domain::ValidateName(what, name, max_name); !s.ok()) return s;
  if (reason.size() > kMaxReasonBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the reason is ", reason.size(),
                                                   " bytes; at most ", kMaxReasonBytes));
  }
  if (shut_down_) return absl::CancelledError("the coordinator is shutting down");
  return absl::OkStatus();
}

template <typename Act>
absl::StatusOr<AdminResult> Coordinator::AsOperator(const Caller& caller, const char* what,
                                                    const std::string& name, size_t max_name,
                                                    const std::string& reason, Act act) {
  Completions out;
  AdminResult result;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = CheckAdmin(caller, what, name, max_name, reason);
    if (status.ok()) status = act(result, out);
  }
  RunAll(out);
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<AdminResult> Coordinator::CordonNode(const Caller& caller, const std::string& node,
                                                    bool cordoned, const std::string& reason) {
  return AsOperator(caller, "node", node, domain::kMaxNodeNameBytes, reason,
                    [&](AdminResult& result, Completions& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                      absl::StatusOr<bool> changed = nodes_.Cordon(node, cordoned, reason);
                      if (!changed.ok()) return changed.status();
                      result.changed = *changed;
                      result.summary = absl::StrCat(
                          "node '", node, "' ", *changed ? "" : "was already ",
                          cordoned ? absl::StrCat("cordoned", Because(reason),
                                                  ": it joins no new rounds")
                                   : "uncordoned: it joins rounds again");
                      if (*changed) {
                        Emit(events_,
                             AdminEvent(cordoned ? EventKind::kNodeCordoned
                                                 : EventKind::kNodeUncordoned,
                                        result.summary, node, "", 0, caller),
                             out);
                      }
                      return absl::OkStatus();
                    });
}

absl::StatusOr<AdminResult> Coordinator::DrainNode(const Caller& caller, const std::string& node,
                                                   const std::string& reason) {
  return AsOperator(
      caller, "node", node, domain::kMaxNodeNameBytes, reason,
      [&](AdminResult& result, Completions& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        absl::StatusOr<bool> cordoned = nodes_.Cordon(node, true, reason);
        if (!cordoned.ok()) return cordoned.status();
        jobs_.DropNode(node, EndReason::kNodeDrained,
                       absl::StrCat("node '", node, "' was drained by an operator", Because(reason)),
                       out, &result.ended);
        result.changed = *cordoned || !result.ended.empty();
        result.summary = absl::StrCat("node '", node, "' drained", Because(reason),
                                      ": cordoned, it joins no new rounds", EndedText(result.ended));
        Emit(events_, AdminEvent(EventKind::kNodeDrained, result.summary, node, "", 0, caller),
             out);
        return absl::OkStatus();
      });
}

absl::StatusOr<AdminResult> Coordinator::ForgetNode(const Caller& caller,
                                                    const std::string& node) {
  return AsOperator(
      caller, "node", node, domain::kMaxNodeNameBytes, "",
      [&](AdminResult& result, Completions& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        if (absl::Status s = nodes_.Forget(node); !s.ok()) return s;
        result.changed = true;
        result.summary = absl::StrCat("node '", node, "' forgotten: its record and GPUs are gone");
        Emit(events_, AdminEvent(EventKind::kNodeForgotten, result.summary, node, "", 0, caller),
             out);
        return absl::OkStatus();
      });
}

absl::StatusOr<AdminResult> Coordinator::EndJob(const Caller& caller, const std::string& job,
                                                const std::string& reason) {
  return AsOperator(
      caller, "job", job, domain::kMaxJobNameBytes, reason,
      [&](AdminResult& result, Completions& out) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        absl::StatusOr<uint64_t> ended = jobs_.End(
            job, absl::StrCat("ended by an operator", reason.empty() ? "" : ": ", reason), out);
        if (!ended.ok()) return ended.status();
        if (*ended != 0) result.ended.emplace_back(job, *ended);
        result.changed = true;
        result.summary = absl::StrCat(
            "job '", job, "' ended", Because(reason),
            *ended != 0 ? absl::StrCat(": generation ", *ended, " ended, every worker told")
                        : ": no generation was running; its waiting joins were refused");
        Emit(events_, AdminEvent(EventKind::kJobEnded, result.summary, "", job, *ended, caller),
             out);
        return absl::OkStatus();
      });
}

}  // namespace meshd::coordinator
