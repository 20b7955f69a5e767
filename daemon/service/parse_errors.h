// ParseErrors: a server interceptor that answers a request whose bytes do not parse as its method's
// message with INVALID_ARGUMENT naming the message — what a caller can act on — instead of what
// gRPC gives by itself: INTERNAL "Unable to parse request" on the async API, UNIMPLEMENTED with an
// empty message on the callback API (gRPC 1.51). Methods that parse their own bytes (ResolveGroups)
// answer their own errors and are left alone.
//
// Thread-safety: the factory is shared by the server's threads; each interceptor is one call's.
#ifndef MESHD_DAEMON_SERVICE_PARSE_ERRORS_H_
#define MESHD_DAEMON_SERVICE_PARSE_ERRORS_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"

namespace meshd::service {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ParseErrorInterceptors();

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_PARSE_ERRORS_H_
