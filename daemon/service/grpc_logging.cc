// gRPC's log lines through meshd's logger (see grpc_logging.h).
#include "daemon/service/grpc_logging.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/log/log.h"
#include "grpc/support/log.h"

namespace meshd::service {
namespace {

void Forward(gpr_log_func_args* args) {
  const log::Level level = args->severity == GPR_LOG_SEVERITY_ERROR  ? log::Level::kError
                           : args->severity == GPR_LOG_SEVERITY_INFO ? log::Level::kInfo
                                                                     : log::Level::kDebug;
  log::Write(level, args->message != nullptr ? args->message : "",
             {{"source", "grpc"},
              {"at", absl::StrCat(args->file != nullptr ? args->file : "?", ":", args->line)}});
}

}  // namespace

void RouteGrpcLogsToMeshdLog() { gpr_set_log_function(Forward); }

}  // namespace meshd::service
