"""`pip install ./python` works offline on Debian 12: into a venv made with
`/usr/bin/python3 -m venv --system-site-packages` (Debian's pip refuses system installs, PEP 668),
no index, no build isolation; setup.py builds meshd._core in the existing build dir
(MESHD_BUILD_DIR, under MESHD_BUILD_LOCK). The installed package then works from the venv alone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


import meshd_cluster as mc


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("MESHD_BUILD_DIR", str(mc.BUILD_DIR))
    env["PIP_NO_INDEX"] = "1"  # offline: pip never looks for anything
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd, cwd, timeout, env=None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or _env(), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def test_pip_install_into_a_venv_offline(tmp_path, standalone) -> None:
    source = Path(os.environ.get("MESHD_SOURCE_DIR") or mc.REPO_ROOT)
    venv = tmp_path / "venv"
    _run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], tmp_path, 120)
    pip = _run([venv / "bin" / "python", "-m", "pip", "install", "--no-index",
                source / "python"], tmp_path, 800)
    assert "Successfully installed meshd" in pip.stdout, pip.stdout

    # Imported from the venv's site-packages, not from the build tree.
    probe = _run([venv / "bin" / "python", "-c",
                  "import meshd, meshd._core, os; "
                  "print(os.path.dirname(meshd.__file__)); print(meshd._core.__file__)"],
                 tmp_path, 60)
    pkg, core = probe.stdout.split()
    assert pkg.startswith(str(venv)) and core.startswith(pkg), probe.stdout
    files = set(os.listdir(pkg))
    assert {"py.typed", "_core.pyi", "libmeshd_client.so", "errors.py"} <= files, files
    readelf = subprocess.run(["readelf", "-d", core], capture_output=True, text=True)
    if readelf.returncode == 0:
        assert "[$ORIGIN]" in readelf.stdout

    # And it attaches to a real meshd.
    code = "import meshd\nwith meshd.attach(timeout=30) as c:\n    print('rank', c.rank, meshd.__file__)"
    results = mc.run_workers(standalone.socket, "pip-venv", 2, code=code, timeout=60,
                             python=str(venv / "bin" / "python"))
    mc.assert_all_ok(results)
    for r in results:
        assert f"rank {r.local_rank} {venv}" in r.stdout, r
