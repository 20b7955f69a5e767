// Arrival keys: before NCCL's init of a communicator (or a split of the world communicator), each
// member sets a key of its own in the generation's key-value store; when the init passes its
// deadline, the client checks which members' keys are missing and names those ranks, instead of
// NCCL's silent hang. Private to libmeshd_client; written against the public Client interface
// (KeySet, KeyCheck), so tests drive it with real clients.
//
// Keys (each at most kMaxStoreKey = 1024 bytes, the store's limit):
//   meshd/arrive/<what>/<attempt>/<group key>/<rank>      the group key verbatim when it fits,
//   meshd/arrive#/<what>/<attempt>/<hash>/<rank>          else its 16-hex-digit FNV-1a hash
// <what> is the mode (initrank, scalable) or "split"; <attempt> counts this client's attempts at
// that group and mode (splits: the world communicator's splits), the same on every rank that makes
// the same calls; <rank> is the job rank. One key per member per attempt, for the generation's
// life.
//
// Thread-safety: pure functions, and FindMissing uses only the (thread-safe) client.
#ifndef MESHD_CLIENT_SRC_ARRIVALS_H_
#define MESHD_CLIENT_SRC_ARRIVALS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "meshd/client.h"

namespace meshd::client_internal {

inline constexpr size_t kMaxStoreKey = 1024;
// KeyCheck takes at most this many keys per call.
inline constexpr size_t kMaxKeysPerCheck = 1024;

std::string ArrivalKey(absl::string_view what, int64_t attempt, absl::string_view group_key,
                       int64_t rank);

// Ranks as sorted ranges: "3, 5-9, 12"; past `max_ranges` ranges, " and N more ranks".
std::string RankRanges(std::vector<int64_t> ranks, size_t max_ranges = 16);

struct Missing {
  std::vector<int64_t> ranks;  // sorted
  bool complete = true;        // false: the search stopped at its call budget or a store error
};

// Which of `ranks` have not set key_of(rank): KeyCheck over chunks of up to 1024 keys, halving a
// chunk with a key missing until each missing one is found — about m·log2(n) calls for m missing
// of n, at most `max_calls`. Each call waits at most `per_call`.
Missing FindMissing(Client& client, const std::vector<int64_t>& ranks,
                    const std::function<std::string(int64_t)>& key_of, absl::Duration per_call,
                    int max_calls = 256);

// "ranks 3, 5-9 (6 of 16) never arrived", "rank 3 (1 of 2) never arrived", or, when none is
// missing, that every member arrived; "at least" when the search was incomplete.
std::string NeverArrived(const Missing& missing, size_t members);

}  // namespace meshd::client_internal

#endif  // MESHD_CLIENT_SRC_ARRIVALS_H_
