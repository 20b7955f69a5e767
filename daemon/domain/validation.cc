// Request validation (see validation.h).
#include "daemon/domain/validation.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "daemon/domain/quote.h"
#include "daemon/domain/utf8.h"

namespace meshd::domain {
namespace {

std::string Shown(absl::string_view s) { return Quote(s); }

// Optional text a node reports about itself, at most `max` bytes.
absl::Status ValidateField(absl::string_view node, absl::string_view what,
                           absl::string_view value, size_t max) {
  if (value.size() <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("node '", node, "': ", what, " ", Shown(value),
                                                 " is longer than ", max, " bytes"));
}

}  // namespace

absl::Status ValidateName(absl::string_view what, absl::string_view name, size_t max_bytes) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " name is empty"));
  if (name.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " name ", Shown(name), " is longer than ", max_bytes, " characters"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(what, " name ", Shown(name),
                                                     " may only hold letters, digits, '.', '_' "
                                                     "and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateInventory(const NodeInventory& inv, uint32_t max_gpus) {
  if (absl::Status s = ValidateName("node", inv.node, kMaxNodeNameBytes); !s.ok()) return s;
  if (inv.hostname.size() > kMaxNodeNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("hostname ", Shown(inv.hostname), " is too long"));
  }
  if (absl::Status s = ValidateField(inv.node, "agent address", inv.agent_address,
                                     kMaxAddressBytes);
      !s.ok()) {
    return s;
  }
  if (inv.incarnation == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node '", inv.node, "': incarnation must be non-zero (a per-start random id)"));
  }
  if (inv.gpus.size() > max_gpus) {
    return absl::InvalidArgumentError(absl::StrCat("node '", inv.node, "' reports ",
                                                   inv.gpus.size(), " GPUs; at most ", max_gpus,
                                                   " are accepted"));
  }
  std::set<std::string> uuids;
  std::set<uint32_t> indices;
  for (const Gpu& g : inv.gpus) {
    if (g.uuid.empty() || g.uuid.size() > 128) {
      return absl::InvalidArgumentError(absl::StrCat("node '", inv.node, "': GPU ", g.index,
                                                     " needs a UUID of 1-128 characters"));
    }
    for (const auto& [what, value] : {std::pair<const char*, const std::string*>{
                                          "GPU PCI bus id", &g.pci_bus_id},
                                      {"GPU name", &g.name},
                                      {"GPU NVLink clique", &g.nvlink_clique}}) {
      if (absl::Status s = ValidateField(inv.node, what, *value, kMaxGpuFieldBytes); !s.ok()) {
        return s;
      }
    }
    if (!uuids.insert(g.uuid).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("node '", inv.node, "' lists GPU ", g.uuid, " twice"));
    }
    if (!indices.insert(g.index).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("node '", inv.node, "' lists GPU index ", g.index, " twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateNodeCount(const NodeCount& c, uint32_t max_nodes) {
  if (c.min_nodes < 1 || c.max_nodes < c.min_nodes || c.max_nodes > max_nodes) {
    return absl::InvalidArgumentError(
        absl::StrCat("node count ", c.min_nodes, ":", c.max_nodes,
                     " is invalid; need 1 <= min <= max <= ", max_nodes));
  }
  if (c.last_call < absl::ZeroDuration() || c.last_call > absl::Hours(1)) {
    return absl::InvalidArgumentError("last call window must be between 0 and 1 hour");
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(absl::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("key ", Shown(key), " must be 1-", kMaxKeyBytes, " bytes"));
  }
  if (!IsUtf8(key)) {
    return absl::InvalidArgumentError(
        absl::StrCat("key ", Shown(key), " is not UTF-8 text (keys are strings; values may be any "
                     "bytes)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateKeys(const std::vector<std::string>& keys) {
  if (keys.empty() || keys.size() > kMaxWaitKeys) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a wait or check names 1-", kMaxWaitKeys, " keys, not ", keys.size()));
  }
  for (const std::string& k : keys) {
    if (absl::Status s = ValidateKey(k); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateValue(absl::string_view value) {
  if (value.size() > kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("value of ", value.size(),
                                                   " bytes is larger than the limit of ",
                                                   kMaxValueBytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateCompareSet(absl::string_view expected, absl::string_view desired) {
  if (expected.size() + desired.size() > kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a compare-set's expected and desired values of ", expected.size(), " + ", desired.size(),
        " bytes are together larger than the limit of ", kMaxValueBytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateRunningJobs(const std::vector<RunningJob>& running, uint32_t max_nodes) {
  for (const RunningJob& r : running) {
    absl::Status s = ValidateName("job", r.job, kMaxJobNameBytes);
    if (s.ok()) s = ValidateNodeCount(r.nodes, max_nodes);
    if (!s.ok()) return s;
    if (r.generation < 1 || r.num_nodes < r.nodes.min_nodes || r.num_nodes > r.nodes.max_nodes ||
        r.node_rank >= r.num_nodes || r.local_world < 1 || r.local_world > kMaxLocalWorld) {
      return absl::InvalidArgumentError(absl::StrCat(
          "running job '", r.job, "': generation ", r.generation, ", node rank ", r.node_rank,
          " of ", r.num_nodes, " nodes (job size ", r.nodes.min_nodes, ":", r.nodes.max_nodes,
          ") of ", r.local_world, " workers is not a generation a round could have closed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace meshd::domain
