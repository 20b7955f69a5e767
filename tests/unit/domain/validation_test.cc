// The store's key rule: 1-1024 bytes of well-formed UTF-8 (the protocol's keys are proto strings,
// which a receiver refuses to parse otherwise); values are any bytes up to 4 MiB.
#include "daemon/domain/validation.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/domain/quote.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshd::domain {
namespace {

using ::testing::HasSubstr;

TEST(ValidateKey, WellFormedUtf8_Accepted) {
  for (const std::string key : {"a", "default_pg/0//cuda//0", "\xc3\xa9t\xc3\xa9",  // été
                                "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
                                "\xed\x9f\xbf"}) {  // €, 😀, U+10FFFF, U+D7FF
    EXPECT_TRUE(ValidateKey(key).ok()) << key;
  }
  EXPECT_TRUE(ValidateKey(std::string(kMaxKeyBytes, 'k')).ok());
}

TEST(ValidateKey, NotUtf8_InvalidArgumentSayingSo) {
  for (const std::string key : {
           "\xff",                  // never in UTF-8
           "a\x80",                 // a continuation byte alone
           "\xc3",                  // cut short
           "\xe2\x82",              // cut short
           "\xc0\x80",              // overlong NUL
           "\xe0\x80\xaf",          // overlong '/'
           "\xf0\x80\x80\xaf",      // overlong '/'
           "\xed\xa0\x80",          // a surrogate (U+D800)
           "\xf4\x90\x80\x80",      // past U+10FFFF
           "\xf5\x80\x80\x80",      // no such lead byte
           "\xc3\x28",              // a lead byte followed by ASCII
       }) {
    const absl::Status s = ValidateKey(key);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << testing::PrintToString(key);
    EXPECT_THAT(std::string(s.message()), HasSubstr("not UTF-8"));
  }
}

TEST(ValidateKey, EmptyOrTooLong_InvalidArgumentWithTheLimit) {
  EXPECT_THAT(std::string(ValidateKey("").message()), HasSubstr("must be 1-1024 bytes"));
  EXPECT_EQ(ValidateKey(std::string(kMaxKeyBytes + 1, 'k')).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidateValue, AnyBytesUpToTheLimit) {
  EXPECT_TRUE(ValidateValue(std::string("\xff\x00\xc0", 3)).ok());
  EXPECT_TRUE(ValidateValue(std::string(kMaxValueBytes, 'v')).ok());
  const absl::Status s = ValidateValue(std::string(kMaxValueBytes + 1, 'v'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("larger than the limit of 4194304"));
}

TEST(ValidateCompareSet, BothValuesTogetherWithinTheLimit) {
  EXPECT_TRUE(ValidateCompareSet(std::string(kMaxValueBytes / 2, 'e'),
                                 std::string(kMaxValueBytes / 2, 'd'))
                  .ok());
  const absl::Status s = ValidateCompareSet(std::string(3 << 20, 'e'), std::string(3 << 20, 'd'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("together larger than the limit of 4194304"));
}

// What a message quotes is text: cut between characters, other bytes escaped.
TEST(Quote, CutBetweenCharacters_BytesThatAreNotUtf8Escaped) {
  EXPECT_EQ(Quote("k"), "'k'");
  EXPECT_EQ(Quote("a\xff\xc3"), "'a\\xff\\xc3'");
  EXPECT_EQ(Quote("a\nb\x1b[31m\x7f"), "'a\\x0ab\\x1b[31m\\x7f'");  // no terminal escapes
  std::string key(63, 'k');
  key += "\xc3\xa9tail";  // "é" across the 64-byte cut
  EXPECT_EQ(Quote(key), absl::StrCat("'", std::string(63, 'k'), "...' (69 bytes)"));
  EXPECT_EQ(Quote(std::string(64, 'k')), absl::StrCat("'", std::string(64, 'k'), "'"));
}

}  // namespace
}  // namespace meshd::domain
