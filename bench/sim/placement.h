// Placement of a benchmark's processes on this machine's CPUs, and how many connections its
// simulated nodes share. meshd_bench and grpc_floor_bench follow the same rules, as does
// tcpstore_compare.py for TCPStore: the server under test on one CPU, the load on every CPU.
#ifndef MESHD_BENCH_SIM_PLACEMENT_H_
#define MESHD_BENCH_SIM_PLACEMENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"

namespace meshd::bench {

// Connections the simulated nodes share unless told: one per 512 nodes, 4 to 32. Each new
// connection costs a few milliseconds of setup inside the timed run, which dominates small runs
// (64 nodes: 17-19 ms with 4-8 connections, 26-29 ms with 32), while at 16,384 nodes more
// connections spread the load (4: ~15% slower than 32). 4 is also what the TCPStore comparison's
// shared variant opens.
uint32_t DefaultChannels(uint32_t nodes);

// `count` (at least 1) connections to `address` for simulated nodes to share, each its own (not
// pooled), on gRPC's minimal client stack (no client-side deadline timers, compression or size
// filters): thousands of simulated agents share the benchmark's process and the machine's cores
// with the server, and their client-side overhead is not the server's cost (on a real cluster
// each agent has its own host). Deadlines still reach the server, and the runs cancel their own
// calls at their deadline. At 1,024 nodes it cuts the simulator's CPU ~15%.
std::vector<std::shared_ptr<grpc::Channel>> SimChannels(const std::string& address, uint32_t count);

// Runs `start` (which starts the server under test) with this process confined to `cpu`, so that
// the child and every thread it makes run there; this process gets all its CPUs back after.
// `cpu` -2: the first CPU this process may use; -1: anywhere (not confined). Returns the CPUs
// the child got ("0", or "all") or an error naming `flag` (the option that chose `cpu`).
absl::StatusOr<std::string> StartOnCpu(int cpu, const std::string& flag,
                                       const std::function<absl::Status()>& start);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_PLACEMENT_H_
