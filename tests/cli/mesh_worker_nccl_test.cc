// The example training image's NCCL, as real processes: mesh_worker --check-nccl and
// --require-nccl fail at once, naming the library, the loader's reason and the fix, where NCCL
// is missing or is not NCCL; deploy/k8s/overlays/example/train-image/collect-nccl.sh (the image's
// build step) fails naming what the base image lacks, and collects a NCCL mesh_worker then loads.
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/nccl.h"
#include "tests/support/run_command.h"

namespace meshd {
namespace {

using ::meshd::testing::RunCommand;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kCollect =
    absl::StrCat(SOURCE_DIR, "/deploy/k8s/overlays/example/train-image/collect-nccl.sh");

TEST(MeshWorkerNcclTest, CheckNccl_Missing_ExitOneNamingLibraryAndFix) {
  const auto r = RunCommand(
      absl::StrCat("MESHD_NCCL_LIBRARY=/nonexistent/libnccl.so.2 ", WORKER_PATH, " --check-nccl"),
      true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("NCCL is required (--require-nccl) but /nonexistent/libnccl.so.2 "
                               "cannot be loaded (/nonexistent/libnccl.so.2: cannot open shared "
                               "object file"));
  EXPECT_THAT(r.out, HasSubstr("build the training image FROM a CUDA/NCCL base you provide"));
  EXPECT_THAT(r.out, HasSubstr("set MESHD_NCCL_LIBRARY to the path of libnccl.so.2"));
}

TEST(MeshWorkerNcclTest, CheckNccl_NotNccl_Refused) {
  const auto r =
      RunCommand(absl::StrCat("MESHD_NCCL_LIBRARY=libz.so.1 ", WORKER_PATH, " --check-nccl"), true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("libz.so.1 is not NCCL (no ncclGetUniqueId or ncclGetVersion)"));
}

// --require-nccl fails before attaching: no agent runs here, and the error is NCCL's, not the
// socket's.
TEST(MeshWorkerNcclTest, RequireNccl_Missing_FailsBeforeAttaching) {
  const auto r = RunCommand(absl::StrCat("MESHD_NCCL_LIBRARY=/nonexistent/libnccl.so.2 ",
                                         WORKER_PATH,
                                         " --socket /nonexistent/agent.sock --job j --local-rank 0 "
                                         "--shape 1 --require-nccl --json"),
                            true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("{\"error\":{\"during\":\"nccl\",\"code\":\"FAILED_PRECONDITION\""));
  EXPECT_THAT(r.out, Not(HasSubstr("agent socket")));
  // Without it the worker goes on to attach (and here finds no agent).
  const auto lax = RunCommand(absl::StrCat("MESHD_NCCL_LIBRARY=/nonexistent/libnccl.so.2 ",
                                           WORKER_PATH,
                                           " --socket /nonexistent/agent.sock --job j "
                                           "--local-rank 0 --shape 1 --json"),
                              true);
  EXPECT_EQ(lax.exit_code, 1) << lax.out;
  EXPECT_THAT(lax.out, HasSubstr("\"during\":\"attach\""));
}

TEST(MeshWorkerNcclTest, CollectNccl_BaseWithoutNccl_FailsNamingIt) {
  const std::string empty = absl::StrCat(::testing::TempDir(), "no_nccl_", getpid());
  std::filesystem::create_directories(empty);
  const auto r = RunCommand(
      absl::StrCat("MESHD_NCCL_SEARCH=", empty, " sh ", kCollect, " ", empty, "/out"), true);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("collect-nccl: no libnccl.so.2 in the base image"));
  EXPECT_THAT(r.out, HasSubstr("--build-arg BASE=<a CUDA image that has NCCL>"));
  std::filesystem::remove_all(empty);
}

// On a host with NCCL (the development and CI machines), the script finds it as it would in a
// CUDA base image (the loader's cache), and mesh_worker loads the copy.
TEST(MeshWorkerNcclTest, CollectNccl_HostWithNccl_CopyLoads) {
  MESHD_SKIP_WITHOUT_NCCL();
  const std::string out = absl::StrCat(::testing::TempDir(), "nccl_out_", getpid());
  const auto r = RunCommand(absl::StrCat("sh ", kCollect, " ", out), true);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(std::filesystem::exists(out + "/libnccl.so.2"));
  const auto check = RunCommand(
      absl::StrCat("MESHD_NCCL_LIBRARY=", out, "/libnccl.so.2 ", WORKER_PATH, " --check-nccl"),
      true);
  EXPECT_EQ(check.exit_code, 0) << check.out;
  EXPECT_THAT(check.out, HasSubstr(absl::StrCat("NCCL 2.")));
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace meshd
