// GenerationWatch: the agent's one coordinator watch per running generation of a job, and what
// its breaks mean. The end it reports goes to every local worker (Agent). A watch lost to the
// transport (UNAVAILABLE: the coordinator unreachable, a connection reset) is not an end: it is
// opened again, waiting for the coordinator, so a network blip does not end a running job. A
// coordinator that answers without the job may have restarted and not yet heard from this node:
// the agent registers again, reporting the generation (which lets the coordinator rebuild the job),
// and watches once more; a coordinator that still does not know it then ends it.
//
// Thread-safety: thread-safe; hooks are called without any lock of this class (there is none).
#ifndef MESHD_DAEMON_AGENT_CORE_GENERATION_WATCH_H_
#define MESHD_DAEMON_AGENT_CORE_GENERATION_WATCH_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/agent/core/coordinator_client.h"
#include "daemon/agent/core/session.h"
#include "daemon/domain/types.h"

namespace meshd::agent {

class GenerationWatch {
 public:
  struct Hooks {
    // Whether the node still runs `generation` of `job` (and the agent is not stopping).
    std::function<bool(const std::string& job, uint64_t generation)> runs;
    // The generation ended (as the coordinator said, or because the watch could not go on).
    std::function<void(const std::string& job, const domain::GenerationEnd& end)> ended;
  };

  GenerationWatch(CoordinatorClient* client, Session* session, Hooks hooks)
      : client_(client), session_(session), hooks_(std::move(hooks)) {}

  // Sends the watch. `again`: after the previous one was lost to the transport (waits for the
  // coordinator). `after_register`: the agent registered again since the coordinator did not know
  // the job (a NOT_FOUND then ends the generation).
  void Start(const std::string& job, uint64_t generation, bool again = false,
             bool after_register = false);

 private:
  void Done(const std::string& job, uint64_t generation, bool after_register,
            absl::StatusOr<domain::GenerationEnd> result);

  CoordinatorClient* const client_;
  Session* const session_;
  const Hooks hooks_;
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_GENERATION_WATCH_H_
