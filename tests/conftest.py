"""Shared fixtures.

End-to-end fixtures mount a real gmemfs (the installed ``gmemfs`` CLI, as a
user would) in a temporary directory and hand tests the mount point; clients
are real processes (Python subprocesses or C programs compiled here with gcc).
Nothing in an end-to-end test mocks the kernel interface.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import ioctl_abi
from gmemfs import mountctl

ROOT = Path(__file__).resolve().parent.parent
C_DIR = Path(__file__).resolve().parent / "c"


def _fuse_usable() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if os.geteuid() != 0:
        return "end-to-end tests mount FUSE and need root"
    if not shutil.which("fusermount3"):
        return "fusermount3 (Debian package fuse3) is not installed"
    return None


class Mount(mountctl.Server):
    """A running gmemfs: ``path`` is the mount point, ``log`` the server log,
    ``proc`` the server process (see gmemfs.mountctl.Server)."""

    @property
    def path(self) -> Path:
        return self.mnt

    def __truediv__(self, other):
        return self.path / other

    def gmem(self, name: str) -> str:
        return str(self.path / "gmem" / name)

    def state(self, name: str) -> str:
        return (self.path / ".state" / name).read_text()

    def contexts(self) -> int:
        return int(self.state("contexts"))


def start_mount(tmp: Path, *opts: str, debug: bool = True) -> Mount:
    mnt, log = tmp / "mnt", tmp / "gmemfs.log"
    return Mount(mountctl.gmemfs_argv(mnt, *opts, log_file=log, debug=debug), mnt,
                 log=log).start()


def stop_mount(m: Mount) -> None:
    m.stop()


@pytest.fixture
def mount(tmp_path):
    """A fresh gmemfs mount per test (default options)."""
    reason = _fuse_usable()
    if reason:
        pytest.skip(reason)
    m = start_mount(tmp_path)
    try:
        yield m
    finally:
        alive = m.alive()
        stop_mount(m)
        assert alive, "the gmemfs server died during the test:\n" + m.log_text()[-4000:]


@pytest.fixture
def mount_factory(tmp_path):
    """Mount with options: ``m = mount_factory('policy=revoke', 'platform=snp')``."""
    reason = _fuse_usable()
    if reason:
        pytest.skip(reason)
    mounts = []

    def make(*opts, debug=True):
        sub = tmp_path / f"m{len(mounts)}"
        sub.mkdir()
        m = start_mount(sub, *opts, debug=debug)
        mounts.append(m)
        return m

    try:
        yield make
    finally:
        for m in mounts:
            stop_mount(m)


_built: dict[tuple, Path] = {}


def build_c(source: str | Path, out_dir: Path, extra_flags=()) -> Path:
    """Compile tests/c/<source> with gcc against the ioctl_abi header."""
    src = Path(source)
    if not src.is_absolute():
        src = C_DIR / src
    key = (str(src), tuple(extra_flags), src.stat().st_mtime_ns,
           Path(ioctl_abi.HEADER).stat().st_mtime_ns)
    if key in _built and _built[key].exists():
        return _built[key]
    exe = out_dir / src.stem
    cmd = ["gcc", "-O1", "-g", "-Wall", "-Werror", "-I", ioctl_abi.INCLUDE_DIR,
           "-I", str(C_DIR), "-o", str(exe), str(src), *extra_flags]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"gcc failed for {src.name}:\n{r.stderr}")
    _built[key] = exe
    return exe


@pytest.fixture(scope="session")
def c_build_dir(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    return tmp_path_factory.mktemp("cbuild")


@pytest.fixture(scope="session")
def cc(c_build_dir):
    """``exe = cc('iommu_basic.c')`` compiles a C client and returns its path."""
    def compile_(source, *flags):
        return build_c(source, c_build_dir, flags)
    return compile_
