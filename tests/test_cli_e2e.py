"""End-to-end: the gmemfs command line. Mounting in the background returns
once the mount is ready; SIGINT, SIGTERM and fusermount3 -u unmount cleanly;
a mount that cannot happen says why."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

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


def test_not_permitted_says_why(tmp_path, fuse_ok):
    """An unprivileged user who cannot open /dev/fuse is told so."""
    if os.stat("/dev/fuse").st_mode & 0o006:
        pytest.skip("/dev/fuse is world-accessible here")
    mnt = tmp_path / "m"
    mnt.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(mnt, 0o777)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-m", "gmemfs", "mount", str(mnt)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "/dev/fuse" in r.stderr and "not readable and writable" in r.stderr


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
