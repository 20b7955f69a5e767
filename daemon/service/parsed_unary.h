// ParsedUnaryCall: one call of an async unary method whose request the service parses itself —
// gRPC hands over the raw bytes, the call refuses more than the method's limit before decoding a
// byte and bytes that are not the method's message, both INVALID_ARGUMENT naming the method (gRPC's
// own parse answers INTERNAL "Unable to parse request", and decodes up to the server's 8 MiB
// whatever the method). Otherwise as AsyncUnaryCall: the handler sees the typed request and fills
// the typed response, which is serialized when it replies.
//
// Thread-safety: as AsyncUnaryCall.
#ifndef MESHD_DAEMON_SERVICE_PARSED_UNARY_H_
#define MESHD_DAEMON_SERVICE_PARSED_UNARY_H_

#include <cstddef>
#include <functional>

#include "daemon/service/async_unary.h"
#include "daemon/service/bounded_request.h"
#include "daemon/wire/convert.h"
#include "grpcpp/support/byte_buffer.h"

namespace meshd::service {

template <typename Request, typename Response>
class ParsedUnaryCall final : public AsyncTag {
 public:
  using Reply = std::function<void(const grpc::Status&)>;
  struct Method {
    // The generated Request<Method> of the service's raw method, bound to it.
    std::function<void(grpc::ServerContext*, grpc::ByteBuffer*,
                       grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>*, grpc::CompletionQueue*,
                       grpc::ServerCompletionQueue*, void*)>
        request;
    // Fills the response, then replies (now or later, from any thread; exactly once).
    std::function<void(grpc::ServerContext*, const Request&, Response*, Reply)> handle;
    const char* name = "";  // the method's, for errors
    size_t max_bytes = 0;   // the largest request it parses
  };

  static void Await(const Method* method, AsyncQueues* queues) {
    auto* call = new ParsedUnaryCall(method, queues);
    method->request(&call->ctx_, &call->bytes_, &call->writer_, call->queue_,
                    queues->arrivals(Lane::kShared), call);
  }

  void Proceed(bool ok) override {
    if (!ok || started_) {
      delete this;
      return;
    }
    started_ = true;
    Await(method_, queues_);
    const absl::Status parsed = ParseBounded(bytes_, method_->max_bytes, method_->name, &request_);
    bytes_.Clear();
    if (!parsed.ok()) return writer_.FinishWithError(wire::ToGrpc(parsed), this);
    method_->handle(&ctx_, request_, &response_, [this](const grpc::Status& s) {
      if (s.ok()) {
        writer_.Finish(Serialize(response_), s, this);
      } else {
        writer_.FinishWithError(s, this);
      }
    });
  }

 private:
  ParsedUnaryCall(const Method* method, AsyncQueues* queues)
      : method_(method), queues_(queues), queue_(queues->Add(Lane::kShared)), writer_(&ctx_) {}
  ~ParsedUnaryCall() override { queues_->Remove(Lane::kShared); }

  const Method* const method_;
  AsyncQueues* const queues_;
  grpc::CompletionQueue* const queue_;  // the call's, from Add()
  grpc::ServerContext ctx_;
  grpc::ByteBuffer bytes_;
  Request request_;
  Response response_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> writer_;
  bool started_ = false;
};

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_PARSED_UNARY_H_
