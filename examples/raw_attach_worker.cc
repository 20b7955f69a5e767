// raw_attach_worker: a worker that uses nothing but meshd.v1.Agent's generated stubs — what a
// binding in any language does. It attaches to a job through the local agent's socket, prints one
// JSON line with its placement, prints {"watching":true} once its watch on the generation is armed,
// and then one JSON line saying how the generation ended. With GENERATIONS > 1 it attaches again
// after each end (as an elastic training loop does), up to that many generations. Integration
// tests run it too.
//   raw_attach_worker SOCKET JOB LOCAL_RANK LOCAL_WORLD NODES [GENERATIONS]
// NODES is a count (a fixed-size job) or MIN:MAX (an elastic one).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "grpcpp/grpcpp.h"
#include "meshd/v1/agent.grpc.pb.h"

namespace {

// "N" or "MIN:MAX" into the request; false when it is neither.
bool ParseNodes(const char* text, meshd::v1::NodeCount* nodes) {
  char* end = nullptr;
  const unsigned long min = std::strtoul(text, &end, 10);
  unsigned long max = min;
  if (*end == ':') max = std::strtoul(end + 1, &end, 10);
  if (*end != '\0' || min == 0 || max < min) return false;
  nodes->set_min_nodes(static_cast<uint32_t>(min));
  nodes->set_max_nodes(static_cast<uint32_t>(max));
  return true;
}

// One generation: attach, print the placement, watch, print how it ended. False when the attach
// failed (printed).
bool RunGeneration(meshd::v1::Agent::Stub& stub, const meshd::v1::AttachRequest& req) {
  meshd::v1::AttachResponse resp;
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);  // the agent may still be starting
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  grpc::Status s = stub.Attach(&ctx, req, &resp);
  if (!s.ok()) {
    std::printf("{\"error\":%d,\"message\":\"%s\"}\n", s.error_code(), s.error_message().c_str());
    std::fflush(stdout);
    return false;
  }
  std::printf(
      "{\"rank\":%u,\"world_size\":%u,\"generation\":%lu,\"node_rank\":%u,\"gpu\":\"%s\"}\n",
      resp.rank(), resp.world_size(), static_cast<unsigned long>(resp.generation()),
      resp.node_rank(), resp.gpu().uuid().c_str());
  std::fflush(stdout);

  meshd::v1::WatchRequest watch;
  watch.set_job(req.job());
  watch.set_generation(resp.generation());
  watch.set_local_rank(req.local_rank());
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = stub.Watch(&watch_ctx, watch);
  reader->WaitForInitialMetadata();  // the agent has armed the watch
  std::printf("{\"watching\":true}\n");
  std::fflush(stdout);
  meshd::v1::GenerationEnd end;
  if (reader->Read(&end)) {
    std::printf("{\"event\":\"%s\",\"node\":\"%s\",\"generation\":%lu}\n",
                meshd::v1::GenerationEnd::Reason_Name(end.reason()).c_str(), end.node().c_str(),
                static_cast<unsigned long>(resp.generation()));
  } else {
    s = reader->Finish();
    std::printf("{\"event\":\"STREAM_ENDED\",\"code\":%d}\n", s.error_code());
  }
  std::fflush(stdout);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  meshd::v1::AttachRequest req;
  const int generations = argc == 7 ? std::atoi(argv[6]) : 1;
  if ((argc != 6 && argc != 7) || !ParseNodes(argv[5], req.mutable_nodes()) || generations < 1) {
    std::fprintf(stderr,
                 "usage: raw_attach_worker SOCKET JOB LOCAL_RANK LOCAL_WORLD NODES|MIN:MAX "
                 "[GENERATIONS]\n");
    return 2;
  }
  auto stub = meshd::v1::Agent::NewStub(
      grpc::CreateChannel(std::string("unix:") + argv[1], grpc::InsecureChannelCredentials()));
  req.set_job(argv[2]);
  req.set_local_rank(static_cast<uint32_t>(std::atoi(argv[3])));
  req.set_local_world(static_cast<uint32_t>(std::atoi(argv[4])));
  for (int g = 0; g < generations; ++g) {
    if (!RunGeneration(*stub, req)) return 1;
  }
  return 0;
}
