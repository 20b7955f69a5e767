// EncodeResolveGroupsResponse (see group_ids_encoding.h). Protocol buffers' wire format: a field is
// a varint tag (number << 3 | wire type) followed, for length-delimited fields (type 2), by a
// varint length and the bytes. ResolveGroupsResponse: groups = 1 (GroupIds); GroupIds: key = 1
// (string), ids = 2 (repeated bytes).
#include "daemon/wire/group_ids_encoding.h"

#include <cstdint>
#include <cstring>
#include <string>

#include "grpcpp/support/slice.h"

namespace meshd::wire {
namespace {

constexpr uint8_t kLengthDelimited = 2;
constexpr uint8_t Tag(uint8_t field) { return static_cast<uint8_t>(field << 3 | kLengthDelimited); }
constexpr uint8_t kGroupsTag = Tag(1);  // ResolveGroupsResponse.groups
constexpr uint8_t kKeyTag = Tag(1);     // GroupIds.key
constexpr uint8_t kIdsTag = Tag(2);     // GroupIds.ids

size_t VarintSize(size_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

uint8_t* PutVarint(size_t v, uint8_t* out) {
  while (v >= 0x80) {
    *out++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *out++ = static_cast<uint8_t>(v);
  return out;
}

size_t FieldSize(size_t payload) { return 1 + VarintSize(payload) + payload; }

uint8_t* PutField(uint8_t tag, const std::string& bytes, uint8_t* out) {
  *out++ = tag;
  out = PutVarint(bytes.size(), out);
  std::memcpy(out, bytes.data(), bytes.size());
  return out + bytes.size();
}

// GroupIds' encoded size; protobuf leaves an empty key out.
size_t GroupSize(const domain::GroupIds& g) {
  size_t n = g.key.empty() ? 0 : FieldSize(g.key.size());
  for (const std::string& id : g.ids) n += FieldSize(id.size());
  return n;
}

}  // namespace

grpc::ByteBuffer EncodeResolveGroupsResponse(
    const std::vector<domain::SharedGroupIds>& groups) {
  std::vector<size_t> sizes;
  sizes.reserve(groups.size());
  size_t total = 0;
  for (const domain::SharedGroupIds& g : groups) {
    sizes.push_back(GroupSize(*g));
    total += FieldSize(sizes.back());
  }
  grpc::Slice slice(total);
  uint8_t* out = const_cast<uint8_t*>(slice.begin());  // a fresh slice, ours to fill
  for (size_t i = 0; i < groups.size(); ++i) {
    *out++ = kGroupsTag;
    out = PutVarint(sizes[i], out);
    if (!groups[i]->key.empty()) out = PutField(kKeyTag, groups[i]->key, out);
    for (const std::string& id : groups[i]->ids) out = PutField(kIdsTag, id, out);
  }
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace meshd::wire
