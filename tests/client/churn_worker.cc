// churn_worker: a short-lived worker on libmeshd_client for client_churn_test — attaches to a job of
// --local-world workers on one node, resolves a 1-D mesh's group (ids included), then leaves the
// way --exit says, as real workers do:
//   clean          destroys its client, returns from main
//   exit           std::exit(0) with its client alive (its generation watch in flight)
//   static         its client in a static, destroyed by the static destructors after main
//   wait           waits for the generation to end (a peer left), destroys its client, returns
//   wait-callback  waits for the end; the end's callback itself destroys the client
//   wait-exit      waits for the end, then std::exit(0) with its client alive
// Exit status: 0 ok, 1 a meshd call failed or the end did not come in time, 2 bad flags.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "meshd/client.h"

namespace {

std::unique_ptr<meshd::Client> g_static_client;  // --exit static: destroyed after main

int Fail(const absl::Status& s, const std::string& what) {
  std::cerr << "churn_worker: " << what << ": " << s << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  meshd::ClientOptions o;
  std::string exit_mode = "clean";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    bool ok = true;
    if (flag == "--socket") {
      o.socket = value;
    } else if (flag == "--job") {
      o.job = value;
    } else if (flag == "--local-rank") {
      ok = absl::SimpleAtoi(value, &o.local_rank);
    } else if (flag == "--local-world") {
      ok = absl::SimpleAtoi(value, &o.local_world);
    } else if (flag == "--exit") {
      exit_mode = value;
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "churn_worker: bad flag " << flag << " " << value << "\n";
      return 2;
    }
  }
  o.min_nodes = o.max_nodes = 1;
  o.timeout = absl::Seconds(30);

  auto attached = meshd::Client::Attach(o);
  if (!attached.ok()) return Fail(attached.status(), "attach");
  std::unique_ptr<meshd::Client> client = *std::move(attached);
  auto mesh = client->InitDeviceMesh({o.local_world}, {"dp"});
  if (!mesh.ok()) return Fail(mesh.status(), "init_device_mesh");
  auto group = client->GroupOf(*mesh, 0);
  if (!group.ok()) return Fail(group.status(), "group");

  if (exit_mode == "clean") {
    client.reset();
    return 0;
  }
  if (exit_mode == "exit") {
    (void)client.release();  // alive, its watch in flight, as when a worker just exits
    std::exit(0);
  }
  if (exit_mode == "static") {
    g_static_client = std::move(client);
    return 0;
  }
  const bool in_callback = exit_mode == "wait-callback";
  if (exit_mode != "wait" && !in_callback && exit_mode != "wait-exit") {
    std::cerr << "churn_worker: unknown --exit " << exit_mode << "\n";
    return 2;
  }
  // The end of the generation: a peer of the job left.
  absl::Mutex mu;
  std::unique_ptr<meshd::Client> owned = std::move(client);
  meshd::Client* c = owned.get();
  absl::Notification ended;
  c->OnGenerationEnd([&](const absl::Status&) {
    if (in_callback) {
      absl::MutexLock lock(&mu);
      owned.reset();  // the client destroyed on its own watch thread
    }
    ended.Notify();
  });
  if (!ended.WaitForNotificationWithTimeout(absl::Seconds(30))) {
    return Fail(absl::DeadlineExceededError("no end of the generation in 30 s"), "wait");
  }
  if (exit_mode == "wait-exit") {
    absl::MutexLock lock(&mu);
    (void)owned.release();
    std::exit(0);
  }
  absl::MutexLock lock(&mu);
  owned.reset();
  return 0;
}
