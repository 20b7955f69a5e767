// NodeRegistry (see node_registry.h).
#include "daemon/coordinator/node_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/topology/rank_order.h"
#include "daemon/domain/quote.h"

namespace meshd::coordinator {
namespace {

// The heartbeat rate one node told `t` makes.
double Hz(const HeartbeatTiming& t) {
  return t.interval > absl::ZeroDuration() ? 1 / absl::ToDoubleSeconds(t.interval) : 0;
}

}  // namespace

NodeRegistry::NodeRegistry(const Clock* clock, Options options)
    : clock_(clock), options_(options) {}

absl::Status NodeRegistry::CheckGpus(const NodeInventory& inv) const {
  for (const Gpu& g : inv.gpus) {
    auto owner = gpu_owner_.find(g.uuid);
    if (owner != gpu_owner_.end() && owner->second != inv.node && nodes_.at(owner->second)->alive) {
      return absl::AlreadyExistsError(absl::StrCat(
          "GPU ", g.uuid, " is already registered by live node '", owner->second, "'; node '",
          inv.node, "' cannot claim it (two agents on one host, or a copied node name?)"));
    }
  }
  return absl::OkStatus();
}

namespace {

// Whether `caller` proves it is `name`: a certificate naming it, or — for a caller without a
// certificate — the node's current secret. A certificate naming another node proves nothing,
// whatever secret comes with it: with TLS a node is who its certificate says.
bool Proves(const Caller& caller, const std::string& name, const NodeRegistry::Node& node) {
  if (!caller.certified_nodes.empty()) return caller.Certifies(name);
  return caller.node == name && SameSecret(caller.secret, node.secret);
}

}  // namespace

absl::Status NodeRegistry::Authenticate(const Caller& caller, const std::string& name) const {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(
        absl::StrCat("node '", name.substr(0, 64), "' is not registered; register first"));
  }
  if (Proves(caller, name, *it->second)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "this call acts for node '", name,
      "', but its sender is not authenticated as that node: an agent presents the secret its "
      "registration returned (metadata ",
      domain::kNodeSecretMetadata, ") or a TLS client certificate naming the node"));
}

absl::Status NodeRegistry::MayRegister(const Caller& caller, const std::string& name) const {
  if (!caller.certified_nodes.empty() && !caller.Certifies(name)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "this agent's certificate does not name node '", name.substr(0, 64),
        "'; with TLS a node registers only under a name its certificate carries (a DNS SAN, the "
        "CN when it has none, or a spiffe:// URI ending in it)"));
  }
  auto it = nodes_.find(name);
  if (it == nodes_.end() || !it->second->alive) return absl::OkStatus();
  if (Proves(caller, name, *it->second)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "node '", name,
      "' is registered and alive under another agent; a second process cannot take its name. A "
      "restarted agent is accepted once the coordinator declares the old one dead (no heartbeat "
      "for ",
      absl::FormatDuration(it->second->timing.timeout),
      "), or at once with a TLS client certificate naming the node"));
}

NodeRegistry::Registration NodeRegistry::Register(const NodeInventory& inv, std::string secret) {
  Registration r;
  std::unique_ptr<Node>& node = nodes_[inv.node];
  if (node == nullptr || !node->alive) ++alive_;  // counted from now on (FairTiming)
  if (node == nullptr) {
    node = std::make_unique<Node>();
    r.arrival = Arrival::kNew;
  } else if (node->inventory.incarnation != inv.incarnation) {
    r.arrival = Arrival::kRestarted;
    r.previous_incarnation = node->inventory.incarnation;
    ++node->restarts;
  } else {
    r.arrival = node->alive ? Arrival::kAgain : Arrival::kBack;
  }
  ReleaseGpus(inv.node, node->inventory.gpus);
  for (const Gpu& g : inv.gpus) gpu_owner_[g.uuid] = inv.node;
  node->inventory = inv;
  node->secret = std::move(secret);
  std::vector<std::string> cliques;
  for (const Gpu& g : inv.gpus) cliques.push_back(g.nvlink_clique);
  node->clique = topology::NodeClique(cliques);
  node->last_heard = clock_->Now();
  Tell(*node);  // while `alive` still says whether its old share of the rate counts
  node->alive = true;
  node->left = false;
  return r;
}

absl::StatusOr<bool> NodeRegistry::Cordon(const std::string& name, bool cordoned,
                                          const std::string& reason) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("node ", domain::Quote(name), " is not registered"));
  }
  Node& node = *it->second;
  const bool changed = node.cordoned != cordoned;
  node.cordoned = cordoned;
  node.cordon_reason = cordoned ? reason : "";
  return changed;
}

void NodeRegistry::Gone(Node& node, absl::Time now) {
  node.alive = false;
  node.gone_since = now;
  --alive_;
  promised_hz_ = std::max(0.0, promised_hz_ - Hz(node.timing));
  gone_due_ = std::min(gone_due_, now);
}

absl::StatusOr<bool> NodeRegistry::Depart(const std::string& name, uint64_t incarnation) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("node ", domain::Quote(name), " is not registered"));
  }
  Node& node = *it->second;
  if (node.inventory.incarnation != incarnation) {
    return absl::FailedPreconditionError(absl::StrCat("node '", name, "' incarnation ", incarnation,
                                                      " is stale; the node is now ",
                                                      node.inventory.incarnation));
  }
  if (!node.alive) return false;
  Gone(node, clock_->Now());
  node.left = true;
  return true;
}

void NodeRegistry::ExpireGone(
    absl::Time now, absl::Duration retention,
    absl::FunctionRef<void(const std::string&, const Node&)> removed) {
  if (now < gone_due_ + retention) return;
  absl::Time next = absl::InfiniteFuture();
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    Node& node = *it->second;
    if (node.alive || now < node.gone_since + retention) {
      if (!node.alive) next = std::min(next, node.gone_since);
      ++it;
      continue;
    }
    removed(it->first, node);
    it = Erase(it);
  }
  gone_due_ = next;
}

absl::Status NodeRegistry::Forget(const std::string& name) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("node ", domain::Quote(name), " is not registered"));
  }
  if (it->second->alive) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node '", name, "' is alive; only a dead node is forgotten. Drain it (meshctl node drain ",
        name, "), stop its agent, and forget it once the coordinator declares it dead"));
  }
  Erase(it);
  return absl::OkStatus();
}

void NodeRegistry::ReleaseGpus(const std::string& node, const std::vector<Gpu>& gpus) {
  for (const Gpu& g : gpus) {
    auto owner = gpu_owner_.find(g.uuid);
    if (owner != gpu_owner_.end() && owner->second == node) gpu_owner_.erase(owner);
  }
}

NodeRegistry::NodeMap::iterator NodeRegistry::Erase(NodeMap::iterator it) {
  ReleaseGpus(it->first, it->second->inventory.gpus);
  return nodes_.erase(it);
}

absl::StatusOr<HeartbeatTiming> NodeRegistry::Heartbeat(const std::string& name,
                                                        uint64_t incarnation) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("node ", domain::Quote(name), " is not registered; register first"));
  }
  Node& node = *it->second;
  if (!node.alive) {
    return absl::NotFoundError(absl::StrCat("node ", domain::Quote(name),
                                            " was declared dead after missing heartbeats; "
                                            "register again"));
  }
  if (node.inventory.incarnation != incarnation) {
    return absl::FailedPreconditionError(
        absl::StrCat("node '", name, "' incarnation ", incarnation, " was replaced by incarnation ",
                     node.inventory.incarnation, "; this agent is stale"));
  }
  node.last_heard = clock_->Now();
  return Tell(node);
}

absl::Status NodeRegistry::CheckCurrent(const std::string& name, uint64_t incarnation) const {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || !it->second->alive) {
    return absl::NotFoundError(absl::StrCat("node ", domain::Quote(name),
                                            " is not registered (or was declared dead); its "
                                            "agent must register before joining"));
  }
  if (it->second->inventory.incarnation != incarnation) {
    return absl::FailedPreconditionError(absl::StrCat("node '", name, "' incarnation ", incarnation,
                                                      " is stale; the node is now ",
                                                      it->second->inventory.incarnation));
  }
  return absl::OkStatus();
}

void NodeRegistry::ExpireSilent(
    absl::Time now, absl::FunctionRef<void(const std::string&, const std::string&)> lost) {
  if (now < due_) return;
  absl::Time next = absl::InfiniteFuture();
  for (auto& [name, node] : nodes_) {
    if (!node->alive) continue;
    if (now - node->last_heard <= node->timing.timeout) {
      next = std::min(next, node->last_heard + node->timing.timeout);
      continue;
    }
    Gone(*node, now);
    lost(name, absl::StrCat("node '", name, "' lost: no heartbeat for ",
                            absl::FormatDuration(now - node->last_heard), " (timeout ",
                            absl::FormatDuration(node->timing.timeout), ")"));
  }
  due_ = next;
}

HeartbeatTiming NodeRegistry::FairTiming() const {
  HeartbeatTiming t{options_.heartbeat_interval, options_.heartbeat_timeout};
  const double per_interval =
      options_.max_heartbeats_per_second * absl::ToDoubleSeconds(options_.heartbeat_interval);
  if (options_.max_heartbeats_per_second == 0 || alive_ <= per_interval) return t;
  const double scale = static_cast<double>(alive_) / per_interval;
  return HeartbeatTiming{t.interval * scale, t.timeout * scale};
}

HeartbeatTiming NodeRegistry::TimingOf(const std::string& name) const {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return {options_.heartbeat_interval, options_.heartbeat_timeout};
  return it->second->timing;
}

HeartbeatTiming NodeRegistry::Tell(Node& node) {
  const HeartbeatTiming fair = FairTiming();
  HeartbeatTiming t = fair;
  // A new node's registration (or a heartbeat) during a burst of registrations: the nodes before
  // it were told intervals for a smaller cluster and keep them until their next heartbeat, which
  // comes within one fair interval and corrects them. Where their promised rate leaves less room
  // than this node's fair share, its interval stretches to what fits, at most to twice the fair
  // one, so its first heartbeat comes after theirs were corrected. Without this, 16,384 agents
  // registering at once heartbeat at ~2.5x the cap until the first answers reach them.
  const double others = std::max(0.0, promised_hz_ - (node.alive ? Hz(node.timing) : 0));
  const double room = options_.max_heartbeats_per_second - others;
  if (options_.max_heartbeats_per_second > 0 && room < Hz(fair) * (1 - 1e-9)) {
    const double stretch = room > 0 ? std::min(Hz(fair) / room, 2.0) : 2.0;
    t = HeartbeatTiming{fair.interval * stretch, fair.timeout * stretch};
  }
  promised_hz_ = others + Hz(t);
  node.timing = t;
  due_ = std::min(due_, node.last_heard + t.timeout);
  return t;
}

}  // namespace meshd::coordinator
