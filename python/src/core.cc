// meshd._core: the pybind11 binding of libmeshd_client (<meshd/client.h>). The public Python API
// is the pure-Python layer in python/meshd/ (attach, Client, DeviceMesh, Group, Placement); this
// module holds the C++ objects and does three things the Python layer cannot:
//
//  * errors: every absl::Status that is not OK becomes the meshd.errors class of its code (one
//    translator, registered once); no C++ exception escapes (pybind11 turns the rest into
//    RuntimeError).
//  * blocking calls (attach, init_device_mesh, groups, the key-value store) release the GIL. On
//    the main thread they run on the client's helper thread while the main thread waits in 50 ms
//    slices, checking Python's signals between them; when a handler raises (Ctrl-C:
//    KeyboardInterrupt) the call is interrupted with meshd::Interrupter (repeatedly, until it
//    returns) and the exception propagates. Other threads (a c10d/gloo thread calling the Store)
//    call straight through with the GIL released.
//  * the generation-end callback runs on a client thread with the GIL held; what it raises goes
//    to sys.unraisablehook.
//
// Thread-safety: every method may be called from any Python thread. A client's C++ object is
// destroyed with the GIL released (its watch thread may be waiting for the GIL to run a callback),
// and never on its own watch thread.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "meshd/client.h"

namespace py = pybind11;

namespace meshd::python {
namespace {

// Set by _shutdown() (Python's atexit): from then on no thread of ours touches the interpreter.
std::atomic<bool> g_finalizing{false};
// The main thread's Python ident: signals are only handled there.
unsigned long g_main_thread = 0;  // NOLINT(runtime/int): PyThread_get_thread_ident's type
// True on a thread while it runs a generation-end callback (a client must not be destroyed there).
thread_local bool t_in_callback = false;

// ---- errors -------------------------------------------------------------------------------

// A non-OK status on its way to Python (see the translator in PYBIND11_MODULE).
class StatusError : public std::exception {
 public:
  explicit StatusError(absl::Status status)
      : status_(std::move(status)), what_(status_.ToString()) {}
  const absl::Status& status() const { return status_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  absl::Status status_;
  std::string what_;
};

void Check(const absl::Status& s) {
  if (!s.ok()) throw StatusError(s);
}

template <typename T>
T Value(absl::StatusOr<T> s) {
  if (!s.ok()) throw StatusError(s.status());
  return *std::move(s);
}

// A status's message as a str: bytes that are not UTF-8 (a message quoting what a peer sent) as
// \xNN escapes rather than a UnicodeDecodeError in place of the error (GIL held).
py::str Message(const absl::Status& s) {
  const absl::string_view m = s.message();
  PyObject* text = PyUnicode_DecodeUTF8(m.data(), static_cast<Py_ssize_t>(m.size()),
                                        "backslashreplace");
  if (text == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(text);
}

// The meshd.errors instance for a status (GIL held).
py::object ErrorObject(const absl::Status& s) {
  py::object cls =
      py::module_::import("meshd.errors").attr("error_class")(static_cast<int>(s.code()));
  return cls(Message(s));
}

void SetPythonError(const absl::Status& s) {
  py::object cls =
      py::module_::import("meshd.errors").attr("error_class")(static_cast<int>(s.code()));
  PyErr_SetObject(cls.ptr(), Message(s).ptr());
}

absl::Duration Seconds(double seconds) {
  if (std::isnan(seconds)) throw py::value_error("timeout is NaN");
  if (std::isinf(seconds)) {
    return seconds > 0 ? absl::InfiniteDuration() : -absl::InfiniteDuration();
  }
  return absl::Seconds(seconds);
}

double ToSeconds(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return std::numeric_limits<double>::infinity();
  return absl::ToDoubleSeconds(d);
}

bool OnMainThread() { return PyThread_get_thread_ident() == g_main_thread; }

// ---- the helper thread ----------------------------------------------------------------------

// One thread running submitted tasks in order: where a client's blocking calls made from the main
// thread run, so that the main thread stays free to notice Ctrl-C. Tasks never touch Python.
class Executor {
 public:
  Executor() : thread_([this] { Loop(); }) {}
  ~Executor() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Whether a main-thread call waits on this executor: only read and written by the main thread
  // with the GIL held. A call made while one waits (from a Python signal handler, which runs
  // between the waiting call's slices) must not queue behind it: it calls directly.
  bool waited_on = false;

  void Submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_all();
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty()) return;  // stop_, and nothing left
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  bool stop_ = false;                        // guarded by mu_
  std::thread thread_;
};

// Destroys an object with the GIL released (when held) and the C++ work it does off the GIL.
template <typename T>
void DestroyWithoutGil(std::unique_ptr<T> p) {
  if (!p) return;
  if (Py_IsInitialized() && PyGILState_Check()) {
    py::gil_scoped_release release;
    p.reset();
  } else {
    p.reset();
  }
}

// Runs `fn` (a C++ call that may block) with the GIL released and returns its result. On the main
// thread with an executor, it runs there and Python's signal handlers run every 50 ms meanwhile;
// if one raises, `interrupter` ends the call and the handler's exception (KeyboardInterrupt) is
// raised here. Called with the GIL held.
template <typename F>
auto Blocking(Executor* executor, Interrupter* interrupter, F fn) -> decltype(fn()) {
  using R = decltype(fn());
  if (executor == nullptr || interrupter == nullptr || !OnMainThread() || executor->waited_on) {
    py::gil_scoped_release release;
    return fn();
  }
  struct WaitedOn {
    explicit WaitedOn(Executor* e) : e_(e) { e_->waited_on = true; }
    ~WaitedOn() { e_->waited_on = false; }
    Executor* e_;
  } waited_on(executor);
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::optional<R> result;
    std::exception_ptr error;  // what `fn` threw (libmeshd_client itself never throws)
  };
  auto state = std::make_shared<State>();
  executor->Submit([state, &fn] {
    std::optional<R> r;
    std::exception_ptr error;
    try {
      r.emplace(fn());
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(state->mu);
    state->result = std::move(r);
    state->error = error;
    state->done = true;
    state->cv.notify_all();
  });
  bool interrupted = false;
  for (;;) {
    bool done;
    {
      py::gil_scoped_release release;
      std::unique_lock<std::mutex> lock(state->mu);
      done = state->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return state->done; });
    }
    if (done) break;
    // `fn` is still running (and still uses the caller's arguments): wait for it whatever happens.
    if (!interrupted && PyErr_CheckSignals() != 0) interrupted = true;
    if (interrupted) interrupter->Interrupt();
  }
  if (interrupted) {
    // The result is dropped (a client attached in the meantime detaches) without the GIL.
    {
      py::gil_scoped_release release;
      state->result.reset();
    }
    throw py::error_already_set();
  }
  if (state->error) std::rethrow_exception(state->error);
  return std::move(*state->result);
}

// ---- the client -----------------------------------------------------------------------------

// Deletes a client with the GIL released, and never on the thread running its callbacks (the
// client joins that thread when destroyed).
void DeleteClient(Client* c) {
  if (t_in_callback) {
    std::thread([c] { delete c; }).detach();
    return;
  }
  DestroyWithoutGil(std::unique_ptr<Client>(c));
}

// A Python callable kept by C++; released with the GIL held (or leaked once Python is ending).
class PyCallback {
 public:
  explicit PyCallback(py::object fn) : fn_(std::move(fn)) {}
  ~PyCallback() {
    if (!fn_) return;
    if (g_finalizing.load() || !Py_IsInitialized()) {
      fn_.release();  // too late to touch the interpreter
      return;
    }
    py::gil_scoped_acquire gil;
    fn_ = py::object();
  }
  PyCallback(const PyCallback&) = delete;
  PyCallback& operator=(const PyCallback&) = delete;

  // Calls it with the error for `status`; its exceptions go to sys.unraisablehook.
  void operator()(const absl::Status& status) {
    if (g_finalizing.load() || !Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    const bool was_in_callback = t_in_callback;
    t_in_callback = true;
    try {
      fn_(ErrorObject(status));
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("meshd on_generation_end callback");
    } catch (const std::exception& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
      PyErr_WriteUnraisable(fn_.ptr());
    } catch (...) {
      PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception");
      PyErr_WriteUnraisable(fn_.ptr());
    }
    t_in_callback = was_in_callback;
  }

 private:
  py::object fn_;
};

// One attached worker: the C++ client (shared by calls in flight, gone after detach), its
// interrupter and the helper thread of its main-thread calls.
class PyClient {
 public:
  PyClient(std::unique_ptr<Client> client, std::shared_ptr<Interrupter> interrupter,
           std::unique_ptr<Executor> executor, absl::Duration timeout)
      : placement_(client->placement()),
        interrupter_(std::move(interrupter)),
        executor_(std::move(executor)),
        client_(client.release(), DeleteClient),
        timeout_(timeout) {}

  ~PyClient() {
    Detach();
    DestroyWithoutGil(std::move(executor_));
  }

  PyClient(const PyClient&) = delete;
  PyClient& operator=(const PyClient&) = delete;

  // The client, or FAILED_PRECONDITION once detached.
  std::shared_ptr<Client> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    if (!client_) throw StatusError(absl::FailedPreconditionError("detached"));
    return client_;
  }

  void Detach() {
    std::shared_ptr<Client> c;
    {
      std::lock_guard<std::mutex> lock(mu_);
      c.swap(client_);
    }
    if (!c) return;
    // Calls in flight on other threads end now (CANCELLED) instead of at their deadlines; each
    // keeps its reference, so the client goes when the last returns. The deleter releases the GIL.
    interrupter_->Interrupt();
    c.reset();
  }

  bool detached() const {
    std::lock_guard<std::mutex> lock(mu_);
    return !client_;
  }

  const Placement& placement() const { return placement_; }
  double timeout() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ToSeconds(timeout_);
  }
  void set_timeout(double seconds) {
    absl::Duration d = Seconds(seconds);
    std::lock_guard<std::mutex> lock(mu_);
    timeout_ = d;
  }
  absl::Duration Timeout(const std::optional<double>& seconds) const {
    if (seconds) return Seconds(*seconds);
    std::lock_guard<std::mutex> lock(mu_);
    return timeout_;
  }

  template <typename F>
  auto Run(F fn) -> decltype(fn()) {
    return Blocking(executor_.get(), interrupter_.get(), std::move(fn));
  }

 private:
  const Placement placement_;
  const std::shared_ptr<Interrupter> interrupter_;
  std::unique_ptr<Executor> executor_;
  mutable std::mutex mu_;
  std::shared_ptr<Client> client_;  // guarded by mu_; null once detached
  absl::Duration timeout_;          // guarded by mu_; the key-value calls' default
};

std::unique_ptr<PyClient> Attach(const std::string& job, const std::string& socket, int local_rank,
                                 int local_world, int min_nodes, int max_nodes, double timeout) {
  ClientOptions options;
  options.job = job;
  options.socket = socket;
  options.local_rank = local_rank;
  options.local_world = local_world;
  options.min_nodes = min_nodes;
  options.max_nodes = max_nodes;
  options.timeout = Seconds(timeout);
  options.interrupter = std::make_shared<Interrupter>();
  std::shared_ptr<Interrupter> interrupter = options.interrupter;
  auto executor = std::make_unique<Executor>();
  absl::StatusOr<std::unique_ptr<Client>> client;
  try {
    client =
        Blocking(executor.get(), interrupter.get(), [&options] { return Client::Attach(options); });
  } catch (...) {
    DestroyWithoutGil(std::move(executor));
    throw;
  }
  if (!client.ok()) {
    DestroyWithoutGil(std::move(executor));
    throw StatusError(client.status());
  }
  return std::make_unique<PyClient>(*std::move(client), std::move(interrupter), std::move(executor),
                                    options.timeout);
}

py::tuple GroupTuple(const Group& g) {
  py::list ids;
  for (const NcclUniqueId& id : g.ids) {
    ids.append(py::bytes(reinterpret_cast<const char*>(id.data()), id.size()));
  }
  return py::make_tuple(g.dims, g.ranks, g.index, g.group_rank, g.group_index, g.key, ids);
}

// The inverse of GroupTuple (a meshd.Group's fields, as meshd.Group._to_core gives them).
// TypeError / ValueError for a tuple that is not one; MeshFromGroup checks the rest.
Group GroupFromTuple(const py::tuple& t) {
  if (t.size() != 7) throw py::value_error("a group is 7 fields (meshd.Group)");
  Group g;
  g.dims = t[0].cast<std::vector<std::string>>();
  g.ranks = t[1].cast<std::vector<int64_t>>();
  g.index = t[2].cast<int64_t>();
  g.group_rank = t[3].cast<int64_t>();
  g.group_index = t[4].cast<int64_t>();
  g.key = t[5].cast<std::string>();
  for (const py::handle id : t[6].cast<py::list>()) {
    const std::string bytes = id.cast<py::bytes>();
    if (bytes.size() != sizeof(NcclUniqueId)) {
      throw py::value_error("an NCCL unique id is 128 bytes");
    }
    NcclUniqueId u;
    std::memcpy(u.data(), bytes.data(), u.size());
    g.ids.push_back(u);
  }
  return g;
}

py::dict PlacementDict(const Placement& p) {
  py::dict d;
  d["rank"] = p.rank;
  d["world_size"] = p.world_size;
  d["local_rank"] = p.local_rank;
  d["local_world_size"] = p.local_world;
  d["node_rank"] = p.node_rank;
  d["num_nodes"] = p.num_nodes;
  d["generation"] = p.generation;
  d["gpu_index"] = p.gpu_index;
  d["gpu_uuid"] = p.gpu_uuid;
  d["gpu_pci_bus_id"] = p.gpu_pci_bus_id;
  d["gpu_name"] = p.gpu_name;
  d["nvlink_clique"] = p.gpu_nvlink_clique;
  d["simulated"] = p.gpu_simulated;
  return d;
}

using Dim = std::variant<int, std::string>;

}  // namespace
}  // namespace meshd::python

PYBIND11_MODULE(_core, m) {
  using namespace meshd;          // NOLINT(build/namespaces)
  using namespace meshd::python;  // NOLINT(build/namespaces)
  m.doc() = "The C++ core of meshd (libmeshd_client); use the `meshd` package, not this module.";

  g_main_thread = py::module_::import("threading")
                      .attr("main_thread")()
                      .attr("ident")
                      .cast<unsigned long>();  // NOLINT(runtime/int)

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      SetPythonError(e.status());
    }
  });

  m.def(
      "_shutdown", [] { g_finalizing.store(true); },
      "Called at interpreter exit (atexit): no meshd thread touches Python after it.");

  m.def(
      "_raise_status",
      [](int code, const std::string& message) {
        throw StatusError(absl::Status(static_cast<absl::StatusCode>(code), message));
      },
      py::arg("code"), py::arg("message"),
      "Raises the meshd error of an absl status code, through the C++ translator (for tests).");

  py::class_<DeviceMesh>(m, "_DeviceMesh", "A meshd::DeviceMesh (a value).")
      .def_property_readonly("ndim", &DeviceMesh::ndim)
      .def_property_readonly("shape", &DeviceMesh::shape)
      .def_property_readonly("names", &DeviceMesh::names)
      .def_property_readonly("key", &DeviceMesh::key)
      .def_property_readonly("rank", &DeviceMesh::rank)
      .def("size", [](const DeviceMesh& d) { return d.size(); })
      .def(
          "size", [](const DeviceMesh& d, const Dim& dim) { return Value(d.size(dim)); },
          py::arg("dim"))
      .def("coordinate", &DeviceMesh::coordinate)
      .def(
          "local_rank",
          [](const DeviceMesh& d, const Dim& dim) { return Value(d.local_rank(dim)); },
          py::arg("dim"))
      .def(
          "group_ranks",
          [](const DeviceMesh& d, const Dim& dim) { return Value(d.group_ranks(dim)); },
          py::arg("dim"))
      .def(
          "all_group_ranks",
          [](const DeviceMesh& d, const Dim& dim) { return Value(d.all_group_ranks(dim)); },
          py::arg("dim"))
      .def(
          "dim_index", [](const DeviceMesh& d, const Dim& dim) { return Value(d.DimIndex(dim)); },
          py::arg("dim"))
      .def(
          "resolve_dim",
          [](const DeviceMesh& d, const Dim& dim) { return Value(d.ResolveDim(dim)); },
          py::arg("dim"))
      .def("root", &DeviceMesh::root)
      .def_static(
          "create",
          [](const std::vector<int64_t>& shape, const std::vector<std::string>& names, int64_t rank,
             int64_t world_size) {
            return Value(DeviceMesh::Create(shape, names, rank, world_size));
          },
          py::arg("shape"), py::arg("names"), py::arg("rank"), py::arg("world_size"))
      .def_static(
          "from_rank_table",
          [](const std::vector<int64_t>& shape, const std::vector<int64_t>& ranks,
             const std::vector<std::string>& names, int64_t rank, int64_t world_size) {
            return Value(DeviceMesh::FromRankTable(shape, ranks, names, rank, world_size));
          },
          py::arg("shape"), py::arg("ranks"), py::arg("names"), py::arg("rank"),
          py::arg("world_size"))
      .def("view", [](const DeviceMesh& d) { return Value(d.view()); })
      .def("to_string", &DeviceMesh::ToString)
      .def("__repr__", &DeviceMesh::ToString)
      .def("__eq__", [](const DeviceMesh& a, const DeviceMesh& b) { return a == b; })
      .def("__hash__", [](const DeviceMesh& d) { return d.Hash(); })
      .def(
          "slice",
          [](const DeviceMesh& d, const std::vector<std::string>& names) {
            return Value(d.Slice(names));
          },
          py::arg("names"))
      .def(
          "flatten",
          [](const DeviceMesh& d, const std::optional<std::string>& name) {
            return Value(d.Flatten(name));
          },
          py::arg("name") = py::none())
      .def(
          "unflatten",
          [](const DeviceMesh& d, const Dim& dim, const std::vector<int64_t>& sizes,
             const std::vector<std::string>& names) {
            return Value(d.Unflatten(dim, sizes, names));
          },
          py::arg("dim"), py::arg("sizes"), py::arg("names"))
      .def_static(
          "concatenate",
          [](const std::vector<DeviceMesh>& meshes) {
            return Value(DeviceMesh::Concatenate(meshes));
          },
          py::arg("meshes"));

  py::class_<PyClient>(m, "_Client", "An attached meshd::Client.")
      .def_property_readonly("placement",
                             [](const PyClient& c) { return PlacementDict(c.placement()); })
      .def_property("timeout", &PyClient::timeout, &PyClient::set_timeout)
      .def_property_readonly("detached", &PyClient::detached)
      .def("detach", &PyClient::Detach)
      .def("health",
           [](PyClient& c) {
             std::shared_ptr<Client> client = c.Get();
             Check(client->health());
           })
      .def(
          "on_generation_end",
          [](PyClient& c, py::function fn) {
            std::shared_ptr<Client> client = c.Get();
            auto cb = std::make_shared<PyCallback>(std::move(fn));
            // Without the GIL: the client calls it at once when the generation already ended,
            // and its watch thread may be running callbacks (waiting for the GIL) meanwhile.
            py::gil_scoped_release release;
            client->OnGenerationEnd([cb](const absl::Status& s) { (*cb)(s); });
            client.reset();
          },
          py::arg("callback"))
      .def(
          "init_device_mesh",
          [](PyClient& c, const std::vector<int64_t>& shape, const std::vector<std::string>& names,
             const std::string& mesh_name, bool nccl_ids) {
            std::shared_ptr<Client> client = c.Get();
            const MeshIds ids = nccl_ids ? MeshIds::kFetch : MeshIds::kNone;
            return Value(
                c.Run([&] { return client->InitDeviceMesh(shape, names, mesh_name, ids); }));
          },
          py::arg("shape"), py::arg("names"), py::arg("mesh_name"), py::arg("nccl_ids"))
      .def(
          "groups",
          [](PyClient& c, const DeviceMesh& mesh) {
            std::shared_ptr<Client> client = c.Get();
            std::vector<Group> groups = Value(c.Run([&] { return client->Groups(mesh); }));
            py::list out;
            for (const Group& g : groups) out.append(GroupTuple(g));
            return out;
          },
          py::arg("mesh"))
      .def(
          "init_device_mesh_from_ranks",
          [](PyClient& c, const std::vector<int64_t>& shape, const std::vector<int64_t>& ranks,
             const std::vector<std::string>& names, const std::string& mesh_name, bool nccl_ids) {
            std::shared_ptr<Client> client = c.Get();
            const MeshIds ids = nccl_ids ? MeshIds::kFetch : MeshIds::kNone;
            return Value(c.Run([&] {
              return client->InitDeviceMeshFromRanks(shape, ranks, names, mesh_name, ids);
            }));
          },
          py::arg("shape"), py::arg("ranks"), py::arg("names"), py::arg("mesh_name"),
          py::arg("nccl_ids"))
      .def(
          "mesh_from_group",
          [](PyClient& c, const py::tuple& group, const std::string& dim_name) {
            std::shared_ptr<Client> client = c.Get();
            const Group g = GroupFromTuple(group);
            return Value(c.Run([&] { return client->MeshFromGroup(g, dim_name); }));
          },
          py::arg("group"), py::arg("dim_name"))
      .def(
          "group_of",
          [](PyClient& c, const DeviceMesh& mesh, int dim) {
            std::shared_ptr<Client> client = c.Get();
            return GroupTuple(Value(c.Run([&] { return client->GroupOf(mesh, dim); })));
          },
          py::arg("mesh"), py::arg("dim"))
      .def(
          "key_set",
          [](PyClient& c, const std::string& key, const std::string& value,
             std::optional<double> timeout) {
            std::shared_ptr<Client> client = c.Get();
            const absl::Duration t = c.Timeout(timeout);
            Check(c.Run([&] { return client->KeySet(key, value, t); }));
          },
          py::arg("key"), py::arg("value"), py::arg("timeout") = py::none())
      .def(
          "key_get",
          [](PyClient& c, const std::string& key, std::optional<double> timeout) {
            std::shared_ptr<Client> client = c.Get();
            const absl::Duration t = c.Timeout(timeout);
            return py::bytes(Value(c.Run([&] { return client->KeyGet(key, t); })));
          },
          py::arg("key"), py::arg("timeout") = py::none())
      .def(
          "key_add",
          [](PyClient& c, const std::string& key, int64_t delta, std::optional<double> timeout) {
            std::shared_ptr<Client> client = c.Get();
            const absl::Duration t = c.Timeout(timeout);
            return Value(c.Run([&] { return client->KeyAdd(key, delta, t); }));
          },
          py::arg("key"), py::arg("delta"), py::arg("timeout") = py::none())
      .def(
          "key_compare_set",
          [](PyClient& c, const std::string& key, const std::string& expected,
             const std::string& desired, std::optional<double> timeout) {
            std::shared_ptr<Client> client = c.Get();
            const absl::Duration t = c.Timeout(timeout);
            return py::bytes(
                Value(c.Run([&] { return client->KeyCompareSet(key, expected, desired, t); })));
          },
          py::arg("key"), py::arg("expected"), py::arg("desired"), py::arg("timeout") = py::none())
      .def(
          "key_compare_swap",
          [](PyClient& c, const std::string& key, const std::string& expected,
             const std::string& desired, std::optional<double> timeout) {
            std::shared_ptr<Client> client = c.Get();
            const absl::Duration t = c.Timeout(timeout);
            bool swapped = false;
            std::string now = Value(
                c.Run([&] { return client->KeyCompareSet(key, expected, desired, t, &swapped); }));
            return py::make_tuple(swapped, py::bytes(now));
          },
          py::arg("key"), py::arg("expected"), py::arg("desired"), py::arg("timeout") = py::none())
      .def(
          "key_wait",
          [](PyClient& c, const std::vector<std::string>& keys, std::optional<double> timeout) {
            std::shared_ptr<Client> client = c.Get();
            const absl::Duration t = c.Timeout(timeout);
            Check(c.Run([&] { return client->KeyWait(keys, t); }));
          },
          py::arg("keys"), py::arg("timeout") = py::none())
      .def(
          "key_check",
          [](PyClient& c, const std::vector<std::string>& keys, std::optional<double> timeout) {
            std::shared_ptr<Client> client = c.Get();
            const absl::Duration t = c.Timeout(timeout);
            return Value(c.Run([&] { return client->KeyCheck(keys, t); }));
          },
          py::arg("keys"), py::arg("timeout") = py::none())
      .def(
          "key_delete",
          [](PyClient& c, const std::string& key, std::optional<double> timeout) {
            std::shared_ptr<Client> client = c.Get();
            const absl::Duration t = c.Timeout(timeout);
            return Value(c.Run([&] { return client->KeyDelete(key, t); }));
          },
          py::arg("key"), py::arg("timeout") = py::none())
      .def(
          "key_count",
          [](PyClient& c, std::optional<double> timeout) {
            std::shared_ptr<Client> client = c.Get();
            const absl::Duration t = c.Timeout(timeout);
            return Value(c.Run([&] { return client->KeyCount(t); }));
          },
          py::arg("timeout") = py::none());

  m.def("attach", &Attach, py::arg("job"), py::arg("socket"), py::arg("local_rank"),
        py::arg("local_world"), py::arg("min_nodes"), py::arg("max_nodes"), py::arg("timeout"),
        "Attaches to the host's meshd agent (empty/-1/0: the C++ defaults from the environment).");
}
