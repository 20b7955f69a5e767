// raw_attach_worker: a worker that uses nothing but meshd.v1.Agent's generated stubs — what a
// binding in any language does. It attaches to a job through the local agent's socket, prints one
// JSON line with its placement, prints {"watching":true} once its watch on the generation is armed,
// and finally one JSON line saying how the generation ended. Integration tests run it too.
//   raw_attach_worker SOCKET JOB LOCAL_RANK LOCAL_WORLD NODES
#include <cstdio>
#include <cstdlib>
#include <string>

#include "grpcpp/grpcpp.h"
#include "meshd/v1/agent.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: raw_attach_worker SOCKET JOB LOCAL_RANK LOCAL_WORLD NODES\n");
    return 2;
  }
  auto stub = meshd::v1::Agent::NewStub(
      grpc::CreateChannel(std::string("unix:") + argv[1], grpc::InsecureChannelCredentials()));
  meshd::v1::AttachRequest req;
  req.set_job(argv[2]);
  req.set_local_rank(static_cast<uint32_t>(std::atoi(argv[3])));
  req.set_local_world(static_cast<uint32_t>(std::atoi(argv[4])));
  req.mutable_nodes()->set_min_nodes(static_cast<uint32_t>(std::atoi(argv[5])));
  req.mutable_nodes()->set_max_nodes(static_cast<uint32_t>(std::atoi(argv[5])));
  meshd::v1::AttachResponse resp;
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);  // the agent may still be starting
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  grpc::Status s = stub->Attach(&ctx, req, &resp);
  if (!s.ok()) {
    std::printf("{\"error\":%d,\"message\":\"%s\"}\n", s.error_code(), s.error_message().c_str());
    return 1;
  }
  std::printf(
      "{\"rank\":%u,\"world_size\":%u,\"generation\":%lu,\"node_rank\":%u,\"gpu\":\"%s\"}\n",
      resp.rank(), resp.world_size(), static_cast<unsigned long>(resp.generation()),
      resp.node_rank(), resp.gpu().uuid().c_str());
  std::fflush(stdout);

  meshd::v1::WatchRequest watch;
  watch.set_job(argv[2]);
  watch.set_generation(resp.generation());
  watch.set_local_rank(req.local_rank());
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = stub->Watch(&watch_ctx, watch);
  reader->WaitForInitialMetadata();  // the agent has armed the watch
  std::printf("{\"watching\":true}\n");
  std::fflush(stdout);
  meshd::v1::GenerationEnd end;
  if (reader->Read(&end)) {
    std::printf("{\"event\":\"%s\",\"node\":\"%s\"}\n",
                meshd::v1::GenerationEnd::Reason_Name(end.reason()).c_str(), end.node().c_str());
  } else {
    s = reader->Finish();
    std::printf("{\"event\":\"STREAM_ENDED\",\"code\":%d}\n", s.error_code());
  }
  std::fflush(stdout);
  return 0;
}
