"""Builds and installs the `meshd` package: `pip install ./python` (offline, Debian's setuptools).

The extension meshd._core is built by the project's CMake (target `meshd_python`), never by
setuptools: this file configures and builds it, then copies `_core*.so` and the
`libmeshd_client.so` it loads (RPATH $ORIGIN) into the package. There is deliberately no
pyproject.toml: pip then builds without isolation, with the setuptools and wheel already installed
(Debian's python3-setuptools, python3-wheel), and never needs an index. On Debian 12 (PEP 668)
install into a venv that sees the system's packages:

    /usr/bin/python3 -m venv --system-site-packages venv
    venv/bin/pip install --no-index ./python

Environment:
  MESHD_BUILD_DIR   an existing (or new) CMake build dir of this checkout to build in, e.g. build/
                    (fast when it is up to date); default: a private one under setuptools' build
                    temp, configured Release with Ninja and ccache when present.
  MESHD_BUILD_LOCK  a file to flock around the build (when others build in the same dir).
  MESHD_SOURCE_DIR  the project root (default: this file's parent's parent).
  MESHD_CMAKE_ARGS  extra arguments for the configure step.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Iterator, List

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
SOURCE_DIR = Path(os.environ.get("MESHD_SOURCE_DIR") or HERE.parent).resolve()
LOCK_TIMEOUT = 600.0


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """Holds MESHD_BUILD_LOCK (if set) so that two builds never run in one dir at once."""
    path = os.environ.get("MESHD_BUILD_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as f:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path} stayed locked for {LOCK_TIMEOUT:.0f}s (is a "
                                       "build running, or was this started under the lock?)")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run(cmd: List[str]) -> None:
    print("+", " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


class CMakeExtension(Extension):
    """An extension built by CMake, not by setuptools."""

    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Builds the `meshd_python` CMake target and copies its outputs into the package."""

    def build_extension(self, ext: Extension) -> None:
        if not (SOURCE_DIR / "client" / "include" / "meshd" / "client.h").exists():
            raise RuntimeError(f"{SOURCE_DIR} is not the meshd project root: set MESHD_SOURCE_DIR")
        env_dir = os.environ.get("MESHD_BUILD_DIR")
        build_dir = (Path(env_dir) if env_dir else Path(self.build_temp) / "cmake").resolve()
        with build_lock():
            if not (build_dir / "CMakeCache.txt").exists():
                self.configure(build_dir)
            run(["cmake", "--build", str(build_dir), "--target", "meshd_python"])
        pkg = build_dir / "python" / "meshd"
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        core = pkg / f"_core{suffix}"
        if not core.exists():
            built = sorted(p.name for p in pkg.glob("_core*.so"))
            raise RuntimeError(
                f"{core} was not built (found {built}): {build_dir} builds for another Python "
                f"than {sys.executable}; reconfigure it with -DPython3_EXECUTABLE={sys.executable}")
        dest = Path(self.get_ext_fullpath(ext.name)).resolve()
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(core, dest)
        shutil.copy2(pkg / "libmeshd_client.so", dest.parent / "libmeshd_client.so")

    def configure(self, build_dir: Path) -> None:
        cmd = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir),
               "-DCMAKE_BUILD_TYPE=Release", "-DMESHD_BUILD_TESTS=OFF",
               "-DMESHD_BUILD_BENCH=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
        if shutil.which("ninja"):
            cmd += ["-G", "Ninja"]
        if shutil.which("ccache"):
            cmd += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
        cmd += shlex.split(os.environ.get("MESHD_CMAKE_ARGS", ""))
        run(cmd)


def build_base() -> str:
    """Where setuptools builds (and writes egg-info): beside MESHD_BUILD_DIR's outputs when set,
    else python/build (git-ignored); never the package's source folder itself."""
    env_dir = os.environ.get("MESHD_BUILD_DIR")
    base = Path(env_dir).resolve() / "python-setup" if env_dir else HERE / "build"
    base.mkdir(parents=True, exist_ok=True)
    return str(base)


BUILD_BASE = build_base()

setup(
    name="meshd",
    version="0.1.0",
    description="Python binding of libmeshd_client: device meshes, NCCL unique ids and a "
                "key-value store from the host's meshd agent",
    packages=find_packages(include=["meshd", "meshd.*"]),
    package_data={"meshd": ["py.typed", "_core.pyi"]},
    ext_modules=[CMakeExtension("meshd._core")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    zip_safe=False,
    options={"build": {"build_base": BUILD_BASE}, "egg_info": {"egg_base": BUILD_BASE}},
)
