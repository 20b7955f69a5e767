// RawUnaryCall: a unary call of any method with any bytes as its request (grpc::GenericStub), for
// tests that send what no generated stub would: junk, oversized or hand-encoded requests.
//
// Thread-safety: one call per invocation; the stub may be shared.
#ifndef MESHD_TESTS_SUPPORT_RAW_CALL_H_
#define MESHD_TESTS_SUPPORT_RAW_CALL_H_

#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/sync/handoff.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace meshd::testing {

// Calls `method` ("/meshd.v1.Coordinator/KeyGet") with `payload` as its raw request; its status
// (DEADLINE_EXCEEDED when nothing answered within `timeout`).
inline grpc::Status RawUnaryCall(grpc::GenericStub& stub, const std::string& method,
                                 const std::string& payload,
                                 absl::Duration timeout = absl::Seconds(10)) {
  grpc::Slice slice(payload);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  absl::Mutex mu;
  std::optional<grpc::Status> status;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  sync::HandOff(&mu);  // the callback runs after the call starts
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    sync::TakeOver(&mu);
    absl::MutexLock lock(&mu);
    status = s;
  });
  absl::MutexLock lock(&mu);
  auto done = [&] { return status.has_value(); };
  mu.AwaitWithTimeout(absl::Condition(&done), timeout + absl::Seconds(5));
  return status.value_or(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no answer"));
}

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_RAW_CALL_H_
