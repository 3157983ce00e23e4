"""End-to-end: the gmemfs command line. Mounting in the background returns
once the mount is ready; SIGINT, SIGTERM and fusermount3 -u unmount cleanly;
a mount that cannot happen says why."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, _fuse_usable

pytestmark = pytest.mark.e2e


@pytest.fixture
def fuse_ok():
    reason = _fuse_usable()
    if reason:
        pytest.skip(reason)


def gmemfs(*args, **kw):
    return subprocess.run([sys.executable, "-m", "gmemfs", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, **kw)


def server_pid(mnt) -> int:
    import json
    return json.loads((mnt / ".state" / "server.json").read_text())["pid"]


def wait_gone(pid, timeout=15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a child of ours would linger as a zombie: reap it if so
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def test_background_mount_returns_when_ready_then_fusermount_unmounts(tmp_path, fuse_ok):
    mnt = tmp_path / "m"
    mnt.mkdir()
    r = gmemfs("mount", str(mnt))
    assert r.returncode == 0, r.stderr
    # usable immediately: no sleep between the command and the first use
    fd = os.open(mnt / "iommu", os.O_RDWR)
    os.close(fd)
    pid = server_pid(mnt)
    assert subprocess.call(["fusermount3", "-u", str(mnt)]) == 0
    assert wait_gone(pid), "server still running after fusermount3 -u"
    assert not os.path.ismount(mnt)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(tmp_path, fuse_ok, sig):
    mnt = tmp_path / "m"
    mnt.mkdir()
    log = tmp_path / "log"
    p = subprocess.Popen([sys.executable, "-m", "gmemfs", "mount", str(mnt), "-f",
                          "--log-file", str(log)], cwd=ROOT)
    deadline = time.monotonic() + 20
    while not os.path.ismount(mnt) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.ismount(mnt)
    os.stat(mnt / "iommu")
    p.send_signal(sig)
    assert p.wait(timeout=15) == 0
    assert not os.path.ismount(mnt), "mount left behind after the signal"
    assert "unmounted" in log.read_text()


def test_unmount_while_a_client_holds_files(tmp_path, fuse_ok):
    """fusermount3 -u with open files: the lazy unmount detaches; the server
    exits once the kernel lets go, and clients see errors, not hangs."""
    mnt = tmp_path / "m"
    mnt.mkdir()
    assert gmemfs("mount", str(mnt)).returncode == 0
    pid = server_pid(mnt)
    fd = os.open(mnt / "iommu", os.O_RDWR)
    assert subprocess.call(["fusermount3", "-uz", str(mnt)]) == 0
    os.close(fd)
    assert wait_gone(pid)


def test_missing_mountpoint_says_why(tmp_path, fuse_ok):
    r = gmemfs("mount", str(tmp_path / "nope"))
    assert r.returncode == 1
    assert "does not exist" in r.stderr


def test_busy_mountpoint_says_why(tmp_path, fuse_ok):
    mnt = tmp_path / "m"
    mnt.mkdir()
    assert gmemfs("mount", str(mnt)).returncode == 0
    try:
        r = gmemfs("mount", str(mnt))
        assert r.returncode == 1
        assert "busy" in r.stderr
    finally:
        subprocess.call(["fusermount3", "-u", str(mnt)])


NOBODY = 65534


def _as_nobody(argv, **kw):
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", *argv], capture_output=True, text=True,
                          timeout=60, **kw)


def _requirement_closure(dist_name: str):
    """The installed distributions ``dist_name`` needs at run time (no extras)."""
    from importlib import metadata
    from packaging.requirements import Requirement
    seen, todo = {}, [dist_name]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = metadata.distribution(name)
        seen[key] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return [d for k, d in seen.items() if k != dist_name]


def _project_packages() -> set[str]:
    """The top-level packages setup.cfg installs (gmemfs, intervals, ...)."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {p.strip().split(".")[0] for p in cfg["options"]["packages"].split(",") if p.strip()}


@pytest.fixture(scope="module")
def readable_gmemfs():
    """A copy of what ``python -m gmemfs`` imports, where any user can read it:
    the project's packages and the installed distributions gmemfs requires.
    An unprivileged run must not depend on where the checkout or its .venv
    live (a clone under /root, mode 0700, is unreadable for uid 65534).
    Yields (interpreter, directory to put first on PYTHONPATH)."""
    interp = os.path.realpath(sys.executable)
    probe = "import sys; print(sys.version, sys.base_prefix)"
    r = _as_nobody([interp, "-s", "-S", "-c", probe], cwd="/")
    if r.stdout.strip() != f"{sys.version} {sys.base_prefix}".replace("\n", " "):
        pytest.skip(f"uid {NOBODY} cannot run this venv's interpreter {interp} with its "
                    f"own library: it lives where others cannot read (./run builds the "
                    f"venv from /usr/bin/python3)")
    top = Path(tempfile.mkdtemp(prefix="gmemfs-nobody-"))
    try:
        lib = top / "lib"
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        for pkg in _project_packages():
            shutil.copytree(ROOT / pkg, lib / pkg, ignore=skip)
        for dist in _requirement_closure("gmemfs"):
            for f in dist.files or []:
                src = Path(dist.locate_file(f))
                if "__pycache__" in f.parts or ".." in f.parts or not src.is_file():
                    continue
                dst = lib / f
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        for d in [top, *top.rglob("*")]:
            d.chmod(0o755 if d.is_dir() or os.access(d, os.X_OK) else 0o644)
        yield interp, top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_not_permitted_says_why(fuse_ok, readable_gmemfs):
    """An unprivileged user who cannot open /dev/fuse is told so (wherever the
    checkout lives: uid 65534 runs a readable copy of gmemfs)."""
    if os.stat("/dev/fuse").st_mode & 0o006:
        pytest.skip("/dev/fuse is world-accessible here")
    interp, top = readable_gmemfs
    mnt = top / "m"
    mnt.mkdir(exist_ok=True)
    mnt.chmod(0o777)
    r = _as_nobody([interp, "-s", "-m", "gmemfs", "mount", str(mnt)], cwd=top,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(top / "lib"),
                        "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "/dev/fuse" in r.stderr and "not readable and writable" in r.stderr, r.stderr


def test_debug_logs_each_ioctl_with_command_caller_and_errno(mount):
    """--debug: decoded command, calling thread, result errno (and reason)."""
    import fcntl
    import struct
    fd = os.open(mount.iommu, os.O_RDWR)
    try:
        fcntl.ioctl(fd, 0x3B80, bytearray(struct.pack("II", 8, 77)))
    except OSError:
        pass
    os.close(fd)
    text = mount.log_text()
    assert f"ioctl IOMMU_DESTROY pid={os.getpid()} -> ENOENT" in text
