// Reflection and health of a real `meshd coordinator` process, the way grpcurl sees them: list the
// services, describe meshd.v1.Coordinator (methods and streaming flags) and grpc.health.v1.Health.
// Out of process on purpose: reflection client stubs and grpc++_reflection cannot share a binary.
#include <signal.h>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace meshd {
namespace {

using grpc::reflection::v1alpha::ServerReflection;
using grpc::reflection::v1alpha::ServerReflectionRequest;
using grpc::reflection::v1alpha::ServerReflectionResponse;
using ::testing::Contains;

class ReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = process::Subprocess::Start({MESHD_PATH, "coordinator", "--listen", "127.0.0.1:0"});
    ASSERT_TRUE(p.ok()) << p.status();
    daemon_ = *std::move(p);
    auto address = daemon_->WaitForLine("meshd coordinator listening on ", absl::Seconds(20));
    ASSERT_TRUE(address.ok()) << address.status();
    channel_ = grpc::CreateChannel(*address, grpc::InsecureChannelCredentials());
  }

  ServerReflectionResponse Ask(const ServerReflectionRequest& req) {
    auto stub = ServerReflection::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->ServerReflectionInfo(&ctx);
    ServerReflectionResponse resp;
    EXPECT_TRUE(stream->Write(req));
    stream->WritesDone();
    EXPECT_TRUE(stream->Read(&resp));
    EXPECT_TRUE(stream->Finish().ok());
    return resp;
  }

  std::vector<google::protobuf::FileDescriptorProto> Describe(const std::string& symbol) {
    ServerReflectionRequest req;
    req.set_file_containing_symbol(symbol);
    const ServerReflectionResponse resp = Ask(req);
    EXPECT_TRUE(resp.has_file_descriptor_response()) << resp.DebugString();
    std::vector<google::protobuf::FileDescriptorProto> files;
    for (const std::string& bytes : resp.file_descriptor_response().file_descriptor_proto()) {
      files.emplace_back().ParseFromString(bytes);
    }
    return files;
  }

  std::unique_ptr<process::Subprocess> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(ReflectionTest, ListsEveryService) {
  ServerReflectionRequest req;
  req.set_list_services("*");
  const ServerReflectionResponse resp = Ask(req);
  std::vector<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
  EXPECT_THAT(names, Contains("meshd.v1.Coordinator"));
  EXPECT_THAT(names, Contains("meshd.v1.Admin"));
  EXPECT_THAT(names, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(names, Contains("grpc.reflection.v1alpha.ServerReflection"));
}

TEST_F(ReflectionTest, DescribesCoordinatorMethodsAndStreaming) {
  bool found = false;
  for (const auto& file : Describe("meshd.v1.Coordinator")) {
    for (const auto& service : file.service()) {
      if (service.name() != "Coordinator") continue;
      found = true;
      std::map<std::string, bool> streaming;
      for (const auto& m : service.method()) streaming[m.name()] = m.server_streaming();
      EXPECT_EQ(streaming.count("JoinJob"), 1u);
      EXPECT_EQ(streaming.count("GetJob"), 1u);
      EXPECT_FALSE(streaming["JoinJob"]);
      EXPECT_TRUE(streaming["WatchJob"]);
      EXPECT_EQ(streaming.count("KeyWait"), 1u);
      EXPECT_EQ(streaming.count("LeaveNode"), 1u);
      EXPECT_EQ(streaming.count("KeyBatch"), 1u);
      EXPECT_EQ(streaming.size(), 22u);
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(ReflectionTest, DescribesHealth) {
  bool found = false;
  for (const auto& file : Describe("grpc.health.v1.Health")) {
    for (const auto& service : file.service()) found |= service.name() == "Health";
  }
  EXPECT_TRUE(found);
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("meshd.v1.Coordinator");
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(ReflectionTest, SigtermExitsZeroPromptly) {
  daemon_->Signal(SIGTERM);
  const auto code = daemon_->Wait(absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

}  // namespace
}  // namespace meshd
