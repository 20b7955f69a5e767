// Bytes that are not the method's request, sent to every unary method of meshd.v1.Coordinator,
// Admin (TCP) and Agent (its unix socket) on real servers: each is refused with INVALID_ARGUMENT and a message that says what could
// not be parsed — not INTERNAL or UNIMPLEMENTED with an empty message — and the server goes on
// serving.
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/runtime/agent_daemon.h"
#include "daemon/runtime/coordinator_daemon.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "meshd/v1/admin.grpc.pb.h"
#include "meshd/v1/agent.grpc.pb.h"
#include "meshd/v1/coordinator.grpc.pb.h"
#include "tests/support/raw_call.h"

namespace meshd {
namespace {

using ::testing::HasSubstr;

using ::meshd::testing::RawUnaryCall;

TEST(MalformedRequests, EveryUnaryMethod_InvalidArgumentSayingWhat) {
  runtime::CoordinatorDaemonOptions o;
  o.listen = "127.0.0.1:0";
  auto daemon = runtime::CoordinatorDaemon::Start(o);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto channel = grpc::CreateChannel((*daemon)->address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  // A field 1 of wire type 2 whose length runs past the end: no message parses it.
  const std::string junk = "\x0a\xff\xff\xff\x0f not a protobuf";
  // Linked in by the stubs' headers above, so the generated pool knows both services.
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const char* name : {"meshd.v1.Coordinator", "meshd.v1.Admin"}) {
    const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* m = service->method(i);
      if (m->client_streaming() || m->server_streaming()) continue;
      const std::string method = absl::StrCat("/", service->full_name(), "/", m->name());
      const grpc::Status s = RawUnaryCall(stub, method, junk);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << method << ": " << s.error_code() << " " << s.error_message();
      EXPECT_THAT(s.error_message(), HasSubstr(m->input_type()->name())) << method;
    }
  }
  // A method the service parses itself refuses a request past its own limit before decoding it
  // (a KeyGet is a job, a generation and a key of at most 1 KiB: 100 KiB is not one).
  v1::KeyGetRequest big;
  big.set_job("job");
  big.set_key(std::string(100 << 10, 'k'));
  const grpc::Status s = RawUnaryCall(stub, "/meshd.v1.Coordinator/KeyGet", big.SerializeAsString());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("larger than its limit"));
}

// The agent's socket: what a worker (or anything of the socket's group) sends.
TEST(MalformedRequests, EveryUnaryAgentMethod_InvalidArgumentSayingWhat) {
  runtime::CoordinatorDaemonOptions c;
  c.listen = "127.0.0.1:0";
  auto coordinator = runtime::CoordinatorDaemon::Start(c);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  runtime::AgentDaemonOptions a;
  a.coordinator = (*coordinator)->address();
  a.socket = absl::StrCat(::testing::TempDir(), "meshd_malformed_", getpid(), ".sock");
  a.simulate_gpus = 1;
  a.node_name = "malformed";
  auto agent = runtime::AgentDaemon::Start(a);
  ASSERT_TRUE(agent.ok()) << agent.status();
  grpc::GenericStub stub(
      grpc::CreateChannel("unix:" + a.socket, grpc::InsecureChannelCredentials()));
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName("meshd.v1.Agent");
  ASSERT_NE(service, nullptr);
  for (int i = 0; i < service->method_count(); ++i) {
    const google::protobuf::MethodDescriptor* m = service->method(i);
    if (m->client_streaming() || m->server_streaming()) continue;
    const std::string method = absl::StrCat("/meshd.v1.Agent/", m->name());
    const grpc::Status s = RawUnaryCall(stub, method, "\x0a\xff\xff\xff\x0f not a protobuf");
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << method << ": " << s.error_code() << " " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(m->input_type()->name())) << method;
  }
}

}  // namespace
}  // namespace meshd
