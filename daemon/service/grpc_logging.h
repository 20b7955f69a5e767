// gRPC's own log lines (connection failures, handshake errors, its warnings) through meshd's logger,
// so that every line a daemon writes has the same format (--log-format json included) and level
// filter. Which of them gRPC emits is still its GRPC_VERBOSITY (default ERROR) / GRPC_TRACE.
//
// Thread-safety: call once at start-up, after log::Init; the hook is thread-safe.
#ifndef MESHD_DAEMON_SERVICE_GRPC_LOGGING_H_
#define MESHD_DAEMON_SERVICE_GRPC_LOGGING_H_

namespace meshd::service {

void RouteGrpcLogsToMeshdLog();

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_GRPC_LOGGING_H_
