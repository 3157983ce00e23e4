"""End-to-end: the foundation on a real mount, from real client processes.

Each test names the kernel rule it checks (iommufd.md / guest_memfd.md sections).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

import ioctl_abi as abi

pytestmark = pytest.mark.e2e

libc = ctypes.CDLL(None, use_errno=True)


def ioctl_errno(fd, cmd, arg) -> int:
    try:
        fcntl.ioctl(fd, cmd, arg)
        return 0
    except OSError as e:
        return e.errno


def fallocate(fd, mode, off, length) -> int:
    r = libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(length))
    return 0 if r == 0 else ctypes.get_errno()


def ioas_alloc(fd) -> int:
    buf = bytearray(abi.to_bytes(abi.new("iommu_ioas_alloc", size=12)))
    fcntl.ioctl(fd, abi.IOMMU_IOAS_ALLOC, buf)
    return abi.from_bytes("iommu_ioas_alloc", buf).out_ioas_id


def destroy(fd, obj_id) -> int:
    buf = bytearray(abi.to_bytes(abi.new("iommu_destroy", size=8, id=obj_id)))
    return ioctl_errno(fd, abi.IOMMU_DESTROY, buf)


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# --------------------------------------------------------------- iommufd --

def test_python_client_ioas_alloc_destroy_spec_4_1_4_2(mount):
    """IOAS_ALLOC gives an id >= 1 (§1.2: 0 is never an id); DESTROY(id) -> 0,
    DESTROY(id) again -> ENOENT (§4.1)."""
    fd = os.open(mount.iommu, os.O_RDWR)
    try:
        ioas = ioas_alloc(fd)
        assert ioas >= 1
        assert destroy(fd, ioas) == 0
        assert destroy(fd, ioas) == errno.ENOENT
        assert destroy(fd, 0) == errno.ENOENT
    finally:
        os.close(fd)


def test_python_client_extensible_struct_rules_spec_2_2(mount):
    """size < min size -> EINVAL; size > kernel size with a non-zero tail -> E2BIG,
    with a zero tail accepted; copy back min(user size, kernel size) (§2.2, §2.4)."""
    fd = os.open(mount.iommu, os.O_RDWR)
    try:
        assert ioctl_errno(fd, abi.IOMMU_IOAS_ALLOC, bytearray(struct.pack("III", 4, 0, 0))) \
            == errno.EINVAL
        big = bytearray(64)
        struct.pack_into("I", big, 0, 64)
        big[63] = 0x5A
        assert ioctl_errno(fd, abi.IOMMU_IOAS_ALLOC, big) == errno.E2BIG
        big[63] = 0
        big[20] = 0xEE   # past the kernel's 12 bytes: must not be touched
        big[20] = 0
        assert ioctl_errno(fd, abi.IOMMU_IOAS_ALLOC, big) == 0
        assert struct.unpack_from("I", big, 8)[0] >= 1
        assert big[12:] == bytes(52), "copy-back wrote past the kernel struct size"
    finally:
        os.close(fd)


def test_python_client_unknown_command_is_ENOTTY_spec_2_2(mount):
    """Unknown ';' commands -> ENOTTY: an empty table slot (0x95), past the table
    (0xff), below it (0x7f, VFIO compat range, unknown), and a known nr with
    size/direction bits (the kernel compares the full command)."""
    fd = os.open(mount.iommu, os.O_RDWR)
    try:
        arg = bytearray(struct.pack("II", 8, 1))
        for nr in (0x95, 0x9f, 0xff, 0x7f):
            assert ioctl_errno(fd, (0x3B << 8) | nr, arg) == errno.ENOTTY, hex(nr)
        sized_destroy = abi._IOW(0x3B, 0x80, 8)
        assert ioctl_errno(fd, sized_destroy, arg) == errno.ENOTTY
    finally:
        os.close(fd)


def test_python_client_bad_pointer_is_EFAULT_spec_2_2(mount):
    """The size word is read from the user pointer first: an unmapped pointer
    -> EFAULT, even for an empty table slot (§2.2 step 2)."""
    script = textwrap.dedent(f"""
        import ctypes, errno, mmap, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
        fd = os.open({mount.iommu!r}, os.O_RDWR)
        m = mmap.mmap(-1, 4096)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        del m  # unmaps the page
        out = []
        for cmd in (0x3b81, 0x3b80, 0x3b95):
            r = libc.ioctl(fd, cmd, ctypes.c_void_p(8 if cmd == 0x3b80 else 0))
            out.append(errno.errorcode[ctypes.get_errno()] if r else "ok")
        print(" ".join(out))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["EFAULT", "EFAULT", "EFAULT"]


def test_c_client_foundation_checks(mount, cc):
    """The same checks from a C client compiled against ioctl_abi/gmemfs_uapi.h."""
    exe = cc("iommu_basic.c")
    out = subprocess.run([str(exe), str(mount.path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [ln.split() for ln in out.stdout.splitlines()]
    res = {k: v for k, v in lines if k != "id"}
    ids = [int(v) for k, v in lines if k == "id"]
    assert res == {
        "alloc": "ok",                 # §4.2
        "destroy": "ok",               # §4.1
        "destroy_again": "ENOENT",     # §4.1 unknown id
        "size4": "EINVAL",             # §2.2 step 4
        "big_zero_tail": "ok",         # §2.2 step 5
        "big_nonzero_tail": "E2BIG",   # §2.2 step 5
        "unknown_0x95": "ENOTTY",      # §2.2 step 3 (empty slot)
        "unknown_0xff": "ENOTTY",      # §2.2 step 1
        "sized_destroy": "ENOTTY",     # §2.2 step 3 (cmd mismatch)
        "unmapped_ptr": "EFAULT",      # §2.2 step 2
        "readonly_ptr": "EFAULT",      # §2.4 copy-back fault
        "alloc_flags": "EOPNOTSUPP",   # §4.2 flags != 0
    }
    # ids are lowest-free-first (§1.2): 1 was destroyed, so the zero-tail alloc
    # reuses 1, and the object of the failed copy-back was discarded
    assert ids == [1, 1]


def test_two_processes_get_independent_contexts_spec_1_1(mount):
    """Every open() of MNT/iommu is its own context with its own id space (§1.1)."""
    a = os.open(mount.iommu, os.O_RDWR)
    try:
        assert [ioas_alloc(a) for _ in range(3)] == [1, 2, 3]
        script = textwrap.dedent(f"""
            import fcntl, os, struct, errno
            fd = os.open({mount.iommu!r}, os.O_RDWR)
            b = bytearray(struct.pack("III", 12, 0, 0))
            fcntl.ioctl(fd, 0x3b81, b)
            first = struct.unpack("III", b)[2]
            try:
                fcntl.ioctl(fd, 0x3b80, bytearray(struct.pack("II", 8, 3)))
                r = "ok"
            except OSError as e:
                r = errno.errorcode[e.errno]
            print(first, r)
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["1", "ENOENT"]
        # and the other process's work did not touch ours
        assert destroy(a, 3) == 0
        assert destroy(a, 2) == 0
    finally:
        os.close(a)


def test_context_torn_down_at_release_and_counted(mount):
    """Closing the fd destroys the context (§1.4); the server exposes the count."""
    assert mount.contexts() == 0
    fds = [os.open(mount.iommu, os.O_RDWR) for _ in range(3)]
    for fd in fds:
        ioas_alloc(fd)
    assert mount.contexts() == 3
    for fd in fds:
        os.close(fd)
    assert wait_for(lambda: mount.contexts() == 0)


def test_sigkilled_client_leaves_no_context_behind(mount, cc):
    """A client killed with SIGKILL in the middle of its calls leaves nothing:
    the kernel releases its files, the server tears the context down."""
    script = textwrap.dedent(f"""
        import fcntl, os, struct, sys
        fds = [os.open({mount.iommu!r}, os.O_RDWR) for _ in range(4)]
        print("ready", flush=True)
        while True:
            for fd in fds:
                b = bytearray(struct.pack("III", 12, 0, 0))
                fcntl.ioctl(fd, 0x3b81, b)
                fcntl.ioctl(fd, 0x3b80, bytearray(struct.pack("II", 8, struct.unpack("III", b)[2])))
    """)
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        assert mount.contexts() >= 4
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert wait_for(lambda: mount.contexts() == 0), mount.contexts()
    # the server still answers
    fd = os.open(mount.iommu, os.O_RDWR)
    assert ioas_alloc(fd) == 1
    os.close(fd)


# ------------------------------------------------------------ guest_memfd --

def make_gmem(path, size, flags):
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    arg = bytearray(abi.to_bytes(abi.new("kvm_create_guest_memfd", size=size, flags=flags)))
    fcntl.ioctl(fd, abi.KVM_CREATE_GUEST_MEMFD, arg)
    return fd


def test_gmem_create_and_punch_rules_guest_memfd_4_1_4_3(mount):
    """A 2 MiB guest_memfd made with open(O_CREAT) + KVM_CREATE_GUEST_MEMFD:
    PUNCH_HOLE|KEEP_SIZE of 4096 at 0 -> 0; unaligned -> EINVAL; PUNCH_HOLE
    without KEEP_SIZE -> EOPNOTSUPP (§4.3 steps 2, 6, 7)."""
    fd = make_gmem(mount.gmem("vm0"), 2 << 20, abi.GUEST_MEMFD_FLAG_MMAP)
    try:
        st = os.fstat(fd)
        assert (st.st_mode, st.st_size, st.st_blksize) == (0o100600, 2 << 20, 4096)
        PUNCH, KEEP = 2, 1
        assert fallocate(fd, PUNCH | KEEP, 0, 4096) == 0
        assert fallocate(fd, PUNCH | KEEP, 1, 4096) == errno.EINVAL
        assert fallocate(fd, PUNCH | KEEP, 0, 4095) == errno.EINVAL
        assert fallocate(fd, PUNCH, 0, 4096) == errno.EOPNOTSUPP
        assert fallocate(fd, KEEP, 0, 4096) == 0
        assert fallocate(fd, KEEP, 2 << 20, 4096) == errno.EINVAL     # allocate past EOF
        assert fallocate(fd, PUNCH | KEEP, 4 << 20, 4096) == 0         # punch past EOF
    finally:
        os.close(fd)


def test_gmem_second_create_on_same_fd_is_ENOTTY_guest_memfd_4_1(mount):
    """On a real kernel KVM_CREATE_GUEST_MEMFD issued on a guest_memfd fd is an
    unknown ioctl there -> ENOTTY; gmemfs answers the same once the fd is a
    guest_memfd (documented in the README)."""
    fd = make_gmem(mount.gmem("twice"), 2 << 20, 0)
    try:
        arg = bytearray(abi.to_bytes(abi.new("kvm_create_guest_memfd", size=4096)))
        assert ioctl_errno(fd, abi.KVM_CREATE_GUEST_MEMFD, arg) == errno.ENOTTY
        assert os.fstat(fd).st_size == 2 << 20
    finally:
        os.close(fd)


def test_gmem_create_validation_guest_memfd_4_1(mount):
    """Unknown flag bits -> EINVAL; size 0 / unaligned / negative -> EINVAL;
    the file stays uncreated and can be created afterwards."""
    fd = os.open(mount.gmem("v"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        def create(size, flags):
            arg = bytearray(abi.to_bytes(abi.new("kvm_create_guest_memfd", size=size,
                                                 flags=flags)))
            return ioctl_errno(fd, abi.KVM_CREATE_GUEST_MEMFD, arg)
        assert create(4096, 4) == errno.EINVAL
        assert create(0, 0) == errno.EINVAL
        assert create(4097, 0) == errno.EINVAL
        assert create(1 << 63, 0) == errno.EINVAL
        assert create(1 << 40, 3) == 0            # 1 TiB costs nothing
        assert os.fstat(fd).st_size == 1 << 40
    finally:
        os.close(fd)


def test_gmem_unlink_keeps_memory_while_open(mount):
    """Unlink removes the name; the memory lives while fds (or mappings) exist."""
    fd = make_gmem(mount.gmem("u"), 1 << 20, abi.GUEST_MEMFD_FLAG_MMAP |
                   abi.GUEST_MEMFD_FLAG_INIT_SHARED)
    m = mmap.mmap(fd, 1 << 20)
    m[100:105] = b"hello"
    os.unlink(mount.gmem("u"))
    assert "u" not in os.listdir(mount.path / "gmem")
    assert m[100:105] == b"hello"
    assert fallocate(fd, 3, 0, 4096) == 0
    assert m[100:105] == bytes(5)
    m.close()
    os.close(fd)


# ------------------------------------------------------------- robustness --

@pytest.mark.parametrize("opts", [(), ("policy=mirror,platform=tdx,strict",),
                                  ("policy=none,platform=snp",)],
                         ids=["default", "mirror-tdx-strict", "none-snp"])
def test_random_payloads_leave_server_alive(mount_factory, cc, opts):
    """10,000 random iommufd payloads (commands ';' 0x80-0x94 and 0xa0, the VFIO
    compat commands 0x64-0x75, plausible vIOMMU/vDEVICE/HW queue chains, random
    sizes, random bytes, bad pointers, random conversions and punches of a
    guest_memfd the payloads may map) from a C fuzzer: the server survives and
    still answers correctly, under the default and under other policy/platform
    models."""
    mount = mount_factory(*opts)
    exe = cc("iommu_fuzz.c")
    out = subprocess.run([str(exe), str(mount.path), "10000", "12345"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = dict(ln.split(None, 1) for ln in out.stdout.splitlines() if " " in ln)
    assert int(summary["calls"]) == 10000
    assert mount.alive()
    fd = os.open(mount.iommu, os.O_RDWR)
    try:
        assert ioas_alloc(fd) == 1
    finally:
        os.close(fd)
    assert wait_for(lambda: mount.contexts() == 0)
    assert "server bug" not in mount.log_text()


def test_directory_listing_and_attributes(mount):
    """readdir(plus) lists the fixed layout and the gmem files with their
    attributes (mode 0100600, the guest_memfd size once created); an unlinked
    name is gone from the listing."""
    assert {".state", "gmem", "iommu", "kvm"} <= set(os.listdir(mount.path))
    fds = [make_gmem(mount.gmem(f"g{i}"), (i + 1) << 20, 0) for i in range(3)]
    entries = {e.name: e.stat() for e in os.scandir(mount.path / "gmem")}
    assert sorted(entries) == ["g0", "g1", "g2"]
    for i in range(3):
        assert entries[f"g{i}"].st_mode == 0o100600
        assert entries[f"g{i}"].st_size == (i + 1) << 20
    os.unlink(mount.gmem("g1"))
    assert sorted(os.listdir(mount.path / "gmem")) == ["g0", "g2"]
    assert sorted(os.listdir(mount.path / ".state" / "gmem")) == ["g0", "g2"]
    for fd in fds:
        os.close(fd)
