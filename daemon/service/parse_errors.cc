// ParseErrors (see parse_errors.h).
#include "daemon/service/parse_errors.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "common/sync/handoff.h"
#include "google/protobuf/descriptor.h"

namespace meshd::service {
namespace {

using grpc::experimental::InterceptionHookPoints;

// The request message of `path` ("/meshd.v1.Coordinator/JoinJob"), or nullptr when the generated
// pool has no such method (an unknown method: gRPC's UNIMPLEMENTED is right for it).
const google::protobuf::Descriptor* RequestOf(absl::string_view path) {
  if (path.size() < 2 || path[0] != '/') return nullptr;
  const std::string full = absl::StrReplaceAll(path.substr(1), {{"/", "."}});
  const google::protobuf::MethodDescriptor* m =
      google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(full);
  return m == nullptr ? nullptr : m->input_type();
}

class ParseErrorInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit ParseErrorInterceptor(const google::protobuf::Descriptor* request)
      : request_(request) {
    sync::HandOff(this);  // gRPC runs its hooks, one after another, on any thread
  }
  ~ParseErrorInterceptor() override { sync::TakeOver(this); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    sync::TakeOver(this);
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparsed_ = true;
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      // Only a call whose request did not parse: a method this server does not serve (the
      // agent's health port asked for Attach) keeps gRPC's UNIMPLEMENTED.
      if (unparsed_ && !methods->GetSendStatus().ok()) {
        methods->ModifySendStatus(grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("the request is not a ", request_->full_name(),
                         ": its bytes do not parse (a client of another protocol, or a corrupted "
                         "message)")));
      }
    }
    sync::HandOff(this);
    methods->Proceed();
  }

 private:
  const google::protobuf::Descriptor* const request_;
  bool unparsed_ = false;
};

// Does nothing for a call whose method's request it does not know.
class PassThrough : public grpc::experimental::Interceptor {
 public:
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }
};

class Factory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const char* path = info->method();
    const google::protobuf::Descriptor* request = RequestOf(path == nullptr ? "" : path);
    if (request == nullptr) return new PassThrough();
    return new ParseErrorInterceptor(request);
  }
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ParseErrorInterceptors() {
  return std::make_unique<Factory>();
}

}  // namespace meshd::service
