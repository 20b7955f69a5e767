// EncodeResolveGroupsResponse writes exactly what protobuf writes for the same message, and what
// it writes parses back: small and large keys, no ids, many ids (multi-byte lengths), no groups.
#include "daemon/wire/group_ids_encoding.h"

#include <string>
#include <vector>

#include "daemon/wire/convert.h"
#include "gtest/gtest.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::wire {
namespace {

using domain::GroupIds;
using domain::SharedGroupIds;

SharedGroupIds Group(std::string key, size_t ids, char fill) {
  std::vector<std::string> v;
  for (size_t i = 0; i < ids; ++i) v.push_back(std::string(128, static_cast<char>(fill + i % 7)));
  return std::make_shared<const GroupIds>(GroupIds{std::move(key), std::move(v)});
}

std::string Bytes(grpc::ByteBuffer buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

void ExpectSameAsProtobuf(const std::vector<SharedGroupIds>& groups) {
  v1::ResolveGroupsResponse expected;
  ToProto(groups, &expected);
  const std::string encoded = Bytes(EncodeResolveGroupsResponse(groups));
  EXPECT_EQ(encoded, expected.SerializeAsString());
  v1::ResolveGroupsResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(encoded));
  ASSERT_EQ(parsed.groups_size(), static_cast<int>(groups.size()));
  for (size_t i = 0; i < groups.size(); ++i) {
    EXPECT_EQ(parsed.groups(static_cast<int>(i)).key(), groups[i]->key);
    ASSERT_EQ(parsed.groups(static_cast<int>(i)).ids_size(),
              static_cast<int>(groups[i]->ids.size()));
    for (size_t j = 0; j < groups[i]->ids.size(); ++j) {
      EXPECT_EQ(parsed.groups(static_cast<int>(i)).ids(static_cast<int>(j)), groups[i]->ids[j]);
    }
  }
}

TEST(GroupIdsEncoding, TypicalGroups_SameAsProtobuf) {
  ExpectSameAsProtobuf({Group("tp/0", 1, 'a'), Group("dp/128", 1, 'b'), Group("world", 1, 'c')});
}

TEST(GroupIdsEncoding, NoGroups_Empty) {
  ExpectSameAsProtobuf({});
  EXPECT_EQ(Bytes(EncodeResolveGroupsResponse({})), "");
}

TEST(GroupIdsEncoding, LongKeyAndManyIds_MultiByteLengths) {
  // A 300-byte key (2-byte length) and 1,024 ids (a 3-byte group length).
  ExpectSameAsProtobuf({Group(std::string(300, 'k'), 1024, 'x'), Group("g", 2, 'y')});
}

TEST(GroupIdsEncoding, NoIdsOrEmptyKey_AsProtobufLeavesThem) {
  ExpectSameAsProtobuf({Group("nothing-yet", 0, 'a'), Group("", 1, 'b'), Group("", 0, 'c')});
}

}  // namespace
}  // namespace meshd::wire
