// UTF-8 as proto3 strings take it, byte by byte and through the eight-byte ASCII path.
#include "daemon/domain/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace meshd::domain {
namespace {

TEST(Utf8, CharLengths) {
  EXPECT_EQ(Utf8CharAt("a", 0), 1u);
  EXPECT_EQ(Utf8CharAt("\xc3\xa9", 0), 2u);
  EXPECT_EQ(Utf8CharAt("\xe2\x82\xac", 0), 3u);
  EXPECT_EQ(Utf8CharAt("\xf0\x9f\x98\x80", 0), 4u);
  EXPECT_EQ(Utf8CharAt("\xf0\x9f\x98", 0), 0u);  // cut short
  EXPECT_EQ(Utf8CharAt("\x80", 0), 0u);
}

TEST(Utf8, BadBytesFoundBehindLongAsciiRuns) {
  const std::string ascii(37, 'k');
  EXPECT_TRUE(IsUtf8(ascii));
  EXPECT_TRUE(IsUtf8(ascii + "\xf4\x8f\xbf\xbf" + ascii));
  for (const std::string bad : {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc3"}) {
    EXPECT_FALSE(IsUtf8(ascii + bad + ascii)) << testing::PrintToString(bad);
    EXPECT_FALSE(IsUtf8(ascii + bad)) << testing::PrintToString(bad);
    EXPECT_FALSE(IsUtf8(bad + ascii)) << testing::PrintToString(bad);
  }
}

}  // namespace
}  // namespace meshd::domain
