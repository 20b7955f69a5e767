"""Shared bits of the meshd.torch tests (test_torch_*.py).

* ``import_torch()``: torch and meshd.torch, or the whole module skipped when torch is missing
  (meshd.torch needs Debian's python3-torch; the tests run under /usr/bin/python3).
* ``parse_tagged(results, tag)``: the ``TAG {json}`` lines torch_worker.py prints, per worker.
* ``WORKER``: the path of torch_worker.py; ``EXAMPLE``: examples/torch_train.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

import meshd_cluster

HERE = Path(__file__).resolve().parent
WORKER = str(HERE / "torch_worker.py")
EXAMPLE = str(Path(os.environ.get("MESHD_SOURCE_DIR", HERE.parents[1])) / "examples" /
              "torch_train.py")


def import_torch():
    """Returns (torch, meshd.torch); skips the calling test module when torch is missing."""
    if meshd_cluster.package_path() not in sys.path:
        sys.path.insert(0, meshd_cluster.package_path())
    torch = pytest.importorskip("torch", reason="meshd.torch needs PyTorch (python3-torch)")
    import meshd.torch as mt

    return torch, mt


def parse_tagged(results: Sequence["meshd_cluster.WorkerResult"], tag: str) -> List[Dict]:
    """For every worker, the JSON of its first ``TAG {...}`` stdout line (AssertionError with all
    the output when one has none)."""
    out = []
    for r in results:
        for line in r.stdout.splitlines():
            if line.startswith(tag + " "):
                out.append(json.loads(line[len(tag) + 1:]))
                break
        else:
            raise AssertionError(f"a worker printed no {tag} line:\n{r}\n\nall workers:\n" +
                                 "\n".join(str(x) for x in results))
    return out


def tagged_line(process: "meshd_cluster.Process", tag: str, timeout: float) -> Dict:
    """Waits for ``TAG {...}`` on a running process's stdout; returns the JSON."""
    return json.loads(process.wait_for_line(tag + " ", timeout))
