// views_worker: a test worker on libmeshd_client that the mesh-view integration tests drive one
// command at a time (stdin), answering each with one JSON line (stdout):
//   init SHAPE NAMES [MESH_NAME]        InitDeviceMesh, e.g. "init 2,2 dp,tp"
//   init_ranks SHAPE RANKS NAMES        InitDeviceMeshFromRanks, e.g. "init_ranks 2,2 3,1,0,2 a,b"
//   groups VIEW                         Groups() of a view of the last mesh made, VIEW one of
//                                       root | slice:N1,N2 | flatten:N1,N2:NAME |
//                                       refold:S1,S2:N1,N2 (the root flattened whole, then
//                                       unflattened into sizes S with names N)
// Answers {"ok":true,"coordinate":[...]|null,"groups":[{"key","dims","ranks","id"}]} or
// {"ok":false,"code","message"}. Attach options come from the environment (MESHD_SOCKET,
// MESHD_JOB, LOCAL_RANK, LOCAL_WORLD_SIZE, MESHD_NNODES).
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "meshd/client.h"
#include "nlohmann/json.hpp"

namespace {

using json = nlohmann::ordered_json;

std::vector<int64_t> Ints(const std::string& csv) {
  std::vector<int64_t> out;
  for (absl::string_view p : absl::StrSplit(csv, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (absl::SimpleAtoi(p, &v)) out.push_back(v);
  }
  return out;
}

std::vector<std::string> Names(const std::string& csv) {
  if (csv == "-") return {};
  return absl::StrSplit(csv, ',', absl::SkipEmpty());
}

json Error(const absl::Status& s) {
  return json{{"ok", false}, {"code", absl::StatusCodeToString(s.code())},
              {"message", std::string(s.message())}};
}

json Groups(const std::vector<meshd::Group>& groups) {
  json out = json::array();
  for (const meshd::Group& g : groups) {
    std::string id;
    for (uint8_t b : g.ids.empty() ? meshd::NcclUniqueId{} : g.ids[0]) {
      absl::StrAppend(&id, absl::Hex(b, absl::kZeroPad2));
    }
    out.push_back(json{{"key", g.key}, {"dims", g.dims}, {"ranks", g.ranks}, {"id", id}});
  }
  return out;
}

json Answer(meshd::Client& client, const meshd::DeviceMesh& mesh) {
  absl::StatusOr<std::vector<meshd::Group>> groups = client.Groups(mesh);
  if (!groups.ok()) return Error(groups.status());
  json j{{"ok", true}};
  const auto coordinate = mesh.coordinate();
  j["coordinate"] = coordinate ? json(*coordinate) : json(nullptr);
  j["groups"] = Groups(*groups);
  return j;
}

absl::StatusOr<meshd::DeviceMesh> View(const meshd::DeviceMesh& root, const std::string& spec) {
  if (spec == "root") return root;
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  if (parts[0] == "slice" && parts.size() == 2) return root.Slice(Names(parts[1]));
  if (parts[0] == "flatten" && parts.size() == 3) {
    absl::StatusOr<meshd::DeviceMesh> s = root.Slice(Names(parts[1]));
    if (!s.ok()) return s.status();
    return s->Flatten(parts[2]);
  }
  if (parts[0] == "refold" && parts.size() == 3) {
    absl::StatusOr<meshd::DeviceMesh> flat = root.Flatten();
    if (!flat.ok()) return flat.status();
    return flat->Unflatten(0, Ints(parts[1]), Names(parts[2]));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown view '", spec, "'"));
}

}  // namespace

int main() {
  absl::StatusOr<std::unique_ptr<meshd::Client>> client = meshd::Client::Attach({});
  if (!client.ok()) {
    std::cout << Error(client.status()).dump() << std::endl;
    return 1;
  }
  std::cout << json{{"ok", true}, {"rank", (*client)->placement().rank}}.dump() << std::endl;
  std::optional<meshd::DeviceMesh> root;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    json out;
    if (w.size() >= 3 && w[0] == "init") {
      auto m = (*client)->InitDeviceMesh(Ints(w[1]), Names(w[2]), w.size() > 3 ? w[3] : "");
      out = m.ok() ? Answer(**client, *(root = *m)) : Error(m.status());
    } else if (w.size() == 4 && w[0] == "init_ranks") {
      auto m = (*client)->InitDeviceMeshFromRanks(Ints(w[1]), Ints(w[2]), Names(w[3]));
      out = m.ok() ? Answer(**client, *(root = *m)) : Error(m.status());
    } else if (w.size() == 2 && w[0] == "groups" && root) {
      auto v = View(*root, w[1]);
      out = v.ok() ? Answer(**client, *v) : Error(v.status());
    } else {
      out = Error(absl::InvalidArgumentError(absl::StrCat("bad command '", line, "'")));
    }
    std::cout << out.dump() << std::endl;
  }
  return 0;
}
