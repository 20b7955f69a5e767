// A `meshd standalone` process with simulated GPUs, for tests of the client library (which must run
// the daemons out of process: libmeshd_client carries its own copy of the protocol's messages).
#ifndef MESHD_TESTS_SUPPORT_STANDALONE_H_
#define MESHD_TESTS_SUPPORT_STANDALONE_H_

#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace meshd::testing {

using ::meshd::process::Subprocess;

struct Standalone {
  std::unique_ptr<Subprocess> process;
  std::string socket;
  std::string address;

  // Starts it; fails the test (ASSERT) if it does not come up.
  void Start(const std::string& meshd_path, int gpus) {
    static int n = 0;
    socket = absl::StrCat(::testing::TempDir(), "meshd_standalone_", getpid(), "_", n++, ".sock");
    auto p =
        Subprocess::Start({meshd_path, "standalone", "--listen", "127.0.0.1:0", "--socket", socket,
                           "--simulate-gpus", std::to_string(gpus), "--node-name", "test-node"});
    ASSERT_TRUE(p.ok()) << p.status();
    process = *std::move(p);
    auto line = process->WaitForLine("meshd standalone listening on ", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    address = line->substr(0, line->find(' '));
  }
};

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_STANDALONE_H_
