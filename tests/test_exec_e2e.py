"""End-to-end: `gmemfs exec` runs unmodified programs (C and Python) with
/dev/iommu and /dev/kvm served by a gmemfs mount.

Kernel rules checked: open(2)/openat(2)/openat2(2) of /dev/iommu give a new,
independent iommufd context each (iommufd.md §1.1) with the flags the program
asked for (O_CLOEXEC -> FD_CLOEXEC); paths that are not emulated are opened
by the kernel untouched; errors are the kernel's (ENOTDIR for a trailing
slash on a non-directory, EEXIST for O_CREAT|O_EXCL of an existing file)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.e2e


def gexec(mnt, *argv, timeout=60, **kw):
    """Run argv under `gmemfs exec --mount mnt` (None: a private mount)."""
    cmd = [sys.executable, "-m", "gmemfs", "exec"]
    if mnt is not None:
        cmd += ["--mount", str(mnt)]
    return subprocess.run(cmd + ["--", *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kw)


def lines(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_c_program_opens_dev_iommu_and_dev_kvm(mount, cc):
    exe = cc("exec_open.c")
    r = gexec(mount.path, exe)
    assert r.returncode == 0, r.stderr
    got = lines(r.stdout)
    iommu, kvm = str(mount / "iommu"), str(mount / "kvm")
    assert got["open"] == f"{iommu} cloexec=0"
    assert got["ioas_alloc"] == "1"
    assert got["open_cloexec"] == f"{iommu} cloexec=1"
    for name in ("openat_abs", "double_slash", "dotdot", "openat_dirfd", "relative"):
        assert got[name] == f"{iommu} cloexec=0", name
    assert got["trailing_slash"] == "err ENOTDIR"
    assert got["excl"] == "err EEXIST"
    assert got["kvm"] == f"{kvm} cloexec=1"
    assert got["null"] == "/dev/null cloexec=0"
    assert got["other_iommu"] == "err ENOENT"
    assert got["openat2"] == f"{iommu} cloexec=1"
    assert got["second_context_ioas"] == "1"
    # every context died with the program
    assert mount.contexts() == 0


def test_python_program_and_exit_status(mount):
    prog = textwrap.dedent("""
        import fcntl, os, struct, sys
        fd = os.open("/dev/iommu", os.O_RDWR)
        buf = bytearray(struct.pack("=III", 12, 0, 0))
        fcntl.ioctl(fd, 0x3b81, buf)          # IOMMU_IOAS_ALLOC
        print("ioas", struct.unpack("=III", buf)[2], os.readlink(f"/proc/self/fd/{fd}"))
        sys.exit(42)
    """)
    r = gexec(mount.path, sys.executable, "-c", prog)
    assert r.returncode == 42, r.stderr
    assert r.stdout.split() == ["ioas", "1", str(mount / "iommu")]


def test_private_mount_is_gone_after_the_program(tmp_path, cc):
    from conftest import _fuse_usable
    reason = _fuse_usable()
    if reason:
        pytest.skip(reason)
    exe = cc("exec_open.c")
    r = gexec(None, exe)
    assert r.returncode == 0, r.stderr
    mnt = lines(r.stdout)["open"].split()[0].rsplit("/", 1)[0]
    assert mnt != "/dev"
    with open("/proc/self/mountinfo") as f:
        assert not any(line.split()[4] == mnt for line in f), f"{mnt} is still mounted"
    assert not os.path.exists(mnt), f"{mnt} was not removed"


def test_program_not_found_is_127(mount):
    r = gexec(mount.path, "/no/such/program")
    assert r.returncode == 127
    assert "No such file" in r.stderr


def test_an_unprivileged_program_needs_no_root_and_no_mount_namespace(cc):
    """The program and its supervisor run as nobody, in the caller's own
    mount namespace, against a root server's mount (allow_other): the
    fd-returning ioctls, the vIOMMU mmap and the opens all work."""
    from conftest import _fuse_usable, start_mount, stop_mount
    reason = _fuse_usable()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("becoming another user needs root and setpriv (util-linux)")
    base = Path(tempfile.mkdtemp(prefix="gmemfs-exec-user-"))
    base.chmod(0o755)
    m = start_mount(base, "allow_other")
    try:
        exe = base / "exec_viommu"
        shutil.copy(cc("exec_viommu.c"), exe)
        exe.chmod(0o755)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-m", "gmemfs", "exec", "--mount", str(m.path),
                            "--", str(exe)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + m.log_text()[-3000:]
        got = lines(r.stdout)
        assert got["veventq"] == "0" and got["read_one"] == "12 0/0/0x99"
        assert got["mmap"] == "0" and got["destroy_viommu2_mapped"] == "EBUSY"
        assert got["destroy_viommu"] == "0"
        assert m.contexts() == 0
    finally:
        stop_mount(m)
        shutil.rmtree(base, ignore_errors=True)
