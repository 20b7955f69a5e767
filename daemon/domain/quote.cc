// Quote (see quote.h).
#include "daemon/domain/quote.h"

#include "absl/strings/str_cat.h"

namespace meshd::domain {

std::string Quote(absl::string_view text) {
  if (text.size() <= kQuotedBytes) return absl::StrCat("'", text, "'");
  return absl::StrCat("'", text.substr(0, kQuotedBytes), "...' (", text.size(), " bytes)");
}

}  // namespace meshd::domain
