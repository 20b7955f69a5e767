// BuildFloodRequests (see flood_requests.h).
#include "bench/sim/flood_requests.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"

namespace meshd::bench {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

// Room left under the limit for gRPC's own framing and our headers.
constexpr size_t kUnderLimit = 1024;
constexpr uint32_t kLengthDelimited = 2;

std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
std::string Tag(int field, uint32_t type) {
  return Varint((uint64_t{uint32_t(field)} << 3) | type);
}

// Fillers by content, shared by every body that uses one (a grpc::Slice is reference counted).
class Fillers {
 public:
  // `bytes` bytes of `unit` repeated.
  grpc::Slice Get(const std::string& unit, size_t bytes) {
    auto key = std::make_pair(unit, bytes);
    auto it = slices_.find(key);
    if (it != slices_.end()) return it->second;
    std::string s;
    s.reserve(bytes);
    while (s.size() + unit.size() <= bytes) s += unit;
    return slices_.emplace(key, grpc::Slice(s)).first->second;
  }

 private:
  std::map<std::pair<std::string, size_t>, grpc::Slice> slices_;
};

FloodRequest Body(const std::string& method, const std::string& kind,
                  std::vector<grpc::Slice> slices) {
  FloodRequest r{method, kind, grpc::ByteBuffer(slices.data(), slices.size()), 0};
  r.bytes = r.body.Length();
  return r;
}

// The first field of `d` that `pred` accepts, if any.
const FieldDescriptor* FirstField(const Descriptor* d, bool (*pred)(const FieldDescriptor*)) {
  for (int i = 0; i < d->field_count(); ++i) {
    if (pred(d->field(i))) return d->field(i);
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<std::vector<FloodRequest>> BuildFloodRequests(const std::string& service,
                                                             size_t max_receive_bytes) {
  const google::protobuf::ServiceDescriptor* sd =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
  if (sd == nullptr) return absl::NotFoundError(absl::StrCat("no service ", service));
  Fillers fill;
  const size_t under = max_receive_bytes - kUnderLimit;
  std::vector<FloodRequest> out;
  for (int m = 0; m < sd->method_count(); ++m) {
    const std::string method = absl::StrCat("/", service, "/", sd->method(m)->name());
    const Descriptor* in = sd->method(m)->input_type();
    // Malformed, each a way protobuf refuses.
    for (const std::string& bad : {std::string(10, '\xff') + "\x01",  // varint past ten bytes
                                   Tag(1, kLengthDelimited) + "\x7f" + "abc",  // past the end
                                   Tag(1, 4),  // end of group, no start
                                   Tag(1, kLengthDelimited) + "\x02\xc0\xc0"}) {  // bad UTF-8
      out.push_back(Body(method, "malformed", {grpc::Slice(bad)}));
    }
    // One huge string or bytes field (a name, a key, a value), just under the limit.
    const FieldDescriptor* text = FirstField(in, [](const FieldDescriptor* f) {
      return !f->is_repeated() && (f->type() == FieldDescriptor::TYPE_STRING ||
                                   f->type() == FieldDescriptor::TYPE_BYTES);
    });
    const int text_field = text != nullptr ? text->number() : 15;  // else an unknown field
    const size_t text_bytes = under - 16;
    out.push_back(Body(method, "huge_field",
                       {grpc::Slice(Tag(text_field, kLengthDelimited) + Varint(text_bytes)),
                        fill.Get("x", text_bytes)}));
    // Millions of empty entries of a repeated field (empty groups, running jobs, keys, ranks), or
    // of an unknown field where the request has none.
    const FieldDescriptor* list = FirstField(in, [](const FieldDescriptor* f) {
      return f->is_repeated() && (f->type() == FieldDescriptor::TYPE_MESSAGE ||
                                  f->type() == FieldDescriptor::TYPE_STRING);
    });
    const std::string entry =
        list != nullptr ? Tag(list->number(), kLengthDelimited) + '\0' : Tag(15, 0) + '\0';
    out.push_back(Body(method, "many_empty", {fill.Get(entry, under)}));
    // Past the limit: refused by gRPC before anything reads it.
    out.push_back(Body(method, "oversized", {fill.Get("x", max_receive_bytes + kUnderLimit)}));
  }
  return out;
}

}  // namespace meshd::bench
