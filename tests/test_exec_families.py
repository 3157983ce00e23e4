"""End-to-end: every fd-returning family of ioctls from unmodified programs
under `gmemfs exec` (C and Python), with the kernel's record formats and
errno, and the same ioctls on a plain mount (EOPNOTSUPP, logged with the
reason naming gmemfs exec).

Kernel rules (iommufd.md §6.7, §10.5; guest_memfd.md §4.1, §4.6, §4.7;
kernel eventq.c, selftest.c, kvm_main.c, guest_memfd.c) are named in the
assertions."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import signal
import struct
import sys
import textwrap
import time

import pytest

from conftest import ROOT
from test_exec_e2e import gexec, lines
from test_exec_robust import (_no_supervisor_left, children_of, hold_dir,  # noqa: F401
                              popen_exec, release, wait_gone, wait_held)

pytestmark = pytest.mark.e2e

KVM_CLIENT = ROOT / "tests" / "exec_kvm_client.py"


def server_state(mount) -> dict:
    return json.loads((mount.path / ".state" / "server.json").read_text())


# ------------------------------------------------------------ fault queues

def test_fault_queue_from_a_c_program(mount, cc):
    exe = cc("exec_fault.c")
    r = gexec(mount.path, exe)
    assert r.returncode == 0, r.stderr
    got = lines(r.stdout)
    # §6.7: flags -> EOPNOTSUPP; the generic size rules (§2.2) still come first
    assert got["alloc_flags"] == "EOPNOTSUPP"
    assert got["alloc_short"] == "EINVAL"
    assert got["alloc_efault"] == "EFAULT"
    assert got["alloc"] == "0"
    assert got["fault_fd_cloexec"] == "1"            # installed O_CLOEXEC
    assert got["fault_fd_flags"] == "0x2"            # O_RDWR
    # HWPT_ALLOC: NEST_PARENT | FAULT_ID_VALID -> EOPNOTSUPP; unknown fault_id -> ENOENT
    assert got["hwpt_nest_parent_fault"] == "EOPNOTSUPP"
    assert got["hwpt_bad_fault_id"] == "ENOENT"
    assert got["hwpt_iopf"] == "0" and got["replace"] == "0"
    assert got["destroy_busy_hwpt"] == "EBUSY"
    # poll: POLLOUT always, POLLIN when a group is queued; empty read is 0
    assert got["poll_empty"] == "0x4" and got["read_empty"] == "0"
    assert got["poll_ready"] == "0x5"
    # read: count % 40 -> ESPIPE; no pread on the file (anon inode: no FMODE_PREAD)
    assert got["read_39"] == "ESPIPE" and got["pread_0"] == "ESPIPE"
    # the record (struct iommu_hwpt_pgfault) of the selftest's trigger
    assert got["read"] == ("40 flags 0x3 dev 1 pasid 1 grpid 2 perm 0x3 addr 0xdeadbeaf "
                           "length 0 cookie 1")
    # write: count % 8 -> ESPIPE, bad code / cookie -> EINVAL, 8 bytes consumed
    assert got["write_7"] == "ESPIPE" and got["write_bad_code"] == "EINVAL"
    assert got["write_ok"] == "8" and got["write_cookie_gone"] == "EINVAL"
    # a device leaving the HWPT: its pending request is answered and gone
    assert got["read_after_detach"] == "0"
    # the fd and the HWPT each hold the FAULT object
    assert got["destroy_fault_busy"] == "EBUSY"
    assert got["destroy_fault_hwpt_holds"] == "EBUSY"
    assert got["destroy_fault"] == "0"
    # the fault fd holds the context; an anonymous file cannot be reopened
    assert got["read_after_iommufd_close"] == "0"
    assert got["reopen"] == "ENXIO"
    assert mount.contexts() == 0


def test_fault_queue_from_a_python_program(mount):
    prog = textwrap.dedent("""
        import fcntl, os, select, struct
        fd = os.open("/dev/iommu", os.O_RDWR)
        b = bytearray(struct.pack("=IIII", 16, 0, 0, 0))
        fcntl.ioctl(fd, 0x3b8e, b)                       # IOMMU_FAULT_QUEUE_ALLOC
        _, _, fid, ffd = struct.unpack("=IIII", b)
        print("ids", fid, ffd > 2)
        print("poll", select.select([ffd], [ffd], [], 0)[1] == [ffd])
        try:
            os.read(ffd, 20)
        except OSError as e:
            print("read20", e.errno)
        os.close(ffd)
        fcntl.ioctl(fd, 0x3b80, bytearray(struct.pack("=II", 8, fid)))   # IOMMU_DESTROY
        print("destroyed")
    """)
    r = gexec(mount.path, sys.executable, "-c", prog)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == ["ids 1 True", "poll True",
                                        f"read20 {errno.ESPIPE}", "destroyed"]


# ------------------------------------------------ vIOMMU: vEVENTQ, mmap

def test_veventq_and_viommu_mmap_from_a_c_program(mount, cc):
    exe = cc("exec_viommu.c")
    r = gexec(mount.path, exe)
    assert r.returncode == 0, r.stderr + mount.log_text()[-3000:]
    got = lines(r.stdout)
    assert got["viommu"] == "0" and got["out_data"] == "0xbeef length 8192 offset_aligned 1"
    expect = {
        # eventq.c: depth 0 EINVAL, type DEFAULT EOPNOTSUPP, no vIOMMU ENOENT,
        # one queue per type EEXIST; the fd is O_CLOEXEC
        "veventq_depth0": "EINVAL", "veventq_default_type": "EOPNOTSUPP",
        "veventq_no_viommu": "ENOENT", "veventq": "0", "veventq_fd_cloexec": "1",
        "veventq_again": "EEXIST", "vdevice": "0", "nested": "0", "replace": "0",
        "poll_empty": "0", "read_empty": "0",
        "poll_ready": "1 0x1",
        # whole entries only: 11 bytes hold no header + payload
        "read_short": "0",
        # header {flags, sequence} + struct iommu_viommu_event_selftest {virt_id}
        "read_one": "12 0/0/0x99",
        # depth 2: the third event is lost; the lost-events header has its own number
        "read_overflow": "32 0/1/0x99 0/2/0x99 0x1/3",
        "read_after": "12 0/4/0x99",
        "destroy_viommu_queue_holds": "EBUSY",
        # main.c mmap: exactly the region (ENXIO), not exec (EPERM)
        "viommu2": "0", "mmap_past_start": "ENXIO", "mmap_past_end": "ENXIO",
        "mmap_half": "ENXIO", "mmap_double": "ENXIO", "mmap_offset0": "ENXIO",
        "mmap_exec": "EPERM", "mmap_validate": "mapped",
        # deviation: only shared mmaps are intercepted; the kernel's EINVAL for a
        # private one is not given (its pages are no region's: a touch is SIGBUS)
        "mmap_private": "mapped",
        "mmap": "0", "word": "0xcafe second_page 0", "word1": "0x1234",
        # a mapping holds its owner (vm_ops open/close)
        "destroy_viommu2_mapped": "EBUSY", "destroy_viommu2_unmapped": "0",
        "memfd_map": "memfd",
        "destroy_veventq": "0", "destroy_nested": "0", "destroy_vdevice": "0",
        "destroy_viommu": "0",
    }
    assert {k: got.get(k) for k in expect} == expect
    assert not [k for k in got if k.startswith("trigger_")]
    assert mount.contexts() == 0


def test_plain_mount_maps_no_vIOMMU_region(mount, cc):
    """Without gmemfs exec nobody checks an mmap of MNT/iommu (FUSE has no
    mmap request): the mapping is made, but its pages are no region's and
    the first touch is SIGBUS, never another context's or stale data."""
    exe = cc("exec_viommu.c")
    import subprocess
    r = subprocess.run([str(exe), "plain", str(mount.path / "iommu")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == -signal.SIGBUS, r.stdout + r.stderr
    got = lines(r.stdout)
    assert got["viommu"] == "0" and got["plain_mmap"] == "0"
    assert "plain_word" not in got


# ----------------------------------------------------------- access objects

def test_access_objects_from_a_c_program(mount, cc):
    exe = cc("exec_access.c")
    r = gexec(mount.path, exe, timeout=300)
    assert r.returncode == 0, r.stderr
    got = lines(r.stdout)
    expect = {
        "create_bad_flags": "EOPNOTSUPP", "create_no_ioas": "ENOENT",
        "access_fd_cloexec": "1",
        # the staccess file has only release: read EINVAL, ioctl ENOTTY
        "access_fd_read": "EINVAL", "access_fd_ioctl": "ENOTTY",
        "destroy_ioas_busy": "EBUSY",       # the access holds its IOAS
        "next_ioas": "3",                   # the access took ID 2, never reported
        "pages": "0", "item": "0", "refs_1": "0", "refs_0": "0",
        "pages_bad_uptr": "EBADE", "pages_unaligned": "EINVAL", "pages_hole": "ENOENT",
        "pages_bad_fd": "EBADFD", "pages_item2": "0", "item2": "1",
        "destroy_pages": "0", "destroy_pages_again": "ENOENT",
        # UNMAP tells the access; the selftest's callback drops the item
        "unmap": "0", "refs_after_unmap": "0", "destroy_pages_after_unmap": "ENOENT",
        "rw_sweep": "0", "rw_sweep_slow": "0",
        "map_unaligned_iova": "0", "rw_sweep_unaligned": "0",
        "rw_hole": "ENOENT", "rw_len0": "EINVAL",
        "replace": "0", "destroy_old_ioas": "0", "rw_after_replace": "0x5a",
        "destroy_ioas_after_close": "0",
        # fork rules: pages pinned by a child that exited stay valid; without
        # a domain nothing was pinned and the gone child's memory is EFAULT
        "fork_gone_child": "0", "fork_gone_second_domain": "0", "fork_gone_rw": "0",
        "fork_gone_no_domain": "EFAULT",
        "fork_present_domain": "0", "fork_present_rw": "0",
    }
    assert {k: got.get(k) for k in expect} == expect
    assert mount.contexts() == 0


# --------------------------------------------------------- KVM and gmem

def test_kvm_vm_and_guest_memfd_from_a_python_program(mount):
    r = gexec(mount.path, sys.executable, KVM_CLIENT, mount.path)
    assert r.returncode == 0, r.stderr
    got = lines(r.stdout)
    expect = {
        "kvm_path": str(mount / "kvm"), "api_version": "12",
        "cap_231": "1", "cap_234": "1", "cap_235": "3", "cap_244": "3", "cap_99999": "0",
        "create_vm_bad_type": "EINVAL", "vm_cloexec": "1", "vm_cap_gmem_flags": "3",
        "vm_unknown_ioctl": "ENOTTY",
        # §4.1 check order: flags, then size; a bad pointer is EFAULT
        "gmem_bad_flags": "EINVAL", "gmem_bad_size": "EINVAL", "gmem_efault": "EFAULT",
        # the new fd: O_RDWR, no FD_CLOEXEC, S_IFREG 0600, the size
        "gmem_cloexec": "0 accmode 2", "gmem_size": "65536 mode 0o100600",
        "gmem_create_on_gmem": "ENOTTY", "gmem_reopen": "ENXIO",
        "gmem_data": "hello 0",
        # §4.6 bindings
        "region": "0", "region_overlap_gmem": "EINVAL", "region_next_to_it": "0",
        "region_gpa_overlap": "EEXIST", "region_bad_fd": "EBADF",
        "region_not_gmem": "EINVAL", "region_past_end": "EINVAL",
        "region_modify_gmem": "EINVAL", "region_delete": "0",
        "region_other_vms_gmem": "EINVAL",
        # §4.1: a VM ioctl from another mm
        "child_vm_ioctl": "EIO",
        # §4.7: the guest_memfd outlives the VM fd
        "gmem_after_vm_close": "hello",
    }
    assert {k: got.get(k) for k in expect} == expect
    views = got["views"].split()
    assert len(views) == 1 and views[0].startswith("kvm-gmem-")
    # the guest_memfd and the VMs went with the program
    assert not os.listdir(mount.path / ".state" / "gmem")
    assert json.loads((mount.path / ".state" / "kvm").read_text()) == []


def test_kvm_state_views_while_alive(mount):
    prog = textwrap.dedent(f"""
        import ctypes, json, os, struct, sys
        sys.path.insert(0, {str(KVM_CLIENT.parent)!r})
        from exec_kvm_client import ioctl_int, create_gmem, region
        kvm = os.open("/dev/kvm", os.O_RDWR)
        vm = ioctl_int(kvm, 0xAE01, 1)                   # KVM_X86_SW_PROTECTED_VM
        g = create_gmem(vm, 1 << 30, 0)
        region(vm, 3, 4, 0x100000000, 1 << 20, 0, g, 1 << 20)
        mnt = sys.argv[1]
        vms = json.load(open(mnt + "/.state/kvm"))
        name = os.listdir(mnt + "/.state/gmem")[0]
        view = json.load(open(mnt + "/.state/gmem/" + name))
        print(json.dumps({{"vms": vms, "gmem": view}}))
    """)
    r = gexec(mount.path, sys.executable, "-c", prog, mount.path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    (vm,) = d["vms"]
    assert vm["type"] == 1
    (slot,) = vm["memslots"]
    assert slot == {"slot": 3, "gpa": 0x100000000, "size": 1 << 20, "flags": 4,
                    "userspace_addr": 0, "guest_memfd": vm["guest_memfds"][0],
                    "guest_memfd_offset": 1 << 20}
    assert d["gmem"]["size"] == 1 << 30 and d["gmem"]["created"] is True


# ------------------------------------------------------- without gmemfs exec

def test_plain_mount_keeps_EOPNOTSUPP_and_the_log_names_gmemfs_exec(mount):
    libc = ctypes.CDLL(None, use_errno=True)

    def ioctl(fd, cmd, buf):
        b = ctypes.create_string_buffer(bytes(buf), len(buf))
        r = libc.ioctl(fd, ctypes.c_ulong(cmd), b)
        return 0 if r >= 0 else ctypes.get_errno()

    fd = os.open(mount / "iommu", os.O_RDWR)
    kvm = os.open(mount / "kvm", os.O_RDWR)
    try:
        assert ioctl(fd, 0x3b8e, struct.pack("=IIII", 16, 0, 0, 0)) == errno.EOPNOTSUPP
        ioas = bytearray(struct.pack("=III", 12, 0, 0))
        fcntl.ioctl(fd, 0x3b81, ioas)
        ioas_id = struct.unpack("=III", ioas)[2]
        cmd = struct.pack("=IIII", 72, 5, ioas_id, 0) + bytes(56)        # CREATE_ACCESS
        assert ioctl(fd, 0x3ba0, cmd) == errno.EOPNOTSUPP
        assert libc.ioctl(kvm, ctypes.c_ulong(0xAE01), ctypes.c_ulong(0)) == -1
        assert ctypes.get_errno() == errno.EOPNOTSUPP
        # nothing was left behind: the next IOAS takes the next ID
        fcntl.ioctl(fd, 0x3b81, ioas)
        assert struct.unpack("=III", ioas)[2] == ioas_id + 1
    finally:
        os.close(fd)
        os.close(kvm)
    log = mount.log_text()
    assert "IOMMU_FAULT_QUEUE_ALLOC" in log and "gmemfs exec" in log
    assert log.count("gmemfs exec") >= 3


# --------------------------------------------------- killed in the middle

@pytest.mark.parametrize("family", ["fault", "access", "vm"])
def test_program_killed_before_its_new_fd_is_installed_leaks_nothing(mount, tmp_path, family):
    prog = {
        "fault": """
            import fcntl, os, struct
            fd = os.open("/dev/iommu", os.O_RDWR)
            fcntl.ioctl(fd, 0x3b8e, bytearray(struct.pack("=IIII", 16, 0, 0, 0)))
        """,
        "access": """
            import fcntl, os, struct
            fd = os.open("/dev/iommu", os.O_RDWR)
            b = bytearray(struct.pack("=III", 12, 0, 0))
            fcntl.ioctl(fd, 0x3b81, b)
            cmd = struct.pack("=IIII", 72, 5, struct.unpack("=III", b)[2], 0) + bytes(56)
            fcntl.ioctl(fd, 0x3ba0, bytearray(cmd))
        """,
        "vm": """
            import fcntl, os
            fcntl.ioctl(os.open("/dev/kvm", os.O_RDWR), 0xAE01, 0)
        """,
    }[family]
    hold = hold_dir(tmp_path)
    before = server_state(mount)
    p = popen_exec(mount.path, sys.executable, "-c", textwrap.dedent(prog),
                   env={**os.environ, "GMEMFS_EXEC_TEST_HOLD": hold})
    what = wait_held(hold)
    assert what.startswith("hold open /dev/" + ("kvm" if family == "vm" else "iommu")), what
    release(hold)
    what = wait_held(hold)
    assert what.startswith("hold ioctl"), what
    # the object exists, its file is open by the supervisor only
    prog_pid = children_of(p.pid)[0]
    os.kill(prog_pid, signal.SIGKILL)
    wait_gone(prog_pid)
    release(hold)
    assert p.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = server_state(mount)
        if after["open_files"] == before["open_files"] and after["contexts"] == 0:
            break
        time.sleep(0.05)
    assert after["contexts"] == 0
    assert after["open_files"] == before["open_files"]
    assert json.loads((mount.path / ".state" / "kvm").read_text()) == []
