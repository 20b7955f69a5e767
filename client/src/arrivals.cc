// Arrival keys and the search for the members that never arrived (see arrivals.h).
#include "client/src/arrivals.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/src/nccl_comm.h"

namespace meshd::client_internal {

std::string ArrivalKey(absl::string_view what, int64_t attempt, absl::string_view group_key,
                       int64_t rank) {
  std::string key = absl::StrCat("meshd/arrive/", what, "/", attempt, "/", group_key, "/", rank);
  if (key.size() <= kMaxStoreKey) return key;
  return absl::StrCat("meshd/arrive#/", what, "/", attempt, "/", StableHash(group_key), "/", rank);
}

std::string RankRanges(std::vector<int64_t> ranks, size_t max_ranges) {
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  std::string out;
  size_t ranges = 0;
  size_t i = 0;
  for (; i < ranks.size() && ranges < max_ranges; ++ranges) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    absl::StrAppend(&out, ranges ? ", " : "", ranks[i]);
    if (j > i) absl::StrAppend(&out, "-", ranks[j]);
    i = j + 1;
  }
  if (i < ranks.size()) absl::StrAppend(&out, " and ", ranks.size() - i, " more");
  return out;
}

Missing FindMissing(Client& client, const std::vector<int64_t>& ranks,
                    const std::function<std::string(int64_t)>& key_of, absl::Duration per_call,
                    int max_calls) {
  Missing out;
  int calls = 0;
  // Chunks still to look at, as [begin, end) into `ranks`; first the 1024-key chunks.
  std::vector<std::pair<size_t, size_t>> todo;
  for (size_t b = 0; b < ranks.size(); b += kMaxKeysPerCheck)
    todo.emplace_back(b, std::min(ranks.size(), b + kMaxKeysPerCheck));
  std::reverse(todo.begin(), todo.end());  // popped from the back: in rank order
  while (!todo.empty()) {
    auto [b, e] = todo.back();
    todo.pop_back();
    if (calls >= max_calls) {
      out.complete = false;
      break;
    }
    std::vector<std::string> keys;
    for (size_t i = b; i < e; ++i) keys.push_back(key_of(ranks[i]));
    ++calls;
    absl::StatusOr<bool> all = client.KeyCheck(keys, per_call);
    if (!all.ok()) {
      out.complete = false;
      break;
    }
    if (*all) continue;
    if (e - b == 1) {
      out.ranks.push_back(ranks[b]);
      continue;
    }
    const size_t mid = b + (e - b) / 2;
    todo.emplace_back(mid, e);
    todo.emplace_back(b, mid);
  }
  std::sort(out.ranks.begin(), out.ranks.end());
  return out;
}

std::string NeverArrived(const Missing& missing, size_t members) {
  if (missing.ranks.empty()) {
    return missing.complete
               ? absl::StrCat("all ", members,
                              " members arrived (NCCL's own init is what did "
                              "not finish: NCCL_DEBUG=INFO says why)")
               : "the search for who never arrived stopped before it could tell (a store "
                 "error, or past its budget of calls)";
  }
  return absl::StrCat(missing.complete ? "" : "at least ",
                      missing.ranks.size() == 1 ? "rank " : "ranks ", RankRanges(missing.ranks),
                      " (", missing.ranks.size(), " of ", members, ") never arrived");
}

}  // namespace meshd::client_internal
