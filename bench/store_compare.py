#!/usr/bin/python3
"""PyTorch's start-up through its Store: meshd's store side by side with PyTorch's TCPStore.

The workload (bench/sim/store_workload.h has the C++ side; docs/performance-store.md the method):
every rank does what torch 2.x sends its Store in init_process_group and while it makes a process
group for every group of a pp x dp x tp mesh (pp=4, tp=gpus-per-node, dp the rest), with
TORCH_DIST_INIT_BARRIER=1 and new_group(ranks, use_local_synchronization=True):

  barriers  the world's store-based barrier, then the member-only barrier of the rank's group of
            each mesh dim: add(K, 1); n = add(K, 0); if n == group size: set(K:last_worker);
            wait([K:last_worker])
  ids       for the world group and each dim's group, ProcessGroupNCCL's NCCL id exchange on
            first use: the group's rank 0 sets a 128-byte id, every other member gets it

with torch 2.x's keys (default_pg/store_based_barrier_key:0, default_pg/0//<sha1 of the
ranks>//cuda//0, ...). --no-barriers: torch 2.x's default (TORCH_DIST_INIT_BARRIER unset), the
ids alone.

For each size it runs, in alternation:

  meshd              build/bin/store_bench --json: a real `meshd coordinator`, simulated nodes of
                     G ranks over gRPC, each node sending what its agent relays (identical
                     waits/gets of its ranks as one call; its ranks' adds (sets) on one key while
                     one is in flight as one KeyAdd of their sum (one KeySet of the last value));
                     registering and joining the job come first and are not in the store time
  meshd-unbatched    (--unbatched) store_bench --unbatched: every call its own coordinator call
                     (identical waits shared), as the agent sends to a coordinator without KeyBatch
  tcpstore-shared    PyTorch's TCPStore (Debian's python3-torch): the ranks spread over --procs
                     driver processes, each sharing one connection among its ranks (TCPStore's
                     best case); a driver runs its ranks' calls phase by phase (every rank's adds
                     and sets of a barrier before any of its waits; every id it leads set before
                     any get), as one blocking connection must
  tcpstore-per-rank  the same with one connection per rank (what a real job opens), at sizes up
                     to --max-per-rank-ranks

Both sides: the server under test (meshd's coordinator, TCPStore's server thread) on one CPU
(--server-cpu), the load on every CPU; the driver processes started and connected before the
clock (as store_bench's simulated nodes are registered and joined before its clock); the time is
from the first store call to the last rank done. Prints one JSON line per run as it finishes, then
a table: system, ranks, groups, store calls, the server's CPU, seconds, and each run's time as a
multiple of meshd's run in the same round (TCPStore / meshd: above 1, meshd is faster), and a
summary per size and system.
Needs Debian's python3-torch (run with /usr/bin/python3); without it the TCPStore runs are
reported as skipped.
"""
import argparse
import datetime
import hashlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

ID_BYTES = 128


def default_shape(nodes, gpus):
    if nodes % 8 == 0:
        return [("pp", 4), ("dp", -1), ("tp", gpus)]
    return [("dp", -1), ("tp", gpus)] if nodes > 1 else [("tp", gpus)]


def resolve_shape(shape, world):
    known = 1
    for _, s in shape:
        if s != -1:
            known *= s
    return [(n, world // known if s == -1 else s) for n, s in shape]


class Group:
    """One process group as torch 2.x names it and keys it (PrefixStore joins with "/")."""
    __slots__ = ("name", "barrier_key", "last_worker_key", "id_key", "size", "leader", "id")

    def __init__(self, name, prefix, barrier_prefix, size, leader):
        self.name = name
        self.barrier_key = f"{barrier_prefix}store_based_barrier_key:{name}"
        self.last_worker_key = f"{self.barrier_key}:last_worker"
        self.id_key = f"{prefix}cuda//0"
        self.size = size
        self.leader = leader
        self.id = hashlib.sha512(name.encode()).digest() * 2  # 128 bytes, checked by every get


def build_groups(world, sizes):
    """groups[slot][rank] -> Group: slot 0 the world, 1 + d the rank's group along dim d."""
    world_group = Group("0", "default_pg/0//", "default_pg/", world, 0)
    strides = [1] * len(sizes)
    for d in range(len(sizes) - 2, -1, -1):
        strides[d] = strides[d + 1] * sizes[d + 1]
    slots = [[world_group] * world]
    for d in range(len(sizes)):
        by_leader = {}
        row = []
        for r in range(world):
            leader = r - ((r // strides[d]) % sizes[d]) * strides[d]
            g = by_leader.get(leader)
            if g is None:
                ranks = [leader + i * strides[d] for i in range(sizes[d])]
                name = hashlib.sha1("_".join(map(str, ranks)).encode()).hexdigest()
                prefix = f"default_pg/0//{name}//"
                g = by_leader[leader] = Group(name, prefix, prefix, sizes[d], leader)
            row.append(g)
        slots.append(row)
    return slots


def driver(conn, port, ranks, slots, per_rank, barriers, timeout_s, cpus):
    """One driver process: connects, says so, waits for the start, runs its ranks, reports."""
    try:
        os.sched_setaffinity(0, cpus)
        from torch.distributed import TCPStore
        timeout = datetime.timedelta(seconds=timeout_s)

        def connect():
            return TCPStore("127.0.0.1", port, None, False, timeout=timeout,
                            wait_for_workers=False)

        shared = None if per_rank else connect()
        pairs = [(r, connect() if per_rank else shared) for r in ranks]
        conn.send(("ready", len(pairs) if per_rank else 1))
        start = conn.recv()  # the parent's clock (time.time()) at the start
        cpu_start = time.process_time()
        calls = {"add": 0, "set": 0, "wait": 0, "get": 0}
        if barriers:
            for slot in slots:
                for r, s in pairs:
                    g = slot[r]
                    s.add(g.barrier_key, 1)
                    n = s.add(g.barrier_key, 0)
                    calls["add"] += 2
                    if n == g.size:
                        s.set(g.last_worker_key, "1")
                        calls["set"] += 1
                for r, s in pairs:
                    s.wait([slot[r].last_worker_key])
                    calls["wait"] += 1
        for r, s in pairs:
            for slot in slots:
                if slot[r].leader == r:
                    s.set(slot[r].id_key, slot[r].id)
                    calls["set"] += 1
        for r, s in pairs:
            for slot in slots:
                g = slot[r]
                if g.leader != r:
                    if s.get(g.id_key) != g.id:
                        raise RuntimeError(f"rank {r}: the id of group {g.name} is not its leader's")
                    calls["get"] += 1
        conn.send(("done", time.time() - start, calls, time.process_time() - cpu_start))
    except Exception as e:  # reported to the parent, which fails the run
        conn.send(("error", f"{type(e).__name__}: {e}"))


def run_tcpstore(nodes, gpus, per_rank, procs, timeout_s, server_cpu, barriers, progress):
    from torch.distributed import TCPStore
    world = nodes * gpus
    sizes = [s for _, s in resolve_shape(default_shape(nodes, gpus), world)]
    slots = build_groups(world, sizes)
    groups = 1 + sum(world // s for s in sizes)
    cpus = os.sched_getaffinity(0)
    if server_cpu >= 0:  # the server thread starts on one CPU, as meshd's coordinator does
        os.sched_setaffinity(0, {server_cpu})
    try:
        master = TCPStore("127.0.0.1", 0, None, True,
                          timeout=datetime.timedelta(seconds=timeout_s), wait_for_workers=False)
    finally:
        os.sched_setaffinity(0, cpus)
    import torch
    torch_version = torch.__version__
    libuv = bool(getattr(master, "libuvBackend", False))  # torch >= 2.4's server backend
    ctx = mp.get_context("fork")
    workers = []
    try:
        for p in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=driver, args=(child, master.port, list(range(p, world, procs)),
                                                    slots, per_rank, barriers, timeout_s, cpus))
            proc.start()
            workers.append((proc, parent))
        connections = 0
        for _, c in workers:  # every driver forked and connected before the clock
            if not c.poll(timeout_s):
                raise RuntimeError("a driver did not connect in time")
            msg = c.recv()
            if msg[0] != "ready":
                raise RuntimeError(msg[1])
            connections += msg[1]
        # This process's CPU from here on is its TCPStore server thread's (the main thread waits).
        cpu_before = time.process_time()
        start = time.time()
        for _, c in workers:
            c.send(start)
        results = []
        for _, c in workers:
            while not c.poll(5):
                if time.time() - start > timeout_s:
                    raise RuntimeError(f"TCPStore did not finish within {timeout_s} s")
                if progress:
                    print(f"  tcpstore: {time.time() - start:.0f} s, {len(results)} of {procs} "
                          "drivers done", file=sys.stderr, flush=True)
            msg = c.recv()
            if msg[0] != "done":
                raise RuntimeError(msg[1])
            results.append(msg)
        server_cpu_s = time.process_time() - cpu_before
    finally:
        for proc, _ in workers:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    calls = {k: sum(m[2][k] for m in results) for k in ("add", "set", "wait", "get")}
    return {"system": "tcpstore-per-rank" if per_rank else "tcpstore-shared", "nodes": nodes,
            "gpus_per_node": gpus, "ranks": world, "groups": groups, "barriers": barriers,
            "store_s": max(m[1] for m in results), "rank_calls": sum(calls.values()),
            "rank_adds": calls["add"], "rank_sets": calls["set"], "rank_waits": calls["wait"],
            "rank_gets": calls["get"], "connections": connections, "procs": procs,
            "server_cpu_s": server_cpu_s, "drivers_cpu_s": sum(m[3] for m in results),
            "server_cpus": str(server_cpu) if server_cpu >= 0 else "all",
            "torch": torch_version, "libuv": libuv}


def run_meshd(bench, nodes, gpus, timeout_s, server_cpu, barriers, progress, unbatched=False):
    out = subprocess.run([bench, "--nodes", str(nodes), "--gpus-per-node", str(gpus), "--json",
                          "--timeout", str(timeout_s), "--coordinator-cpu", str(server_cpu)] +
                         ([] if barriers else ["--no-barriers"]) +
                         (["--unbatched"] if unbatched else []) +
                         (["--progress"] if progress else []),
                         stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE,
                         text=True, timeout=timeout_s + 60)
    if out.returncode != 0:
        raise RuntimeError((out.stderr or "").strip() or f"exit status {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_keys(bench, nodes, gpus):
    """store_bench --keys against build_groups: the same groups, sizes, leaders and keys."""
    world = nodes * gpus
    sizes = [s for _, s in resolve_shape(default_shape(nodes, gpus), world)]
    ours = set()
    for slot in build_groups(world, sizes):
        for g in slot:
            ours.add((g.name, str(g.size), str(g.leader), g.barrier_key, g.last_worker_key,
                      g.id_key))
    out = subprocess.run([bench, "--nodes", str(nodes), "--gpus-per-node", str(gpus), "--keys"],
                         stdout=subprocess.PIPE, text=True, check=True)
    theirs = set(tuple(line.split("\t")) for line in out.stdout.splitlines())
    if ours != theirs:
        print(f"store_compare: {world} ranks: store_bench's keys differ from this script's: "
              f"{sorted(ours - theirs)[:2]} here, {sorted(theirs - ours)[:2]} there",
              file=sys.stderr)
        return False
    print(f"store_compare: {world} ranks: store_bench's {len(theirs)} groups and their keys are "
          "this script's", file=sys.stderr)
    return True


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", default="64,1024", help="comma-separated node counts")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--repeat", type=int, default=1, help="alternating rounds per size")
    p.add_argument("--procs", type=int, default=4, help="TCPStore driver processes")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run")
    p.add_argument("--max-per-rank-ranks", type=int, default=512,
                   help="run tcpstore-per-rank up to this many ranks (0: never)")
    p.add_argument("--no-barriers", action="store_true",
                   help="the ids alone (torch 2.x's default, TORCH_DIST_INIT_BARRIER unset)")
    p.add_argument("--store-bench", default=os.path.join(here, "..", "build", "bin", "store_bench"))
    p.add_argument("--server-cpu", type=int, default=min(os.sched_getaffinity(0)),
                   help="CPU the server under test (meshd's coordinator, TCPStore's server) is "
                        "confined to while the load runs on every CPU; -1: any (default: %(default)s)")
    p.add_argument("--progress", action="store_true", help="progress lines on stderr")
    p.add_argument("--unbatched", action="store_true",
                   help="also run meshd-unbatched: store_bench --unbatched (every store call its "
                        "own coordinator call, identical waits shared)")
    p.add_argument("--check-keys", action="store_true",
                   help="first check that store_bench's groups and keys are this script's")
    a = p.parse_args()
    if a.server_cpu >= 0 and a.server_cpu not in os.sched_getaffinity(0):
        p.error(f"--server-cpu {a.server_cpu} is not a CPU this process may use; pick another or -1")
    try:
        import torch.distributed  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("store_compare: no torch here (Debian: apt-get install python3-torch; run with "
              "/usr/bin/python3): the TCPStore runs are skipped", file=sys.stderr)
    barriers = not a.no_barriers

    if a.check_keys:
        for nodes in [int(n) for n in a.nodes.split(",")]:
            if not check_keys(a.store_bench, nodes, a.gpus_per_node):
                return 1

    rows = []
    failed = False
    for nodes in [int(n) for n in a.nodes.split(",")]:
        world = nodes * a.gpus_per_node
        for rnd in range(a.repeat):
            runs = [("meshd", lambda: run_meshd(a.store_bench, nodes, a.gpus_per_node, a.timeout,
                                                a.server_cpu, barriers, a.progress))]
            if a.unbatched:
                runs.append(("meshd-unbatched", lambda: run_meshd(
                    a.store_bench, nodes, a.gpus_per_node, a.timeout, a.server_cpu, barriers,
                    a.progress, unbatched=True)))
            if have_torch:
                runs.append(("tcpstore-shared", lambda: run_tcpstore(
                    nodes, a.gpus_per_node, False, a.procs, a.timeout, a.server_cpu, barriers,
                    a.progress)))
                if world <= a.max_per_rank_ranks:
                    runs.append(("tcpstore-per-rank", lambda: run_tcpstore(
                        nodes, a.gpus_per_node, True, a.procs, a.timeout, a.server_cpu,
                        barriers, a.progress)))
            for system, fn in runs:
                if a.progress:
                    print(f"store_compare: {world} ranks, round {rnd + 1} of {a.repeat}: {system}",
                          file=sys.stderr, flush=True)
                load = os.getloadavg()[0]  # the machine's 1-minute load before the run
                try:
                    r = fn()
                except Exception as e:  # a system that cannot finish a size is reported as such
                    r = {"system": system, "nodes": nodes, "ranks": world, "error": str(e)[:300]}
                    failed = True
                r["loadavg_before"] = round(load, 2)
                r["round"] = f"{nodes}/{rnd}"
                print(json.dumps(r), flush=True)
                rows.append(r)

    # Each run against meshd's run of the same round (the VM's speed drifts between rounds by a
    # third and more; within a round, minutes apart at most, much less).
    meshd_of_round = {}
    for r in rows:
        if r["system"] == "meshd" and "store_s" in r:
            meshd_of_round[r["round"]] = r["store_s"]
    for r in rows:
        if "store_s" in r and r["round"] in meshd_of_round:
            r["x_meshd"] = r["store_s"] / meshd_of_round[r["round"]]

    print()
    print(f"{'system':<18} {'ranks':>6} {'groups':>6} {'store calls':>11} {'coord calls':>11} "
          f"{'server cpu':>10} {'seconds':>8} {'x meshd':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['system']:<18} {r['ranks']:>6} failed: {r['error']}")
            continue
        coord = r.get("coordinator_calls")
        cpu = r.get("coordinator_cpu_s", r.get("server_cpu_s"))
        print(f"{r['system']:<18} {r['ranks']:>6} {r['groups']:>6} {r['rank_calls']:>11} "
              f"{coord if coord is not None else '':>11} "
              f"{'' if cpu is None else format(cpu, '.3f'):>10} {r['store_s']:>8.3f} "
              f"{r.get('x_meshd', float('nan')):>8.2f}")

    def spread(values, fmt):
        v = sorted(values)
        return f"{v[0]:{fmt}}-{v[-1]:{fmt}} (median {v[len(v) // 2]:{fmt}})"

    print()
    print("x meshd: each run's time over meshd's in the same round (above 1: meshd is faster)")
    for ranks in sorted({r["ranks"] for r in rows}):
        for system in dict.fromkeys(r["system"] for r in rows):
            ok = [r for r in rows if r["ranks"] == ranks and r["system"] == system and "x_meshd" in r]
            if ok:
                print(f"{system:<18} {ranks:>6}  {len(ok)} runs  "
                      f"{spread([r['store_s'] for r in ok], '.3f')} s  "
                      f"x meshd {spread([r['x_meshd'] for r in ok], '.2f')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
