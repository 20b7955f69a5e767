// Completions: the callbacks the coordinator's state collects while the Coordinator's lock is held,
// run by the Coordinator once it has released the lock (a callback may call the coordinator again,
// or hand a reply to gRPC). Events (types.h) are delivered the same way.
//
// Thread-safety: none; one Completions belongs to one call of the Coordinator.
#ifndef MESHD_DAEMON_COORDINATOR_COMPLETIONS_H_
#define MESHD_DAEMON_COORDINATOR_COMPLETIONS_H_

#include <functional>
#include <utility>
#include <vector>

#include "daemon/coordinator/types.h"

namespace meshd::coordinator {

using Completions = std::vector<std::function<void()>>;

// Runs `out` in order and clears it. Never with the Coordinator's lock held.
inline void RunAll(Completions& out) {
  for (auto& f : out) f();
  out.clear();
}

// Queues `e` for `sink` (nothing when there is no sink). `sink` outlives the completion: it is a
// member of the Coordinator, constant after construction.
inline void Emit(const EventSink& sink, Event e, Completions& out) {
  if (!sink) return;
  out.push_back([&sink, e = std::move(e)] { sink(e); });
}

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_COMPLETIONS_H_
