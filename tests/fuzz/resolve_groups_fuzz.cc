// Differential fuzzer: the hand-written ResolveGroupsRequest decoder (daemon/wire) against
// protobuf's own parser of the generated message. On every input both accept with the same values
// (every field, every rank, every group and minted id), or both refuse — and the decoder refuses
// with INVALID_ARGUMENT. Any difference aborts with both sides printed.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "daemon/domain/limits.h"
#include "daemon/wire/resolve_groups_decoding.h"
#include "google/protobuf/stubs/logging.h"
#include "meshd/v1/coordinator.pb.h"

namespace {

[[noreturn]] void Differ(const std::string& what, const std::string& bytes) {
  std::fprintf(stderr, "resolve_groups_fuzz: decoder and protobuf differ: %s\ninput (%zu bytes): %s\n",
               what.c_str(), bytes.size(), absl::CHexEscape(bytes.substr(0, 512)).c_str());
  std::abort();
}

template <typename A, typename B>
void Same(const A& decoder, const B& protobuf, const std::string& field, const std::string& bytes) {
  if (!(decoder == protobuf)) Differ(absl::StrCat(field, " differs"), bytes);
}

}  // namespace

// Protobuf logs every string field that is not UTF-8: millions of lines, nothing to learn.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  meshd::v1::ResolveGroupsRequest want;
  const bool protobuf_ok = want.ParseFromString(bytes);
  const absl::StatusOr<meshd::wire::ResolveGroupsCall> got =
      meshd::wire::DecodeResolveGroupsRequest(absl::string_view(bytes));
  // Past the per-request limits the decoder refuses what protobuf (without them) accepts.
  const bool over_limit =
      protobuf_ok && (static_cast<size_t>(want.ranks_size()) > meshd::domain::kMaxRanksPerRequest ||
                      static_cast<size_t>(want.groups_size()) > meshd::domain::kMaxGroupsPerRequest);
  if (over_limit) {
    if (got.ok()) Differ("past the limits, the decoder accepts", bytes);
    return 0;
  }
  if (got.ok() != protobuf_ok) {
    Differ(protobuf_ok ? "protobuf accepts, the decoder refuses: " + got.status().ToString()
                       : "protobuf refuses, the decoder accepts",
           bytes);
  }
  if (!got.ok()) {
    if (got.status().code() != absl::StatusCode::kInvalidArgument) {
      Differ("refused with another code than INVALID_ARGUMENT: " + got.status().ToString(), bytes);
    }
    return 0;
  }
  Same(got->job, want.job(), "job", bytes);
  Same(got->generation, want.generation(), "generation", bytes);
  Same(got->node, want.node(), "node", bytes);
  Same(got->mesh_key, want.mesh_key(), "mesh_key", bytes);
  Same(got->partial_after_ms, want.partial_after_ms(), "partial_after_ms", bytes);
  Same(got->ranks.size(), static_cast<size_t>(want.ranks_size()), "number of ranks", bytes);
  for (int i = 0; i < want.ranks_size(); ++i) {
    const auto& r = want.ranks(i);
    const std::string at = absl::StrCat("ranks[", i, "].");
    Same(got->ranks[i].rank, r.rank(), at + "rank", bytes);
    Same(got->ranks[i].fingerprint, r.spec().fingerprint(), at + "spec.fingerprint", bytes);
    Same(got->ranks[i].description, r.spec().description(), at + "spec.description", bytes);
  }
  Same(got->groups.size(), static_cast<size_t>(want.groups_size()), "number of groups", bytes);
  for (int i = 0; i < want.groups_size(); ++i) {
    const auto& g = want.groups(i);
    const std::string at = absl::StrCat("groups[", i, "].");
    Same(got->groups[i].key, g.key(), at + "key", bytes);
    Same(got->groups[i].num_ids, g.num_ids(), at + "num_ids", bytes);
    Same(got->groups[i].mint_error, g.mint_error(), at + "mint_error", bytes);
    Same(got->groups[i].minted.size(), static_cast<size_t>(g.minted_size()), at + "minted size",
         bytes);
    for (int k = 0; k < g.minted_size(); ++k) {
      Same(got->groups[i].minted[k].first, g.minted(k).index(), at + "minted.index", bytes);
      Same(got->groups[i].minted[k].second, g.minted(k).id(), at + "minted.id", bytes);
    }
  }
  return 0;
}
