"""Real meshd daemons and worker processes for the Python tests (no mocks).

What lives here:
  * ``Process``: a subprocess whose stdout and stderr are read continuously by two threads (so a
    pipe never fills), every line kept for diagnostics, with ``wait_for_line`` (deadline-bound),
    ``terminate`` (SIGTERM, then SIGKILL) and ``kill`` (SIGKILL).
  * ``Standalone`` / ``Coordinator`` / ``Agent``: ``meshd standalone|coordinator|agent`` started on
    ``127.0.0.1:0`` and a fresh unix socket; ``start()`` returns once the daemon printed its
    "meshd ... listening on ..." line. Each is a context manager that stops the daemon on exit.
  * ``Cluster``: one coordinator and K agents (node-0 ... node-{K-1}); ``kill_agent(i)``.
  * ``worker_env`` / ``start_workers`` / ``run_workers``: N worker processes
    (``/usr/bin/python3 -c CODE`` or a script) with MESHD_SOCKET, MESHD_JOB, LOCAL_RANK,
    LOCAL_WORLD_SIZE, MESHD_NNODES and PYTHONPATH set; their exit codes and output are collected
    under a deadline.
  * ``poll_until``: wait for a condition with a deadline (the only way tests here synchronize).

Paths come from the environment ctest sets: MESHD_BIN (the meshd binary), MESHCTL_BIN (meshctl),
MESHD_PYTHONPATH or PYTHONPATH (where the built ``meshd`` package lives), MESHD_PYTHON (the
interpreter for workers, default /usr/bin/python3). Without them the paths under ``build/`` of
this checkout are used.

Thread-safety: a ``Process`` may be watched from any thread; start/stop it from one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("MESHD_BUILD_DIR", REPO_ROOT / "build"))

#: How long a daemon may take to print its "listening" line.
START_TIMEOUT = 20.0
#: How long a stopped daemon may take to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 10.0

T = TypeVar("T")


def meshd_bin() -> str:
    """The meshd binary: $MESHD_BIN, else build/bin/meshd."""
    return os.environ.get("MESHD_BIN") or str(BUILD_DIR / "bin" / "meshd")


def meshctl_bin() -> str:
    """The meshctl binary: $MESHCTL_BIN, else meshctl beside meshd."""
    return os.environ.get("MESHCTL_BIN") or str(Path(meshd_bin()).parent / "meshctl")


def python_bin() -> str:
    """The interpreter for worker processes: $MESHD_PYTHON, else Debian's /usr/bin/python3."""
    return os.environ.get("MESHD_PYTHON") or "/usr/bin/python3"


def package_path() -> str:
    """Where the built ``meshd`` package is: $MESHD_PYTHONPATH, else build/python."""
    return os.environ.get("MESHD_PYTHONPATH") or str(BUILD_DIR / "python")


def poll_until(
    condition: Callable[[], Optional[T]],
    timeout: float,
    what: str = "condition",
    interval: float = 0.01,
) -> T:
    """Calls ``condition`` until it returns something truthy, and returns that.

    Raises TimeoutError naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def short_tempdir(prefix: str = "meshd-py-") -> str:
    """A fresh directory under /tmp: unix socket paths must stay under 108 bytes, which pytest's
    tmp_path does not guarantee."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


class Process:
    """A subprocess with both output streams read continuously into line lists.

    ``lines`` (stdout) and ``err_lines`` (stderr) grow as the process writes; ``output()`` joins
    them for assertion messages.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        name: Optional[str] = None,
        cwd: Optional[str] = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name or Path(self.argv[0]).name
        self.lines: List[str] = []
        self.err_lines: List[str] = []
        self._cond = threading.Condition()
        self._closed = 0
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err_lines), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, into: List[str]) -> None:
        try:
            for line in stream:
                with self._cond:
                    into.append(line.rstrip("\n"))
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._closed += 1
                self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for_line(self, prefix: str, timeout: float, stream: str = "stdout") -> str:
        """Waits for a line of ``stream`` ("stdout" or "stderr") containing ``prefix``; returns
        the rest of the line after it. Raises TimeoutError (with the output so far) at the
        deadline, RuntimeError when the process closed its output without printing it."""
        lines = self.lines if stream == "stdout" else self.err_lines
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = 0
            while True:
                for line in lines[seen:]:
                    at = line.find(prefix)
                    if at >= 0:
                        return line[at + len(prefix):]
                seen = len(lines)
                if self._closed == 2:
                    raise RuntimeError(
                        f"{self.name} exited (rc={self.proc.poll()}) before printing "
                        f"{prefix!r}:\n{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name} did not print {prefix!r} within {timeout:.1f}s:\n"
                        f"{self.output()}")
                self._cond.wait(left)

    def wait(self, timeout: float) -> int:
        """Waits for the process to exit and its output to be read; returns its exit code
        (negative: the signal). Raises subprocess.TimeoutExpired at the deadline."""
        deadline = time.monotonic() + timeout
        rc = self.proc.wait(timeout=timeout)
        for t in self._readers:
            t.join(max(0.0, deadline - time.monotonic()) + 1.0)
        return rc

    def send_signal(self, sig: int) -> None:
        """Sends ``sig`` if the process still runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and waits for the exit."""
        self.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """SIGTERM; after ``timeout`` seconds SIGKILL. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        for t in self._readers:
            t.join(1.0)
        return self.proc.returncode

    def output(self) -> str:
        """Everything read so far, for diagnostics."""
        with self._cond:
            out, err = list(self.lines), list(self.err_lines)
        return (f"--- {self.name} ({' '.join(self.argv[:3])} ...) stdout:\n" + "\n".join(out) +
                f"\n--- {self.name} stderr:\n" + "\n".join(err) + "\n")

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc) -> None:
        self.terminate()


class _Daemon:
    """A meshd daemon: started by ``start()``, stopped on exit of the ``with`` block."""

    _ready = ""

    def __init__(self, args: Sequence[str], name: str, env: Optional[Mapping[str, str]] = None,
                 log_level: str = "info") -> None:
        self.args = [meshd_bin(), *args, "--log-level", log_level]
        self.name = name
        self.env = dict(env) if env is not None else _daemon_env()
        self.process: Optional[Process] = None
        self.address = ""

    def start(self, timeout: float = START_TIMEOUT) -> "_Daemon":
        """Starts the daemon and waits for its "listening" line."""
        self.process = Process(self.args, env=self.env, name=self.name)
        try:
            self._on_ready(self.process.wait_for_line(self._ready, timeout))
        except BaseException:
            self.process.terminate()
            raise
        return self

    def _on_ready(self, rest: str) -> None:
        self.address = rest.strip()

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        return self.process.terminate(timeout) if self.process else None

    def kill(self) -> None:
        """SIGKILL: the daemon dies without telling anyone (a lost node)."""
        if self.process:
            self.process.kill()

    def running(self) -> bool:
        return self.process is not None and self.process.running()

    def output(self) -> str:
        return self.process.output() if self.process else f"{self.name}: not started\n"

    def __enter__(self):
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _daemon_env() -> Dict[str, str]:
    # The daemons read MESHD_* from the environment (CLI11 envnames): keep only what is harmless.
    return {k: v for k, v in os.environ.items() if not k.startswith("MESHD_")}


class Standalone(_Daemon):
    """``meshd standalone``: coordinator and agent in one process, on a fresh socket.

    ``address``: the coordinator's HOST:PORT; ``socket``: the agent's unix socket path.
    """

    _ready = "meshd standalone listening on "

    def __init__(self, gpus: int = 4, node_name: str = "node-0", socket: Optional[str] = None,
                 extra_args: Sequence[str] = (), log_level: str = "info") -> None:
        self.dir = None if socket else short_tempdir()
        self.socket = socket or os.path.join(self.dir, "agent.sock")
        self.gpus = gpus
        self.node_name = node_name
        super().__init__(["standalone", "--listen", "127.0.0.1:0", "--socket", self.socket,
                          "--simulate-gpus", str(gpus), "--node-name", node_name, *extra_args],
                         name=f"standalone[{node_name}]", log_level=log_level)

    def _on_ready(self, rest: str) -> None:
        # "<host:port> and unix:<socket>"
        self.address = rest.split(" and ")[0].strip()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class Coordinator(_Daemon):
    """``meshd coordinator`` on 127.0.0.1:0; ``address`` is the HOST:PORT it serves."""

    _ready = "meshd coordinator listening on "

    def __init__(self, heartbeat_interval: Optional[str] = None,
                 heartbeat_timeout: Optional[str] = None, extra_args: Sequence[str] = (),
                 log_level: str = "info") -> None:
        args = ["coordinator", "--listen", "127.0.0.1:0"]
        if heartbeat_interval:
            args += ["--heartbeat-interval", heartbeat_interval]
        if heartbeat_timeout:
            args += ["--heartbeat-timeout", heartbeat_timeout]
        super().__init__([*args, *extra_args], name="coordinator", log_level=log_level)


class Agent(_Daemon):
    """``meshd agent`` of ``coordinator`` on a fresh socket in ``directory``. (Its heartbeat
    timing is the coordinator's to tell it: an agent refuses the --heartbeat-* flags.)"""

    _ready = "meshd agent listening on "

    def __init__(self, coordinator: str, directory: str, node_name: str, gpus: int = 4,
                 extra_args: Sequence[str] = (), log_level: str = "info") -> None:
        self.socket = os.path.join(directory, f"{node_name}.sock")
        self.node_name = node_name
        self.gpus = gpus
        args = ["agent", "--coordinator", coordinator, "--socket", self.socket,
                "--simulate-gpus", str(gpus), "--node-name", node_name]
        super().__init__([*args, *extra_args], name=f"agent[{node_name}]", log_level=log_level)


class Cluster:
    """A coordinator and ``nodes`` agents named node-0 ... node-{nodes-1}, each with ``gpus``
    simulated GPUs. ``agents[i].socket`` is node i's socket. A context manager: everything is
    stopped (agents first) on exit."""

    def __init__(self, nodes: int = 2, gpus: int = 4, heartbeat_interval: Optional[str] = None,
                 heartbeat_timeout: Optional[str] = None, log_level: str = "info") -> None:
        self.dir = short_tempdir()
        self.nodes = nodes
        self.gpus = gpus
        self.log_level = log_level
        self.coordinator = Coordinator(heartbeat_interval, heartbeat_timeout, log_level=log_level)
        self.agents: List[Agent] = []

    @property
    def address(self) -> str:
        return self.coordinator.address

    @property
    def sockets(self) -> List[str]:
        return [a.socket for a in self.agents]

    def start(self, timeout: float = START_TIMEOUT) -> "Cluster":
        """Starts the coordinator, then every agent (each waited for)."""
        try:
            self.coordinator.start(timeout)
            for i in range(self.nodes):
                self.add_agent(f"node-{i}", timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def add_agent(self, node_name: str, gpus: Optional[int] = None,
                  timeout: float = START_TIMEOUT) -> Agent:
        """Starts one more agent (e.g. a node joining an elastic job)."""
        agent = Agent(self.coordinator.address, self.dir, node_name,
                      gpus if gpus is not None else self.gpus, log_level=self.log_level)
        self.agents.append(agent)
        agent.start(timeout)
        return agent

    def kill_agent(self, i: int) -> None:
        """SIGKILL agent i: its node goes silent (the coordinator notices after the heartbeat
        timeout)."""
        self.agents[i].kill()

    def stop(self) -> None:
        for a in self.agents:
            a.stop()
        self.coordinator.stop()

    def output(self) -> str:
        return self.coordinator.output() + "".join(a.output() for a in self.agents)

    def __enter__(self) -> "Cluster":
        if self.coordinator.process is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def meshctl(*args: str, coordinator: Optional[str] = None, agent: Optional[str] = None,
            timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Runs meshctl against a coordinator (or an agent's socket); returns the completed process."""
    argv = [meshctl_bin()]
    if coordinator:
        argv += ["--coordinator", coordinator]
    if agent:
        argv += ["--agent", agent]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                          env=_daemon_env())


def worker_env(socket: Optional[str], job: Optional[str], local_rank: Optional[int],
               local_world: Optional[int], nnodes: Union[int, str, None] = 1,
               extra: Optional[Mapping[str, str]] = None,
               pythonpath: bool = True) -> Dict[str, str]:
    """The environment of one worker: this one's, minus any MESHD_*/LOCAL_* it had, plus the
    given values (None: left unset) and PYTHONPATH with the built package first (``pythonpath``
    False: no PYTHONPATH at all, e.g. for an interpreter that has meshd installed)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MESHD_") and k not in ("LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    for key, value in (("MESHD_SOCKET", socket), ("MESHD_JOB", job), ("LOCAL_RANK", local_rank),
                       ("LOCAL_WORLD_SIZE", local_world), ("MESHD_NNODES", nnodes)):
        if value is not None:
            env[key] = str(value)
    if pythonpath:
        paths = [package_path(), str(Path(__file__).resolve().parent)]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


@dataclasses.dataclass
class WorkerResult:
    """How a worker ended: exit code (negative: killed by that signal) and its output."""

    node: int
    local_rank: int
    returncode: Optional[int]
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"worker node {self.node} local rank {self.local_rank}: rc={self.returncode}\n"
                f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}")


class Workers:
    """Worker processes, one per (socket, local rank): ``len(sockets) * local_world`` in all.

    ``code`` runs as ``python3 -c code`` (or pass ``script``=path); ``args`` are appended to the
    command line. ``procs[i]`` is worker i (node i // local_world, local rank i % local_world).
    ``python``: another interpreter (then PYTHONPATH is not set: it must have meshd installed).
    A context manager that kills what still runs on exit.
    """

    def __init__(self, sockets: Sequence[str], job: str, local_world: int, code: Optional[str] = None,
                 script: Optional[str] = None, nnodes: Union[int, str, None] = None,
                 args: Sequence[str] = (), extra_env: Optional[Mapping[str, str]] = None,
                 python: Optional[str] = None) -> None:
        if (code is None) == (script is None):
            raise ValueError("pass exactly one of code and script")
        nnodes = len(sockets) if nnodes is None else nnodes
        interpreter = python or python_bin()
        cmd = [interpreter, "-c", code] if code is not None else [interpreter, script]
        self.procs: List[Process] = []
        self.where: List[tuple] = []
        try:
            for node, socket in enumerate(sockets):
                for r in range(local_world):
                    env = worker_env(socket, job, r, local_world, nnodes, extra_env,
                                     pythonpath=python is None)
                    self.procs.append(Process([*cmd, *args], env=env, name=f"worker[{node}.{r}]"))
                    self.where.append((node, r))
        except BaseException:
            self.kill()
            raise

    def wait(self, timeout: float) -> List[WorkerResult]:
        """Waits (one deadline for all) for every worker to exit; the ones still running at the
        deadline are killed and reported with returncode None."""
        deadline = time.monotonic() + timeout
        results = []
        for p, (node, r) in zip(self.procs, self.where):
            try:
                rc: Optional[int] = p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                rc = None
            with p._cond:
                out, err = "\n".join(p.lines), "\n".join(p.err_lines)
            results.append(WorkerResult(node, r, rc, out, err))
        return results

    def kill(self) -> None:
        for p in self.procs:
            if p.running():
                p.kill()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def start_workers(sockets: Union[str, Sequence[str]], job: str, local_world: int,
                  code: Optional[str] = None, **kwargs) -> Workers:
    """Starts the workers (see ``Workers``); ``sockets`` may be one socket (one node)."""
    if isinstance(sockets, str):
        sockets = [sockets]
    return Workers(sockets, job, local_world, code, **kwargs)


def run_workers(sockets: Union[str, Sequence[str]], job: str, local_world: int,
                code: Optional[str] = None, timeout: float = 60.0,
                **kwargs) -> List[WorkerResult]:
    """Starts the workers and waits for all of them; returns their results in worker order."""
    with start_workers(sockets, job, local_world, code, **kwargs) as workers:
        return workers.wait(timeout)


def assert_all_ok(results: Sequence[WorkerResult], extra: str = "") -> None:
    """Fails with every worker's output unless each exited 0."""
    bad = [r for r in results if r.returncode != 0]
    if bad:
        raise AssertionError("workers failed:\n" + "\n".join(str(r) for r in results) + extra)


@contextlib.contextmanager
def standalone(gpus: int = 4, node_name: str = "node-0", **kwargs) -> Iterator[Standalone]:
    """``with standalone(gpus=4) as d:`` a started ``meshd standalone`` (d.socket, d.address)."""
    with Standalone(gpus, node_name, **kwargs).start() as d:
        yield d


@contextlib.contextmanager
def cluster(nodes: int = 2, gpus: int = 4, **kwargs) -> Iterator[Cluster]:
    """``with cluster(nodes=2, gpus=4) as c:`` a started coordinator and its agents."""
    with Cluster(nodes, gpus, **kwargs).start() as c:
        yield c


if __name__ == "__main__":  # a quick manual check: python3 meshd_cluster.py
    with standalone(gpus=2) as d:
        print("standalone", d.address, d.socket)
    with cluster(nodes=2, gpus=2) as c:
        print("cluster", c.address, c.sockets)
    sys.exit(0)
