// DecodeResolveGroupsRequest (see resolve_groups_decoding.h). Protocol buffers' wire format: a
// message is a sequence of fields, each a varint tag (field number << 3 | wire type) and a value:
// type 0 a varint, 1 eight bytes, 2 a varint length and that many bytes (strings, bytes, nested
// messages), 5 four bytes, 3/4 the start and end of a (deprecated) group of fields.
#include "daemon/wire/resolve_groups_decoding.h"

#include "absl/strings/str_cat.h"
#include "daemon/domain/limits.h"
#include "daemon/domain/utf8.h"

namespace meshd::wire {
namespace {

enum WireType : uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5
};
constexpr int kMaxGroupDepth = 100;  // protobuf's default recursion limit

// Reads fields from [p, end). Every read returns false on malformed or truncated input.
class Reader {
 public:
  explicit Reader(absl::string_view bytes)
      : p_(reinterpret_cast<const uint8_t*>(bytes.data())), end_(p_ + bytes.size()) {}

  bool done() const { return p_ == end_; }

  bool Varint(uint64_t* v) {
    uint64_t out = 0;
    for (int i = 0; i < 10; ++i) {
      if (p_ == end_) return false;
      const uint8_t b = *p_++;
      out |= static_cast<uint64_t>(b & 0x7F) << (7 * i);
      if (b < 0x80) {
        *v = out;
        return true;
      }
    }
    return false;  // more than ten bytes
  }

  // A tag: field number (never 0) and wire type. As protobuf reads one: at most five bytes, of
  // which the low 32 bits count (a fifth byte's bits past them are dropped, not refused).
  bool Tag(uint32_t* field, uint32_t* type) {
    uint64_t tag = 0;
    if (!ShortVarint(&tag)) return false;
    const auto low = static_cast<uint32_t>(tag);
    if ((low >> 3) == 0) return false;
    *field = low >> 3;
    *type = low & 7;
    return true;
  }

  // A length prefix, as protobuf reads one: at most five bytes and under 2 GiB (a longer
  // encoding of a small number, such as eight bytes of padding, is refused).
  bool Bytes(absl::string_view* out) {
    uint64_t n = 0;
    if (!ShortVarint(&n) || n > INT32_MAX || n > static_cast<uint64_t>(end_ - p_)) return false;
    *out = absl::string_view(reinterpret_cast<const char*>(p_), static_cast<size_t>(n));
    p_ += n;
    return true;
  }

  bool String(std::string* out) {
    absl::string_view s;
    if (!Bytes(&s) || !domain::IsUtf8(s)) return false;
    out->assign(s.data(), s.size());
    return true;
  }

  bool Uint32(uint32_t* out) {
    uint64_t v = 0;
    if (!Varint(&v)) return false;
    *out = static_cast<uint32_t>(v);  // protobuf keeps the low 32 bits
    return true;
  }

  // Skips the value of a field this reader does not know (or knows with another wire type).
  bool Skip(uint32_t field, uint32_t type, int depth = 0) {
    uint64_t v = 0;
    absl::string_view s;
    switch (type) {
      case kVarint:
        return Varint(&v);
      case kFixed64:
        return Advance(8);
      case kLengthDelimited:
        return Bytes(&s);
      case kFixed32:
        return Advance(4);
      case kStartGroup: {
        if (depth >= kMaxGroupDepth) return false;
        while (true) {
          uint32_t f = 0, t = 0;
          if (!Tag(&f, &t)) return false;
          if (t == kEndGroup) return f == field;
          if (!Skip(f, t, depth + 1)) return false;
        }
      }
      default:  // an end of group with no start, or wire types 6 and 7
        return false;
    }
  }

 private:
  // A varint of at most five bytes (35 bits): how protobuf reads tags and lengths.
  bool ShortVarint(uint64_t* v) {
    uint64_t out = 0;
    for (int i = 0; i < 5; ++i) {
      if (p_ == end_) return false;
      const uint8_t b = *p_++;
      out |= static_cast<uint64_t>(b & 0x7F) << (7 * i);
      if (b < 0x80) {
        *v = out;
        return true;
      }
    }
    return false;
  }

  bool Advance(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    p_ += n;
    return true;
  }

  const uint8_t* p_;
  const uint8_t* const end_;
};

// Reads one message's fields: `known(reader, field, type)` reads the fields it knows and returns
// true when it did (false: not one of its fields, or not with that wire type); every other field
// is skipped as protobuf skips unknown fields. `ok` is false on malformed input.
template <typename Known>
bool ReadFields(absl::string_view bytes, Known known) {
  Reader r(bytes);
  while (!r.done()) {
    uint32_t field = 0, type = 0;
    bool ok = true;
    if (!r.Tag(&field, &type) || (!known(r, field, type, ok) && !r.Skip(field, type)) || !ok) {
      return false;
    }
  }
  return true;
}

// Each Read* parses one message's fields into `out`, merging into what is there (as protobuf does
// when a singular submessage field repeats).
bool ReadMeshSpec(absl::string_view bytes, domain::RankSpec* out) {
  return ReadFields(bytes, [out](Reader& r, uint32_t field, uint32_t type, bool& ok) {
    if (type != kLengthDelimited || (field != 1 && field != 2)) return false;
    ok = r.String(field == 1 ? &out->fingerprint : &out->description);
    return true;
  });
}

bool ReadRankSpec(absl::string_view bytes, domain::RankSpec* out) {
  return ReadFields(bytes, [out](Reader& r, uint32_t field, uint32_t type, bool& ok) {
    absl::string_view spec;
    if (field == 1 && type == kVarint) {
      ok = r.Uint32(&out->rank);
    } else if (field == 2 && type == kLengthDelimited) {
      ok = r.Bytes(&spec) && ReadMeshSpec(spec, out);
    } else {
      return false;
    }
    return true;
  });
}

bool ReadMintedId(absl::string_view bytes, std::pair<uint32_t, std::string>* out) {
  return ReadFields(bytes, [out](Reader& r, uint32_t field, uint32_t type, bool& ok) {
    absl::string_view id;
    if (field == 1 && type == kVarint) {
      ok = r.Uint32(&out->first);
    } else if (field == 2 && type == kLengthDelimited) {
      ok = r.Bytes(&id);
      if (ok) out->second.assign(id.data(), id.size());
    } else {
      return false;
    }
    return true;
  });
}

bool ReadGroupRequest(absl::string_view bytes, domain::GroupRequest* out) {
  return ReadFields(bytes, [out](Reader& r, uint32_t field, uint32_t type, bool& ok) {
    absl::string_view minted;
    if (field == 1 && type == kLengthDelimited) {
      ok = r.String(&out->key);
    } else if (field == 2 && type == kVarint) {
      ok = r.Uint32(&out->num_ids);
    } else if (field == 3 && type == kLengthDelimited) {
      ok = r.Bytes(&minted) && ReadMintedId(minted, &out->minted.emplace_back());
    } else if (field == 4 && type == kLengthDelimited) {
      ok = r.String(&out->mint_error);
    } else {
      return false;
    }
    return true;
  });
}

// `over_limit` is set (and reading stops) at a rank or group past domain's per-request limits, so
// that a request's decoding costs no more than a legitimate one's: an 8 MiB body of four million
// empty groups took seconds and 413 MB to decode.
bool ReadRequest(absl::string_view bytes, ResolveGroupsCall* out, bool* over_limit) {
  return ReadFields(bytes, [out, over_limit](Reader& r, uint32_t field, uint32_t type, bool& ok) {
    absl::string_view nested;
    if (field == 2 && type == kVarint) {
      ok = r.Varint(&out->generation);
    } else if (field == 7 && type == kVarint) {
      ok = r.Uint32(&out->partial_after_ms);
    } else if (type != kLengthDelimited) {
      return false;
    } else if (field == 1) {
      ok = r.String(&out->job);
    } else if (field == 3) {
      ok = r.String(&out->node);
    } else if (field == 4) {
      ok = r.String(&out->mesh_key);
    } else if (field == 5) {
      if (out->ranks.size() == domain::kMaxRanksPerRequest) {
        *over_limit = true;
        ok = false;
        return true;
      }
      ok = r.Bytes(&nested) && ReadRankSpec(nested, &out->ranks.emplace_back());
    } else if (field == 6) {
      if (out->groups.size() == domain::kMaxGroupsPerRequest) {
        *over_limit = true;
        ok = false;
        return true;
      }
      domain::GroupRequest& g = out->groups.emplace_back();
      g.num_ids = 0;  // proto3: absent is zero
      ok = r.Bytes(&nested) && ReadGroupRequest(nested, &g);
    } else {
      return false;
    }
    return true;
  });
}

}  // namespace

absl::StatusOr<ResolveGroupsCall> DecodeResolveGroupsRequest(absl::string_view bytes) {
  ResolveGroupsCall call;
  call.ranks.reserve(8);    // a node's local ranks, typically
  call.groups.reserve(32);  // their groups: one per mesh dim and rank, shared ones once
  bool over_limit = false;
  if (!ReadRequest(bytes, &call, &over_limit)) {
    if (over_limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a ResolveGroupsRequest has at most ", domain::kMaxRanksPerRequest, " ranks and ",
          domain::kMaxGroupsPerRequest, " groups (one node's ranks and their groups): this one "
          "has more"));
    }
    return absl::InvalidArgumentError(
        "the ResolveGroupsRequest could not be parsed (malformed, or a string field that is not "
        "UTF-8): send a meshd.v1.ResolveGroupsRequest (see proto/meshd/v1)");
  }
  return call;
}

absl::StatusOr<ResolveGroupsCall> DecodeResolveGroupsRequest(const grpc::ByteBuffer& bytes) {
  std::vector<grpc::Slice> slices;
  if (!bytes.Dump(&slices).ok()) {
    return absl::InvalidArgumentError("the ResolveGroupsRequest could not be read");
  }
  if (slices.size() == 1) {
    return DecodeResolveGroupsRequest(absl::string_view(
        reinterpret_cast<const char*>(slices[0].begin()), slices[0].size()));
  }
  std::string flat;
  flat.reserve(bytes.Length());
  for (const grpc::Slice& s : slices) flat.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return DecodeResolveGroupsRequest(flat);
}

}  // namespace meshd::wire
