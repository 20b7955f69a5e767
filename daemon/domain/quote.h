// Quote: text a caller sent (a name, a key, a group) as error messages and logs show it — at most
// kQuotedBytes of it, so that no answer echoes what a request carried (a 6 MB group key echoed
// back once broke an agent's connection; a 7 MB job name in NOT_FOUND cost 0.43 s of CPU).
//
// Thread-safety: pure function.
#ifndef MESHD_DAEMON_DOMAIN_QUOTE_H_
#define MESHD_DAEMON_DOMAIN_QUOTE_H_

#include <cstddef>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace meshd::domain {

inline constexpr size_t kQuotedBytes = 64;

// "'text'" when it is at most kQuotedBytes long; else "'<its first kQuotedBytes bytes>...' (N
// bytes)", cut between characters. Bytes that are not UTF-8, and control characters, are shown
// as \xNN, so that the message itself is text (a proto string; a Python str) that no terminal
// takes for an escape.
std::string Quote(absl::string_view text);

// The first `max` of `texts` quoted, joined by ", ", then " and N more" for the rest:
// "'a', 'b' and 3 more".
template <typename Texts>
std::string QuoteList(const Texts& texts, size_t max = 4) {
  std::string out;
  size_t n = 0;
  for (const auto& text : texts) {
    if (n == max) {
      absl::StrAppend(&out, " and ", static_cast<size_t>(std::size(texts)) - max, " more");
      break;
    }
    absl::StrAppend(&out, n++ ? ", " : "", Quote(text));
  }
  return out;
}

}  // namespace meshd::domain

#endif  // MESHD_DAEMON_DOMAIN_QUOTE_H_
