// DecodeResolveGroupsRequest against protobuf's own parser (and FromProto, which the coordinator
// used before): on a well-formed request, on the request with each of its bytes changed, cut at
// every length, and with hand-made oddities (unknown fields of every wire type, repeated singular
// fields, a submessage given twice, wrong wire types, bad UTF-8, over-long varints). For every
// input both accept it with the same values, or both refuse it.
#include "daemon/wire/resolve_groups_decoding.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/domain/limits.h"
#include "daemon/wire/convert.h"
#include "gtest/gtest.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::wire {
namespace {

v1::ResolveGroupsRequest Sample() {
  v1::ResolveGroupsRequest req;
  req.set_job("train-7b");
  req.set_generation(300);  // a two-byte varint
  req.set_node("node-00042");
  req.set_mesh_key("#0");
  for (uint32_t r = 0; r < 3; ++r) {
    auto* rank = req.add_ranks();
    rank->set_rank(336 + r);
    rank->mutable_spec()->set_fingerprint("meshd:v1:(dp=2,tp=8)");
    rank->mutable_spec()->set_description("DeviceMesh((dp=2, tp=8), ’cuda’)");  // non-ASCII
  }
  for (int g = 0; g < 3; ++g) {
    auto* group = req.add_groups();
    group->set_key(absl::StrCat("#0/tp/", g));
    group->set_num_ids(g + 1);
    auto* m = group->add_minted();
    m->set_index(static_cast<uint32_t>(g));
    m->set_id(std::string(128, static_cast<char>(0x80 + g)));  // bytes: any value
  }
  req.mutable_groups(1)->set_mint_error("no NCCL");
  req.set_partial_after_ms(250);
  return req;
}

// What the coordinator got before: protobuf's parse, converted.
struct Expected {
  bool ok = false;
  ResolveGroupsCall call;
};
Expected ByProtobuf(const std::string& bytes) {
  v1::ResolveGroupsRequest parsed;
  Expected e;
  e.ok = parsed.ParseFromString(bytes);
  if (!e.ok) return e;
  e.call.job = parsed.job();
  e.call.generation = parsed.generation();
  e.call.node = parsed.node();
  e.call.mesh_key = parsed.mesh_key();
  e.call.partial_after_ms = parsed.partial_after_ms();
  for (const auto& r : parsed.ranks()) {
    e.call.ranks.push_back({r.rank(), r.spec().fingerprint(), r.spec().description()});
  }
  for (const auto& g : parsed.groups()) e.call.groups.push_back(FromProto(g));
  return e;
}

void ExpectAsProtobuf(const std::string& bytes, const std::string& what) {
  SCOPED_TRACE(what);
  const Expected want = ByProtobuf(bytes);
  const absl::StatusOr<ResolveGroupsCall> got = DecodeResolveGroupsRequest(bytes);
  ASSERT_EQ(got.ok(), want.ok) << (got.ok() ? "accepted" : got.status().ToString());
  if (!got.ok()) {
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    return;
  }
  EXPECT_EQ(got->job, want.call.job);
  EXPECT_EQ(got->generation, want.call.generation);
  EXPECT_EQ(got->node, want.call.node);
  EXPECT_EQ(got->mesh_key, want.call.mesh_key);
  EXPECT_EQ(got->partial_after_ms, want.call.partial_after_ms);
  ASSERT_EQ(got->ranks.size(), want.call.ranks.size());
  for (size_t i = 0; i < got->ranks.size(); ++i) {
    EXPECT_EQ(got->ranks[i].rank, want.call.ranks[i].rank);
    EXPECT_EQ(got->ranks[i].fingerprint, want.call.ranks[i].fingerprint);
    EXPECT_EQ(got->ranks[i].description, want.call.ranks[i].description);
  }
  ASSERT_EQ(got->groups.size(), want.call.groups.size());
  for (size_t i = 0; i < got->groups.size(); ++i) {
    EXPECT_EQ(got->groups[i].key, want.call.groups[i].key);
    EXPECT_EQ(got->groups[i].num_ids, want.call.groups[i].num_ids);
    EXPECT_EQ(got->groups[i].minted, want.call.groups[i].minted);
    EXPECT_EQ(got->groups[i].mint_error, want.call.groups[i].mint_error);
  }
}

std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
std::string Tag(uint32_t field, uint32_t type) { return Varint(uint64_t{field} << 3 | type); }
std::string Len(uint32_t field, const std::string& bytes) {
  return Tag(field, 2) + Varint(bytes.size()) + bytes;
}

TEST(ResolveGroupsDecoding, WellFormed_SameValuesAsProtobuf) {
  ExpectAsProtobuf(Sample().SerializeAsString(), "sample");
  ExpectAsProtobuf("", "empty");
  v1::ResolveGroupsRequest big = Sample();
  big.set_generation(UINT64_MAX);
  big.mutable_ranks(0)->set_rank(UINT32_MAX);
  big.mutable_groups(0)->set_key(std::string(300, 'k'));  // a two-byte length
  ExpectAsProtobuf(big.SerializeAsString(), "extremes");
}

TEST(ResolveGroupsDecoding, EveryByteChanged_AgreesWithProtobuf) {
  const std::string good = Sample().SerializeAsString();
  std::mt19937 rng(42);
  for (size_t i = 0; i < good.size(); ++i) {
    for (int k = 0; k < 4; ++k) {
      std::string bad = good;
      bad[i] = static_cast<char>(k == 0 ? 0xFF : k == 1 ? 0x00 : rng());
      ExpectAsProtobuf(bad, absl::StrCat("byte ", i, " set to ", static_cast<int>(bad[i])));
      if (HasFatalFailure() || HasFailure()) return;
    }
  }
}

TEST(ResolveGroupsDecoding, CutAtEveryLength_AgreesWithProtobuf) {
  const std::string good = Sample().SerializeAsString();
  for (size_t n = 0; n < good.size(); ++n) {
    ExpectAsProtobuf(good.substr(0, n), absl::StrCat("first ", n, " bytes"));
    if (HasFailure()) return;
  }
}

TEST(ResolveGroupsDecoding, UnknownFieldsOfEveryWireType_Skipped) {
  const std::string good = Sample().SerializeAsString();
  const std::string unknown = Tag(99, 0) + Varint(12345) + Tag(98, 1) + std::string(8, 'x') +
                              Len(97, "opaque") + Tag(96, 5) + std::string(4, 'y') +
                              Tag(95, 3) + Tag(1, 0) + Varint(7) + Tag(2, 3) + Tag(2, 4) +
                              Tag(95, 4);
  ExpectAsProtobuf(unknown + good + unknown, "top level");
  // Inside a group request and a rank's spec too.
  const std::string group = Len(1, "#0/dp/0") + Tag(2, 0) + Varint(1) + unknown;
  const std::string spec = Len(1, "fp") + unknown + Len(2, "desc");
  const std::string rank = Tag(1, 0) + Varint(5) + Len(2, spec) + unknown;
  ExpectAsProtobuf(Len(6, group) + Len(5, rank), "nested");
}

TEST(ResolveGroupsDecoding, MalformedGroupsAndTags_RefusedLikeProtobuf) {
  ExpectAsProtobuf(Tag(95, 3) + Tag(1, 0) + Varint(7), "group never ended");
  ExpectAsProtobuf(Tag(95, 3) + Tag(94, 4), "group ended by another number");
  ExpectAsProtobuf(Tag(95, 4), "end of a group never started");
  ExpectAsProtobuf(Tag(1, 6) + "abcdefgh", "wire type 6");
  ExpectAsProtobuf(Tag(1, 7) + "abcdefgh", "wire type 7");
  ExpectAsProtobuf(std::string(1, '\0'), "tag 0");
  ExpectAsProtobuf(Tag(2, 0) + std::string(10, '\xFF') + "\x01", "varint of eleven bytes");
  ExpectAsProtobuf(Tag(2, 0) + std::string(9, '\xFF') + "\x01", "varint of ten bytes");
  ExpectAsProtobuf(Tag(2, 0) + std::string(9, '\xFF') + "\x7F", "ten bytes past 64 bits");
  ExpectAsProtobuf(Tag(1, 2) + Varint(uint64_t{1} << 40) + "abc", "length past the end");
  ExpectAsProtobuf(Varint(uint64_t{1} << 35 | 2) + Varint(0), "tag past 32 bits");
  std::string deep;
  for (int i = 0; i < 120; ++i) deep += Tag(90, 3);
  for (int i = 0; i < 120; ++i) deep += Tag(90, 4);
  ExpectAsProtobuf(deep, "groups nested 120 deep");
}

// Protobuf reads a tag as at most five bytes and keeps their low 32 bits, and a length prefix as
// at most five bytes: the decoder refused the first and accepted eight-byte lengths.
TEST(ResolveGroupsDecoding, TagsAndLengthsOfFiveBytesOrMore_AsProtobuf) {
  // Field 1 (job), wire type 2, with bit 33 set in the fifth byte: protobuf drops it.
  const std::string wide_tag = Varint(uint64_t{1} << 33 | (1 << 3 | 2));
  ASSERT_EQ(wide_tag.size(), 5u);
  ExpectAsProtobuf(wide_tag + Varint(3) + "abc", "five-byte tag past 32 bits");
  ExpectAsProtobuf(Varint(uint64_t{1} << 32 | (2 << 3)) + Varint(7), "five-byte tag, generation");
  ExpectAsProtobuf(Varint(uint64_t{1} << 32) + Varint(7), "five-byte tag whose low bits are 0");
  ExpectAsProtobuf(Len(5, Varint(uint64_t{1} << 34 | (1 << 3)) + Varint(9)),
                   "five-byte tag in a rank");
  ExpectAsProtobuf(std::string("\x8A\x80\x80\x80\x80\x00", 6) + "abc", "six-byte tag");
  const std::string padded5("\x83\x80\x80\x80\x00", 5);
  const std::string padded6("\x83\x80\x80\x80\x80\x00", 6);
  const std::string padded8("\x83\x80\x80\x80\x80\x80\x80\x00", 8);
  ExpectAsProtobuf(Tag(1, 2) + padded5 + "abc", "length of five bytes");
  ExpectAsProtobuf(Tag(1, 2) + padded6 + "abc", "length of six bytes");
  ExpectAsProtobuf(Tag(1, 2) + padded8 + "abc", "length of eight bytes");
  ExpectAsProtobuf(Tag(97, 2) + padded8 + "abc", "unknown field, length of eight bytes");
  ExpectAsProtobuf(Len(6, Tag(3, 2) + padded8 + "abc"), "minted id, length of eight bytes");
  ExpectAsProtobuf(Tag(1, 2) + Varint(uint64_t{1} << 31) + "abc", "length of 2 GiB");
  // A tag's fifth byte with its continuation bit set: six bytes or more.
  ExpectAsProtobuf(std::string("\x8A\x80\x80\x80\x90\x00", 6), "tag continued past five bytes");
}

TEST(ResolveGroupsDecoding, RepeatedSingularFields_LastWinsAndSubmessagesMerge) {
  const std::string spec1 = Len(1, "first-fp") + Len(2, "first-desc");
  const std::string spec2 = Len(1, "second-fp");
  const std::string rank = Tag(1, 0) + Varint(3) + Len(2, spec1) + Tag(1, 0) + Varint(4) +
                           Len(2, spec2);
  ExpectAsProtobuf(Len(1, "job-a") + Len(1, "job-b") + Tag(2, 0) + Varint(1) + Tag(2, 0) +
                       Varint(2) + Len(5, rank),
                   "repeats");
  // A known field with the wrong wire type is an unknown field.
  ExpectAsProtobuf(Tag(1, 0) + Varint(5) + Len(2, "x") + Len(3, "node"), "wrong wire types");
  // A uint32 given more than 32 bits keeps the low ones.
  ExpectAsProtobuf(Len(5, Tag(1, 0) + Varint(uint64_t{1} << 33 | 9)), "wide uint32");
  ExpectAsProtobuf(Tag(7, 0) + Varint(uint64_t{1} << 40 | 250) + Tag(7, 0) + Varint(300),
                   "partial_after_ms: wide, then repeated");
  ExpectAsProtobuf(Len(7, "250"), "partial_after_ms with the wrong wire type");
}

TEST(ResolveGroupsDecoding, InvalidUtf8InAnyStringField_Refused) {
  const std::vector<std::string> bad = {
      "\xC0\xAF",          // overlong
      "\xE0\x80\xAF",      // overlong
      "\xED\xA0\x80",      // a surrogate
      "\xF4\x90\x80\x80",  // past U+10FFFF
      "\xF5\x80\x80\x80",  // never valid
      "\x80",              // a continuation alone
      "ab\xE2\x82",        // cut short
      "\xC3",              // cut short
      "0123456789\xED\xA0\x80" "abcdefgh",  // a surrogate after eight ASCII bytes
      "abcdefgh01234567\xC3",            // cut short after sixteen
  };
  const std::vector<std::string> good = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
                                         "\xEF\xBF\xBF", "\xF4\x8F\xBF\xBF",
                                         "0123456789\xE2\x82\xAC" "abcdefghij"};
  for (const std::vector<std::string>* set : {&bad, &good}) {
    for (const std::string& s : *set) {
      ExpectAsProtobuf(Len(1, s), "job");
      ExpectAsProtobuf(Len(3, s), "node");
      ExpectAsProtobuf(Len(4, s), "mesh key");
      ExpectAsProtobuf(Len(5, Len(2, Len(1, s))), "fingerprint");
      ExpectAsProtobuf(Len(5, Len(2, Len(2, s))), "description");
      ExpectAsProtobuf(Len(6, Len(1, s)), "group key");
      ExpectAsProtobuf(Len(6, Len(4, s)), "mint error");
      ExpectAsProtobuf(Len(6, Len(3, Len(2, s))), "minted id (bytes: any value)");
    }
  }
}

TEST(ResolveGroupsDecoding, ByteBufferOfManySlices_SameAsOne) {
  const std::string bytes = Sample().SerializeAsString();
  std::vector<grpc::Slice> slices;
  for (size_t i = 0; i < bytes.size(); i += 7) slices.emplace_back(bytes.substr(i, 7));
  const grpc::ByteBuffer buffer(slices.data(), slices.size());
  absl::StatusOr<ResolveGroupsCall> got = DecodeResolveGroupsRequest(buffer);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->ranks.size(), 3u);
  EXPECT_EQ(got->ranks[2].rank, 338u);
  EXPECT_EQ(got->groups[1].mint_error, "no NCCL");
  EXPECT_EQ(got->groups[2].minted[0].second, std::string(128, static_cast<char>(0x82)));
}

}  // namespace
}  // namespace meshd::wire

namespace meshd::wire {
namespace {

// One node's request holds its ranks (at most its local world) and their groups: more is refused
// while decoding, before it is all built (four million empty groups in 8 MiB took seconds and
// 413 MB). At the limits it decodes.
TEST(ResolveGroupsDecoding, PastThePerRequestLimits_RefusedWhileDecoding) {
  v1::ResolveGroupsRequest req;
  req.set_job("job");
  for (size_t i = 0; i < domain::kMaxGroupsPerRequest; ++i) req.add_groups();
  EXPECT_TRUE(DecodeResolveGroupsRequest(req.SerializeAsString()).ok());
  req.add_groups();
  absl::StatusOr<ResolveGroupsCall> over = DecodeResolveGroupsRequest(req.SerializeAsString());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(over.status().message().find("at most"), absl::string_view::npos) << over.status();

  v1::ResolveGroupsRequest ranks;
  for (size_t i = 0; i <= domain::kMaxRanksPerRequest; ++i) ranks.add_ranks()->set_rank(i);
  EXPECT_EQ(DecodeResolveGroupsRequest(ranks.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace meshd::wire
