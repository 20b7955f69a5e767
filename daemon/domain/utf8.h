// UTF-8 as protobuf's proto3 string fields take it (RFC 3629: no overlong forms, no surrogates,
// nothing past U+10FFFF): the keys, names and specs a peer sends must be, or the receiver's parser
// refuses the whole message.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_DOMAIN_UTF8_H_
#define MESHD_DAEMON_DOMAIN_UTF8_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace meshd::domain {

// The length of the well-formed character at s[i] (i < s.size()); 0 when the bytes there are not
// one.
size_t Utf8CharAt(absl::string_view s, size_t i);

// Whether all of `s` is well-formed (ASCII eight bytes at a time).
bool IsUtf8(absl::string_view s);

}  // namespace meshd::domain

#endif  // MESHD_DAEMON_DOMAIN_UTF8_H_
