// A program built against an installed meshd (tests/install/install_test.sh builds it with
// pkg-config and with find_package(meshd)). It needs no daemon: attaching through a socket that does
// not exist fails at once with UNAVAILABLE, which it prints (absl::Status from the library, printed
// with Abseil's operator<<, so the consumer links Abseil as <meshd/client.h> requires).
#include <iostream>
#include <memory>

#include <meshd/client.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " <socket path with no socket>\n";
    return 2;
  }
  meshd::ClientOptions options;
  options.socket = argv[1];
  options.job = "install-test";
  options.local_rank = 0;
  options.local_world = 1;
  options.min_nodes = options.max_nodes = 1;
  options.timeout = absl::Seconds(2);
  options.interrupter = std::make_shared<meshd::Interrupter>();
  absl::StatusOr<std::unique_ptr<meshd::Client>> client = meshd::Client::Attach(options);
  if (client.ok()) {
    std::cout << "attached to " << argv[1] << " (expected no agent there)\n";
    return 1;
  }
  std::cout << "attach: " << client.status() << "\n";
  return client.status().code() == absl::StatusCode::kUnavailable ? 0 : 1;
}
