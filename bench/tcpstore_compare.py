#!/usr/bin/python3
"""meshd side by side with PyTorch's TCPStore, on the same workload.

For each size (nodes x gpus-per-node ranks, the pp x dp x cp x tp mesh meshd_bench uses, and
the same groups: every dim's groups plus the world group), it runs in alternation:

  meshd      build/bin/meshd_bench --json (a real coordinator, simulated agents over gRPC):
             connecting, registering every node and the job, all timed from the start (cold)
  meshd-registered  meshd_bench --register-first: the job alone, timed from its start, on a
             cluster whose agents are registered (meshd's normal state: agents are a standing
             service, while a TCPStore is created and connected for every job)
  tcp-shared PyTorch's TCPStore, simulated ranks sharing one connection per driver process
             (TCPStore's best case)
  tcp-rank   PyTorch's TCPStore, one connection per rank (what a real job opens)
  grpc-floor build/bin/grpc_floor_bench --json: meshd_bench's three calls per node (register,
             join held for all, resolve held for all) with payloads of meshd's sizes on a bare
             gRPC server: no meshd in the path, the floor under meshd's figures (--no-floor: skip)

The TCPStore workload is what torch.distributed does: every rank joins through the store (an
atomic add gives it its rank, the last to arrive publishes that everyone joined, the others wait
for it), then for every group its first rank sets the 128-byte id and every other member gets it
(as ProcessGroupNCCL broadcasts its ncclUniqueId). Simulated ranks are spread over --procs driver
processes; each sets the ids it leads before it waits on any other.

Prints a table, the ratios (t_ids of each system / t_ids of meshd cold, and of meshd-registered),
and one JSON line per run.
Needs Debian's python3-torch (run with /usr/bin/python3).
"""
import argparse
import datetime
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

ID_BYTES = 128


def default_shape(nodes, gpus):
    return [("pp", 4), ("dp", -1), ("cp", 2), ("tp", gpus)] if nodes % 8 == 0 else [
        ("dp", -1), ("tp", gpus)]


def resolve_shape(shape, world):
    known = 1
    for _, s in shape:
        if s != -1:
            known *= s
    return [(n, world // known if s == -1 else s) for n, s in shape]


def groups_of(rank, sizes):
    """The (key, leader) of every group `rank` is in: one per dim, then the world group."""
    strides = [1] * len(sizes)
    for d in range(len(sizes) - 2, -1, -1):
        strides[d] = strides[d + 1] * sizes[d + 1]
    out = []
    coord = [(rank // strides[d]) % sizes[d] for d in range(len(sizes))]
    for d in range(len(sizes)):
        leader = rank - coord[d] * strides[d]
        out.append((f"g/{d}/{leader}", leader))  # the leader names the group
    out.append(("g/world", 0))
    return out


def started(cpus):
    """The pool's first task: its processes are up once every one has run it. They were forked
    from the (possibly confined) server process; the load runs on every CPU."""
    os.sched_setaffinity(0, cpus)
    time.sleep(0.05)  # long enough that no process takes two of them
    return os.getpid()


def driver(args):
    """One driver process: its slice of ranks, through the store. Returns its finish times."""
    (host, port, world, sizes, ranks, per_rank, start, timeout_s) = args
    from torch.distributed import TCPStore
    timeout = datetime.timedelta(seconds=timeout_s)

    def connect():
        return TCPStore(host, port, None, False, timeout=timeout, wait_for_workers=False)

    shared = None if per_rank else connect()
    stores = [connect() if per_rank else shared for _ in ranks]
    # Join: an atomic add gives each rank its place; the last one publishes "joined".
    for s in stores:
        if s.add("rdzv/arrived", 1) == world:
            s.set("rdzv/joined", b"1")
    for s in stores:
        s.wait(["rdzv/joined"])
    t_ranks = time.time() - start
    # Ids: leaders set theirs first, then every rank gets the ones it does not lead.
    rank_groups = [groups_of(r, sizes) for r in ranks]
    for r, s, gs in zip(ranks, stores, rank_groups):
        for key, leader in gs:
            if leader == r:
                s.set(key, os.urandom(ID_BYTES))
    for r, s, gs in zip(ranks, stores, rank_groups):
        for key, leader in gs:
            if leader != r and len(s.get(key)) != ID_BYTES:
                raise RuntimeError(f"rank {r}: id of {key} is not {ID_BYTES} bytes")
    return t_ranks, time.time() - start, len(stores) if per_rank else 1


def run_tcpstore(nodes, gpus, per_rank, procs, timeout_s, server_cpu=-1):
    from torch.distributed import TCPStore
    world = nodes * gpus
    sizes = [s for _, s in resolve_shape(default_shape(nodes, gpus), world)]
    slices = [list(range(p, world, procs)) for p in range(procs)]
    cpus = os.sched_getaffinity(0)
    if server_cpu >= 0:  # the store's server thread starts on one CPU, as meshd's coordinator does
        os.sched_setaffinity(0, {server_cpu})
    try:
        master = TCPStore("127.0.0.1", 0, None, True,
                          timeout=datetime.timedelta(seconds=timeout_s), wait_for_workers=False)
        with mp.get_context("fork").Pool(procs) as pool:
            # The driver processes are started (forked, ~15-30 ms) before the clock starts, as
            # meshd_bench's simulator is: both sides time the store or the coordinator, not the
            # harness.
            pool.map(started, [cpus] * procs, chunksize=1)
            start = time.time()
            async_result = pool.map_async(driver, [("127.0.0.1", master.port, world, sizes, sl,
                                                    per_rank, start, timeout_s) for sl in slices],
                                          chunksize=1)
            results = async_result.get(timeout=timeout_s)
    finally:
        os.sched_setaffinity(0, cpus)
    t_ranks = max(r[0] for r in results)
    t_ids = max(r[1] for r in results)
    connections = sum(r[2] for r in results)
    groups_per_rank = len(sizes) + 1
    return {"system": "tcpstore-per-rank" if per_rank else "tcpstore-shared", "nodes": nodes,
            "gpus_per_node": gpus, "ranks": world, "connections": connections,
            "t_ranks_s": t_ranks, "t_ids_s": t_ids,
            "store_ops": world * 2 + world * groups_per_rank,
            "server_cpus": str(server_cpu) if server_cpu >= 0 else "all"}


def run_meshd(bench, nodes, gpus, timeout_s, register_first=False, server_cpu=-1):
    """meshd_bench; with register_first, the job starts on a cluster whose agents are registered
    (meshd's normal state: agents are a standing service) and its times count from the job's start."""
    out = subprocess.run([bench, "--nodes", str(nodes), "--gpus-per-node", str(gpus), "--json",
                          "--timeout", str(timeout_s), "--coordinator-cpu", str(server_cpu)] +
                         (["--register-first"] if register_first else []),
                         capture_output=True, text=True, timeout=timeout_s + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    j = json.loads(out.stdout.strip().splitlines()[-1])
    if register_first:
        j["system"] = "meshd-registered"
        j["t_ranks_s"], j["t_ids_s"] = j["job_ranks_s"], j["job_ids_s"]
    else:
        j["system"] = "meshd"
    return j


def run_floor(bench, nodes, gpus, timeout_s, server_cpu=-1):
    """grpc_floor_bench: meshd_bench's calls on a bare gRPC server (t_ids_s: every node resolved)."""
    out = subprocess.run([bench, "--nodes", str(nodes), "--json", "--timeout", str(timeout_s),
                          "--server-cpu", str(server_cpu)],
                         capture_output=True, text=True, timeout=timeout_s + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    j = json.loads(out.stdout.strip().splitlines()[-1])
    j.update(system="grpc-floor", ranks=nodes * gpus, t_ranks_s=j["t_joined_s"],
             t_ids_s=j["t_done_s"])
    return j


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", default="64,1024", help="comma-separated node counts")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--repeat", type=int, default=1, help="alternating rounds per size")
    p.add_argument("--procs", type=int, default=4, help="TCPStore driver processes")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run")
    p.add_argument("--max-per-rank-connections", type=int, default=16384,
                   help="skip tcp-rank above this many ranks (file descriptors)")
    p.add_argument("--meshd-bench", default=os.path.join(here, "..", "build", "bin", "meshd_bench"))
    p.add_argument("--floor-bench",
                   default=os.path.join(here, "..", "build", "bin", "grpc_floor_bench"))
    p.add_argument("--no-floor", action="store_true", help="skip the bare-gRPC floor runs")
    p.add_argument("--server-cpu", type=int, default=min(os.sched_getaffinity(0)),
                   help="CPU the server under test (meshd's coordinator, TCPStore's store) is "
                        "confined to while the load runs on every CPU; -1: any (default: %(default)s)")
    a = p.parse_args()
    if a.server_cpu >= 0 and a.server_cpu not in os.sched_getaffinity(0):
        p.error(f"--server-cpu {a.server_cpu} is not a CPU this process may use; pick another or -1")

    rows = []
    for nodes in [int(n) for n in a.nodes.split(",")]:
        world = nodes * a.gpus_per_node
        for _ in range(a.repeat):
            cpu = a.server_cpu
            runs = [("meshd", lambda: run_meshd(a.meshd_bench, nodes, a.gpus_per_node, a.timeout,
                                                server_cpu=cpu)),
                    ("meshd-registered", lambda: run_meshd(a.meshd_bench, nodes, a.gpus_per_node,
                                                           a.timeout, register_first=True,
                                                           server_cpu=cpu)),
                    ("tcpstore-shared", lambda: run_tcpstore(nodes, a.gpus_per_node, False,
                                                             a.procs, a.timeout, cpu))]
            if not a.no_floor:
                runs.append(("grpc-floor", lambda: run_floor(a.floor_bench, nodes, a.gpus_per_node,
                                                             a.timeout, cpu)))
            if world <= a.max_per_rank_connections:
                runs.append(("tcpstore-per-rank", lambda: run_tcpstore(
                    nodes, a.gpus_per_node, True, a.procs, a.timeout, cpu)))
            for system, fn in runs:
                try:
                    r = fn()
                except Exception as e:  # a system that cannot finish a size is reported as such
                    r = {"system": system, "nodes": nodes, "ranks": world, "error": str(e)[:200]}
                print(json.dumps(r), flush=True)
                rows.append(r)

    print()
    # meshd: connect, register and start the job in one go (cold); meshd-registered: the job alone
    # on a cluster whose agents are registered. The ratios divide by each (median of the repeats).
    # after reg: from the last registration to every id held (cold meshd and the floor only).
    print(f"{'nodes':>6} {'ranks':>7} {'system':<18} {'t_ranks_s':>10} {'t_ids_s':>9} "
          f"{'x cold':>7} {'x job':>7} {'after reg':>9}")
    def median(system, nodes):
        v = sorted(r["t_ids_s"] for r in rows
                   if r["system"] == system and r["nodes"] == nodes and "t_ids_s" in r)
        return v[len(v) // 2] if v else float("nan")
    for r in rows:
        if "error" in r:
            print(f"{r['nodes']:>6} {r['ranks']:>7} {r['system']:<18} failed: {r['error']}")
            continue
        cold = r["t_ids_s"] / median("meshd", r["nodes"])
        job = r["t_ids_s"] / median("meshd-registered", r["nodes"])
        after = (f"{r['t_ids_s'] - r['t_registered_s']:>9.3f}"
                 if r["system"] in ("meshd", "grpc-floor") else "")
        print(f"{r['nodes']:>6} {r['ranks']:>7} {r['system']:<18} {r['t_ranks_s']:>10.3f} "
              f"{r['t_ids_s']:>9.3f} {cold:>7.1f} {job:>7.1f} {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
