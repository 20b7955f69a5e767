// Topology rank order: cliques adjacent, then hostnames.
#include "common/topology/rank_order.h"

#include "gtest/gtest.h"

namespace meshd::topology {
namespace {

std::vector<std::string> Ordered(const std::vector<NodePlacement>& nodes) {
  std::vector<std::string> out;
  for (size_t i : TopologyOrder(nodes)) out.push_back(nodes[i].node);
  return out;
}

TEST(TopologyOrder, ByHostnameWithoutCliques) {
  EXPECT_EQ(Ordered({{"c", "host-c", ""}, {"a", "host-a", ""}, {"b", "host-b", ""}}),
            (std::vector<std::string>{"a", "b", "c"}));
}

TEST(TopologyOrder, CliqueMembersAdjacent) {
  // host-a and host-c share clique X; host-b is alone: X's nodes stay together.
  EXPECT_EQ(Ordered({{"b", "host-b", "Y"}, {"c", "host-c", "X"}, {"a", "host-a", "X"}}),
            (std::vector<std::string>{"a", "c", "b"}));
}

TEST(TopologyOrder, MixedCliqueAndNone) {
  EXPECT_EQ(
      Ordered(
          {{"d", "host-d", "X"}, {"a", "host-a", ""}, {"b", "host-b", "X"}, {"c", "host-c", ""}}),
      (std::vector<std::string>{"a", "b", "d", "c"}));
}

TEST(TopologyOrder, Deterministic_NodeNameBreaksTies) {
  EXPECT_EQ(Ordered({{"n2", "same", ""}, {"n1", "same", ""}}),
            (std::vector<std::string>{"n1", "n2"}));
}

TEST(NodeClique, OnlyWhenAllGpusAgree) {
  EXPECT_EQ(NodeClique({"X", "X"}), "X");
  EXPECT_EQ(NodeClique({"X", "Y"}), "");
  EXPECT_EQ(NodeClique({}), "");
  EXPECT_EQ(NodeClique({"", ""}), "");
}

}  // namespace
}  // namespace meshd::topology
