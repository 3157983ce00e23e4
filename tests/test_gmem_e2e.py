"""End-to-end: guest_memfd files on a real mount, in-place conversion through
real syscalls from Python and C clients (guest_memfd.md §4.5, §6)."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

import ioctl_abi as abi

pytestmark = pytest.mark.e2e

PRIVATE = abi.KVM_MEMORY_ATTRIBUTE_PRIVATE
MMAP, INIT_SHARED = abi.GUEST_MEMFD_FLAG_MMAP, abi.GUEST_MEMFD_FLAG_INIT_SHARED


def make_gmem(path, size, flags):
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    arg = bytearray(abi.to_bytes(abi.new("kvm_create_guest_memfd", size=size, flags=flags)))
    fcntl.ioctl(fd, abi.KVM_CREATE_GUEST_MEMFD, arg)
    return fd


def set_attributes(fd, offset, size, attributes, flags=0):
    """-> (errno or 0, error_offset as written back)"""
    buf = bytearray(abi.to_bytes(abi.new("kvm_memory_attributes2", offset=offset, size=size,
                                         attributes=attributes, flags=flags)))
    try:
        fcntl.ioctl(fd, abi.KVM_SET_MEMORY_ATTRIBUTES2, buf)
        err = 0
    except OSError as e:
        err = e.errno
    return err, abi.from_bytes("kvm_memory_attributes2", buf).error_offset


def touch_in_child(path_or_fd_script: str) -> int:
    """Run a Python snippet in a child process; return its exit code (-7 = SIGBUS)."""
    p = subprocess.run([sys.executable, "-c", path_or_fd_script], capture_output=True,
                       text=True, timeout=60)
    return p.returncode


def test_c_client_convert_cycle_guest_memfd_6(mount, cc):
    """C client: pattern through a shared mapping; to private -> touch SIGBUS
    (v8: every page may be mapped, touching a private page is SIGBUS), the
    neighbour stays readable; back to shared -> content kept (v8: KVM does not
    change contents); punch -> zeroes; v8 argument checks -> EINVAL;
    capability 250 on MNT/kvm = PRIVATE."""
    exe = cc("gmem_convert.c")
    out = subprocess.run([str(exe), str(mount.path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    res = dict(ln.split(None, 1) for ln in out.stdout.splitlines())
    assert res == {
        "write_pattern": "ok",
        "to_private": "ok",
        "touch_private": "SIGBUS",
        "touch_neighbour": "readable",
        "neighbour_kept": "ok",
        "noop_to_private": "ok",          # v8 no-op fast path
        "to_shared": "ok",
        "touch_shared": "readable",
        "content_kept": "ok",
        "punch": "ok",
        "punched_zero": "ok",
        "neighbour_after_punch": "ok",
        "flags_nonzero": "EINVAL",        # v8 check 1
        "bad_attr": "EINVAL",             # v8 check 4
        "size_zero": "EINVAL",            # v8 check 5
        "unaligned": "EINVAL",            # v8 check 6
        "past_eof": "EINVAL",             # v8 check 7
        "wraps": "EINVAL",                # v8 check 5
        "reserved_nonzero": "EINVAL",     # v8 check 2
        "cap_memory_attributes": str(PRIVATE),
        "cap_guest_memfd_flags": str(MMAP | INIT_SHARED),
        "cap_unknown": "0",
    }


def test_python_client_convert_cycle_guest_memfd_6(mount):
    """The same cycle from Python; SIGBUS observed in a child process that
    shares the mapping (a Python SIGBUS handler cannot run synchronously)."""
    fd = make_gmem(mount.gmem("py"), 1 << 20, MMAP | INIT_SHARED)
    m = mmap.mmap(fd, 1 << 20)
    m[4096:4096 + 11] = b"hello-gmemfs"[:11]
    assert set_attributes(fd, 4096, 4096, PRIVATE) == (0, 0)

    def child_touch(off):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGBUS, signal.SIG_DFL)
            _ = m[off]
            os._exit(0)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    assert child_touch(4096) == -signal.SIGBUS
    assert child_touch(0) == 0
    assert child_touch(8192) == 0
    assert set_attributes(fd, 4096, 4096, 0) == (0, 0)
    assert m[4096:4096 + 11] == b"hello-gmemfs"[:11]
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.fallocate(fd, 3, ctypes.c_long(4096), ctypes.c_long(4096)) == 0
    assert m[4096:4096 + 11] == bytes(11)
    m.close()
    os.close(fd)


def test_private_by_default_without_init_shared_guest_memfd_4_5(mount):
    """MMAP without INIT_SHARED: all memory private, every touch SIGBUS; converting
    a page to shared makes exactly that page usable (v8)."""
    fd = make_gmem(mount.gmem("priv"), 1 << 20, MMAP)
    m = mmap.mmap(fd, 1 << 20)

    def child_touch(off, write=False):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGBUS, signal.SIG_DFL)
            if write:
                m[off] = 1
            else:
                _ = m[off]
            os._exit(0)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    assert child_touch(0) == -signal.SIGBUS
    assert child_touch(0, write=True) == -signal.SIGBUS
    assert set_attributes(fd, 0, 4096, 0) == (0, 0)
    assert child_touch(0, write=True) == 0
    assert m[0] == 1
    assert child_touch(4096) == -signal.SIGBUS
    m.close()
    os.close(fd)


def test_touch_past_eof_is_SIGBUS_guest_memfd_4_5(mount):
    """A mapping longer than the file: touching a page past EOF is SIGBUS."""
    fd = make_gmem(mount.gmem("eof"), 8192, MMAP | INIT_SHARED)
    m = mmap.mmap(fd, 8192)
    m.close()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    addr = libc.mmap(None, 16384, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGBUS, signal.SIG_DFL)
        ctypes.c_char.from_address(addr + 8192).value
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == -signal.SIGBUS
    os.close(fd)


def test_map_populate_over_private_pages_does_not_hang(mount):
    """MAP_POPULATE and mlock over private pages make the kernel retry page-cache
    fills forever (guest_memfd.md §8.1): gmemfs breaks the loop; the caller
    returns, and a later touch of the private page is still SIGBUS."""
    fd = make_gmem(mount.gmem("pop"), 1 << 20, MMAP)
    script = textwrap.dedent(f"""
        import ctypes, mmap, os, signal
        fd = os.open({mount.gmem('pop')!r}, os.O_RDWR)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        MAP_POPULATE = 0x8000
        a = libc.mmap(None, 16384, 3, mmap.MAP_SHARED | MAP_POPULATE, fd, 0)
        libc.mlock(ctypes.c_void_p(a), ctypes.c_size_t(8192))
        libc.munlock(ctypes.c_void_p(a), ctypes.c_size_t(8192))
        import time; time.sleep(0.3)
        signal.signal(signal.SIGBUS, signal.SIG_DFL)
        ctypes.c_char.from_address(a).value
        os._exit(0)
    """)
    assert touch_in_child(script) == -signal.SIGBUS
    os.close(fd)


def test_state_view_is_parseable(mount):
    """MNT/.state/gmem/NAME: size, flags, attribute ranges, allocated extents."""
    fd = make_gmem(mount.gmem("view"), 1 << 30, MMAP | INIT_SHARED)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.fallocate(fd, 1, ctypes.c_long(0), ctypes.c_long(1 << 21)) == 0
    assert set_attributes(fd, 1 << 20, 1 << 20, PRIVATE) == (0, 0)
    view = json.loads((mount.path / ".state" / "gmem" / "view").read_text())
    assert view["size"] == 1 << 30
    assert view["flags"] == MMAP | INIT_SHARED
    assert [tuple(r) for r in view["attributes"]] == [
        (0, 1 << 20, "shared"), (1 << 20, 2 << 20, "private"), (2 << 20, 1 << 30, "shared")]
    assert [tuple(r) for r in view["allocated"]] == [(0, 1 << 21)]
    assert "view" in os.listdir(mount.path / ".state" / "gmem")
    os.close(fd)


def test_generic_ops_answer_like_the_kernel_guest_memfd_4_2(mount):
    """read/write -> EINVAL, pread/pwrite/lseek -> ESPIPE, ftruncate/fchmod/fsync
    -> EINVAL; fstat mode 0100600, size, blksize 4096, blocks 0."""
    fd = make_gmem(mount.gmem("ops"), 2 << 20, 0)

    def err(fn, *a):
        try:
            fn(*a)
        except OSError as e:
            return e.errno
        return 0

    assert err(os.read, fd, 16) == errno.EINVAL
    assert err(os.write, fd, b"x") == errno.EINVAL
    assert err(os.pread, fd, 16, 0) == errno.ESPIPE
    assert err(os.pwrite, fd, b"x", 0) == errno.ESPIPE
    assert err(os.lseek, fd, 0, os.SEEK_SET) == errno.ESPIPE
    assert err(os.ftruncate, fd, 4096) == errno.EINVAL
    assert err(os.fchmod, fd, 0o644) == errno.EINVAL
    assert err(os.fsync, fd) == errno.EINVAL
    st = os.fstat(fd)
    assert (st.st_mode, st.st_size, st.st_blksize, st.st_blocks) == (0o100600, 2 << 20, 4096, 0)
    os.close(fd)
