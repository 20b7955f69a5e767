// InterruptibleCall: registers one gRPC call's context with a meshd::Interrupter (see
// <meshd/client.h>) for as long as the call is in flight, so that Interrupt() cancels it.
// Private to libmeshd_client.
//
// Thread-safety: the Interrupter may interrupt from any thread while an InterruptibleCall lives;
// an InterruptibleCall itself belongs to the thread that makes the call.
#ifndef MESHD_CLIENT_SRC_INTERRUPTER_H_
#define MESHD_CLIENT_SRC_INTERRUPTER_H_

#include <cstdint>

#include "grpcpp/grpcpp.h"
#include "meshd/client.h"

namespace meshd::client_internal {

class InterruptibleCall {
 public:
  // `interrupter` may be null (the call cannot be interrupted); `ctx` must outlive this object.
  InterruptibleCall(Interrupter* interrupter, grpc::ClientContext* ctx);
  ~InterruptibleCall();
  InterruptibleCall(const InterruptibleCall&) = delete;
  InterruptibleCall& operator=(const InterruptibleCall&) = delete;

 private:
  Interrupter* const interrupter_;
  grpc::ClientContext* const ctx_;
};

// For waits that are not one gRPC call (a communicator's init, polled): whether the Interrupter
// fired since this object was made. `interrupter` may be null (never interrupted).
class InterruptWatch {
 public:
  explicit InterruptWatch(Interrupter* interrupter);
  bool interrupted() const;

 private:
  Interrupter* const interrupter_;
  uint64_t start_ = 0;
};

}  // namespace meshd::client_internal

#endif  // MESHD_CLIENT_SRC_INTERRUPTER_H_
