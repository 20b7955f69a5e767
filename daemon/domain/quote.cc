// Quote (see quote.h).
#include "daemon/domain/quote.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/domain/utf8.h"

namespace meshd::domain {

std::string Quote(absl::string_view text) {
  std::string out = "'";
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = Utf8CharAt(text, i);
    if (i + std::max<size_t>(n, 1) > kQuotedBytes) break;
    const auto c = static_cast<unsigned char>(text[i]);
    if (n == 0 || c < 0x20 || c == 0x7f) {  // not UTF-8, or a control character (1 byte)
      absl::StrAppendFormat(&out, "\\x%02x", c);
      ++i;
    } else {
      out.append(text.data() + i, n);
      i += n;
    }
  }
  if (i == text.size()) return absl::StrCat(out, "'");
  return absl::StrCat(out, "...' (", text.size(), " bytes)");
}

}  // namespace meshd::domain
