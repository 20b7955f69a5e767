// NcclComm: one ncclComm_t and what it needs (its CUDA stream, its ncclConfig_t and the strings the
// config points at), made without blocking (ncclConfig_t.blocking = 0) and polled until it is
// ready, fails, passes its deadline or is told to stop; aborted once (ncclCommAbort), from any
// thread. meshd::Communicator (communicator.cc) is a thin public face over it. Private to
// libmeshd_client; tests compile it with their own NcclRuntime to check the bookkeeping.
//
// Thread-safety: every method may be called from any thread. `mu_` guards the handle: an NCCL call
// on it is made under `mu_`, so Abort() never frees a communicator another thread is inside;
// waits (init, a collective's completion) poll and release `mu_` between polls, so an Abort() from
// another thread (the generation's end) ends them within one poll.
#ifndef MESHD_CLIENT_SRC_NCCL_COMM_H_
#define MESHD_CLIENT_SRC_NCCL_COMM_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/src/nccl_runtime.h"
#include "meshd/client.h"

namespace meshd::client_internal {

// commName: "<job>/<group key>/<dims>/g<generation>", at most kMaxCommName bytes. When that is too
// long the key is replaced by "#" and 16 hex digits of its FNV-1a hash, and then the dims are cut
// (the job is at most 128 bytes, so the result always fits).
inline constexpr size_t kMaxCommName = 255;
std::string CommName(absl::string_view job, absl::string_view group_key,
                     const std::vector<std::string>& dims, uint64_t generation);

// FNV-1a, 64 bits, as 16 hex digits: the same on every host (std::hash is not).
std::string StableHash(absl::string_view bytes);

// The ncclConfig_t a CommOptions asks for, checked against the loaded NCCL: FAILED_PRECONDITION
// naming a field the library is too old for. `comm_name` is set only where NCCL has commName (a
// name is not worth refusing an older NCCL for). The strings must outlive the communicator: NCCL
// keeps the commName pointer (NcclComm keeps them).
absl::StatusOr<NcclConfigC> BuildConfig(const NcclRuntime& nccl, const CommOptions& options,
                                        const std::string* net_name, const std::string* comm_name);

// What ends a wait early: a non-OK status (the generation ended, an Interrupter fired) ends it
// with that status. Called between polls, without NcclComm's lock.
using StopCheck = std::function<absl::Status()>;

class NcclComm {
 public:
  // `cuda` may be null: no stream is made (tests; a NOCOLOR split that yields no communicator).
  NcclComm(const NcclRuntime* nccl, const CudaRuntime* cuda);
  // Aborted: nothing more. Otherwise ncclCommDestroy, or ncclCommAbort when the communicator is in
  // error or never finished its init (a destroy could wait on peers that are gone). Then the
  // stream.
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  // Before a Start*: the config (options checked against the library; see BuildConfig) and the
  // stream (cudaStreamCreate on the current device).
  absl::Status Configure(const CommOptions& options, const std::string& comm_name);
  absl::Status CreateStream();

  // Starts making the communicator. With ncclCommInitRankConfig (NCCL >= 2.14) it returns at once
  // and WaitReady polls; on an older NCCL ncclCommInitRank blocks here, with no deadline.
  absl::Status StartInitRank(int nranks, int rank, const NcclUniqueIdC& id);
  absl::Status StartInitScalable(int nranks, int rank, std::vector<NcclUniqueIdC> ids);
  // ncclCommSplit of `parent` (ready; made non-blocking): color >= 0 makes a member of that color,
  // kNcclSplitNoColor takes part without a communicator (handle() stays null).
  absl::Status StartSplit(NcclComm* parent, int color, int key);

  // Polls ncclCommGetAsyncError (of the parent, for a split: NCCL hands the child out only once
  // it is made) until the communicator is ready. On anything but OK the half-made communicator is
  // aborted (for a split, the parent with it: NCCL has no other way to stop a split) and the
  // answer is: DEADLINE_EXCEEDED at `deadline`; stop()'s status; INTERNAL with NCCL's error;
  // ABORTED when Abort() came first.
  absl::Status WaitReady(absl::Time deadline, const StopCheck& stop);

  // ncclCommAbort, once: later calls do nothing. Every call after it answers ABORTED with `why`.
  // Safe from any thread, also while another waits in WaitReady or AllReduceSum.
  void Abort(const absl::Status& why);
  // OK while usable; ABORTED with the reason after Abort(); NCCL's asynchronous error otherwise.
  absl::Status status() const;
  bool aborted() const;
  // The ncclComm_t; null after Abort(), and for a NOCOLOR split.
  ncclComm_t handle() const;
  // ncclCommCount.
  absl::StatusOr<int> Count() const;

  // Sums `count` floats in place (device memory) on this communicator's stream and waits for it,
  // polling the stream and NCCL's asynchronous error; an Abort() ends the wait with ABORTED.
  absl::Status AllReduceSum(float* device_buffer, size_t count);

 private:
  // Polls `done` (under mu_) until it answers; backs off from 50 us to 10 ms between polls.
  // `done` returns nullopt to go on.
  absl::Status Poll(absl::Time deadline, const StopCheck& stop,
                    const std::function<std::optional<absl::Status>()>& done);
  void AbortLocked(const absl::Status& why, ncclComm_t* to_abort)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An init NCCL refused at once (`r`, from `what`): the half-made handle is aborted and the
  // communicator fails with NCCL's error, which is returned.
  absl::Status InitFailed(int r, const char* what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const NcclRuntime* const nccl_;
  const CudaRuntime* const cuda_;
  cudaStream_t stream_ = nullptr;
  // Kept here because NCCL keeps pointers to them (commName; netName until its init copies it).
  std::string comm_name_;
  std::string net_name_;
  NcclConfigC config_;
  bool configured_ = false;

  mutable absl::Mutex mu_;
  // NCCL writes the handle of a split's child from its own thread when the split completes.
  ncclComm_t comm_ ABSL_GUARDED_BY(mu_) = nullptr;
  NcclComm* split_parent_ ABSL_GUARDED_BY(mu_) = nullptr;  // while a split is in flight
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status why_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::client_internal

#endif  // MESHD_CLIENT_SRC_NCCL_COMM_H_
