// A gRPC client context with a deadline, for tests that call a real server: every call a test makes
// ends, even against a server that never answers.
#ifndef MESHD_TESTS_SUPPORT_CLIENT_CONTEXT_H_
#define MESHD_TESTS_SUPPORT_CLIENT_CONTEXT_H_

#include <memory>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"

namespace meshd::testing {

inline std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration timeout = absl::Seconds(10)) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_CLIENT_CONTEXT_H_
