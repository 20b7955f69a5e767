// ParseBounded, Serialize (see bounded_request.h).
#include "daemon/service/bounded_request.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "grpcpp/support/proto_buffer_reader.h"

namespace meshd::service {

absl::Status ParseBounded(const grpc::ByteBuffer& bytes, size_t max_bytes, absl::string_view method,
                          google::protobuf::Message* out) {
  const size_t size = bytes.Length();
  if (size > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        method, " request of ", size, " bytes is larger than its limit of ", max_bytes));
  }
  grpc::ByteBuffer shared(bytes);  // the same slices, not copied
  grpc::ProtoBufferReader reader(&shared);
  if (!out->ParseFromZeroCopyStream(&reader)) {
    return absl::InvalidArgumentError(
        absl::StrCat(method, " request (", size, " bytes) is not a ", out->GetTypeName()));
  }
  return absl::OkStatus();
}

grpc::ByteBuffer Serialize(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace meshd::service
