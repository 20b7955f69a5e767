// Placement (see placement.h).
#include "bench/sim/placement.h"

#include <sched.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace meshd::bench {

uint32_t DefaultChannels(uint32_t nodes) { return std::clamp<uint32_t>(nodes / 512, 4, 32); }

std::vector<std::shared_ptr<grpc::Channel>> SimChannels(const std::string& address,
                                                        uint32_t count) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (uint32_t c = 0; c < std::max<uint32_t>(1, count); ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own connection
    args.SetMaxReceiveMessageSize(-1);
    args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
    channels.push_back(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

absl::StatusOr<std::string> StartOnCpu(int cpu, const std::string& flag,
                                       const std::function<absl::Status()>& start) {
  if (cpu == -1) {
    absl::Status s = start();
    if (!s.ok()) return s;
    return std::string("all");
  }
  cpu_set_t all;
  if (sched_getaffinity(0, sizeof(all), &all) != 0) return absl::InternalError("sched_getaffinity");
  for (int c = 0; cpu == -2 && c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &all)) cpu = c;
  }
  if (cpu < 0 || !CPU_ISSET(cpu, &all)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", cpu, " is not a CPU this process may use; pick another or -1"));
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (sched_setaffinity(0, sizeof(one), &one) != 0) {
    return absl::InternalError(absl::StrCat("could not confine this process to CPU ", cpu));
  }
  absl::Status s = start();
  sched_setaffinity(0, sizeof(all), &all);
  if (!s.ok()) return s;
  return absl::StrCat(cpu);
}

}  // namespace meshd::bench
