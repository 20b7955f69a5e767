// FloodClient: one client sending bad requests (flood_requests.h) round-robin over every method,
// as fast as the server answers them: `in_flight` calls outstanding on one connection, each answer
// starting the next. It counts what came back by status code.
//
// Thread-safety: Start, Stop and Result from one thread; the calls run on gRPC's threads.
#ifndef MESHD_BENCH_SIM_FLOOD_CLIENT_H_
#define MESHD_BENCH_SIM_FLOOD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/sim/calls_in_flight.h"
#include "bench/sim/flood_requests.h"
#include "grpcpp/generic/generic_stub.h"

namespace meshd::bench {

struct FloodResult {
  uint64_t answered = 0;                  // calls that came back (with any status) while flooding
  uint64_t bytes = 0;                     // request bytes those calls carried
  double seconds = 0;                     // from Start to Stop
  std::map<std::string, uint64_t> codes;  // "INVALID_ARGUMENT" -> calls
  uint64_t ok = 0;                        // answered OK (a bad request accepted)
};

class FloodClient {
 public:
  FloodClient(const std::string& address, std::vector<FloodRequest> requests, int in_flight);
  ~FloodClient() { Stop(); }

  void Start();
  // Cancels what is in flight and waits until every call is gone; idempotent.
  void Stop();
  FloodResult Result();

 private:
  void Next();

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  const std::vector<FloodRequest> requests_;
  const int in_flight_;
  std::atomic<uint64_t> next_{0};
  absl::Time start_, stop_;
  CallsInFlight calls_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  FloodResult result_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_FLOOD_CLIENT_H_
