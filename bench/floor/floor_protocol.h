// The bare-gRPC floor's protocol: the calls a node makes in meshd_bench — register (answered at
// once), join (held until every node joined), resolve (held until every node asked) — with
// payloads of the sizes meshd's own messages have, but no meshd in between: opaque bytes on
// gRPC's generic API. Either three unary calls per node or one bidi stream per node carrying the
// three exchanges in order.
#ifndef MESHD_BENCH_FLOOR_FLOOR_PROTOCOL_H_
#define MESHD_BENCH_FLOOR_FLOOR_PROTOCOL_H_

#include <cstdint>

namespace meshd::bench::floor {

inline constexpr char kRegisterMethod[] = "/meshd.bench.Floor/Register";
inline constexpr char kJoinMethod[] = "/meshd.bench.Floor/Join";
inline constexpr char kResolveMethod[] = "/meshd.bench.Floor/Resolve";
inline constexpr char kSessionMethod[] = "/meshd.bench.Floor/Session";

// Bytes of each request and answer. The defaults are meshd's messages in a 16,384-node run of
// meshd_bench (8 GPUs a node, pp=4 x dp x cp=2 x tp=8 plus the world group): RegisterNodeRequest
// with 8 GPUs, JoinJobRequest and its Assignment, and ResolveGroupsRequest/Response for 26 groups
// (the request's average).
struct Sizes {
  uint32_t register_request = 516;
  uint32_t register_answer = 12;
  uint32_t join_request = 33;
  uint32_t join_answer = 25;
  uint32_t resolve_request = 2709;
  uint32_t resolve_answer = 3821;
};

// The three exchanges, in the order a node makes them.
enum class Step : int { kRegister = 0, kJoin = 1, kResolve = 2 };
inline constexpr int kSteps = 3;

inline uint32_t RequestBytes(const Sizes& s, Step step) {
  const uint32_t bytes[kSteps] = {s.register_request, s.join_request, s.resolve_request};
  return bytes[static_cast<int>(step)];
}
inline uint32_t AnswerBytes(const Sizes& s, Step step) {
  const uint32_t bytes[kSteps] = {s.register_answer, s.join_answer, s.resolve_answer};
  return bytes[static_cast<int>(step)];
}

}  // namespace meshd::bench::floor

#endif  // MESHD_BENCH_FLOOR_FLOOR_PROTOCOL_H_
