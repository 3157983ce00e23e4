"""A VMM-like Python program using /dev/kvm the way VMMs create guest_memfd
(KVM_CREATE_VM, then KVM_CREATE_GUEST_MEMFD on the VM fd, then
KVM_SET_USER_MEMORY_REGION2), run unmodified under `gmemfs exec` by
tests/test_exec_families.py. It knows nothing of gmemfs: plain syscalls.
Prints "name value" lines. Not a test module (no test_ prefix)."""
import ctypes
import errno
import fcntl
import mmap
import os
import struct
import sys

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_CHECK_EXTENSION = 0xAE03
KVM_SET_USER_MEMORY_REGION2 = 0x40A0AE49
KVM_CREATE_GUEST_MEMFD = 0xC040AED4
KVM_SET_MEMORY_ATTRIBUTES2 = 0xC080AED2
KVM_CAP_USER_MEMORY2, KVM_CAP_GUEST_MEMFD, KVM_CAP_VM_TYPES, KVM_CAP_GUEST_MEMFD_FLAGS = \
    231, 234, 235, 244
MMAP, INIT_SHARED = 1, 2
KVM_MEM_GUEST_MEMFD = 4
PS = 4096

libc = ctypes.CDLL(None, use_errno=True)


def show(name, fn, *a):
    try:
        r = fn(*a)
    except OSError as e:
        print(name, errno.errorcode[e.errno])
        return None
    print(name, r if isinstance(r, int) else "ok")
    return r


def ioctl_int(fd, cmd, arg=0):
    """ioctl with an integer argument, returning the ioctl's value."""
    r = libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(cmd), ctypes.c_ulong(arg))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def ioctl_buf(fd, cmd, data):
    buf = ctypes.create_string_buffer(bytes(data), len(data))
    r = libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(cmd), buf)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def create_gmem(vm, size, flags=0):
    return ioctl_buf(vm, KVM_CREATE_GUEST_MEMFD, struct.pack("<QQ48x", size, flags))


def region(vm, slot, flags, gpa, size, uaddr=0, gmem=0, off=0):
    return ioctl_buf(vm, KVM_SET_USER_MEMORY_REGION2,
                     struct.pack("<IIQQQQII112x", slot, flags, gpa, size, uaddr, off, gmem, 0))


def cloexec(fd):
    return fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def main():
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    print("kvm_path", os.readlink(f"/proc/self/fd/{kvm}"))
    show("api_version", ioctl_int, kvm, KVM_GET_API_VERSION)
    for cap in (KVM_CAP_USER_MEMORY2, KVM_CAP_GUEST_MEMFD, KVM_CAP_VM_TYPES,
                KVM_CAP_GUEST_MEMFD_FLAGS, 99999):
        show(f"cap_{cap}", ioctl_int, kvm, KVM_CHECK_EXTENSION, cap)
    show("create_vm_bad_type", ioctl_int, kvm, KVM_CREATE_VM, 7)
    vm = ioctl_int(kvm, KVM_CREATE_VM, 0)
    print("vm_cloexec", cloexec(vm))
    show("vm_cap_gmem_flags", ioctl_int, vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS)
    show("vm_unknown_ioctl", ioctl_int, vm, 0xAE80)             # KVM_RUN is a vCPU ioctl
    show("gmem_bad_flags", create_gmem, vm, PS, 4)
    show("gmem_bad_size", create_gmem, vm, PS + 1)
    show("gmem_efault", ioctl_int, vm, KVM_CREATE_GUEST_MEMFD, 8)
    g = create_gmem(vm, 16 * PS, MMAP | INIT_SHARED)
    print("gmem_cloexec", cloexec(g), "accmode", fcntl.fcntl(g, fcntl.F_GETFL) & os.O_ACCMODE)
    st = os.fstat(g)
    print("gmem_size", st.st_size, "mode", oct(st.st_mode))
    show("gmem_create_on_gmem", create_gmem, g, PS)
    show("gmem_reopen", os.open, f"/proc/self/fd/{g}", os.O_RDWR)
    m = mmap.mmap(g, 16 * PS)
    m[0:5] = b"hello"
    if libc.fallocate(g, 3, ctypes.c_long(PS), ctypes.c_long(PS)):   # PUNCH_HOLE | KEEP_SIZE
        raise OSError(ctypes.get_errno(), "fallocate")
    print("gmem_data", m[0:5].decode(), m[PS])
    # memslots
    show("region", region, vm, 0, KVM_MEM_GUEST_MEMFD, 0, 4 * PS, 0, g, 0)
    show("region_overlap_gmem", region, vm, 1, KVM_MEM_GUEST_MEMFD, 0x100000, 4 * PS, 0, g,
         2 * PS)
    show("region_next_to_it", region, vm, 1, KVM_MEM_GUEST_MEMFD, 0x100000, 4 * PS, 0, g,
         4 * PS)
    show("region_gpa_overlap", region, vm, 2, KVM_MEM_GUEST_MEMFD, PS, PS, 0, 9999, 0)
    show("region_bad_fd", region, vm, 2, KVM_MEM_GUEST_MEMFD, 0x200000, PS, 0, 9999, 0)
    show("region_not_gmem", region, vm, 2, KVM_MEM_GUEST_MEMFD, 0x200000, PS, 0, kvm, 0)
    show("region_past_end", region, vm, 2, KVM_MEM_GUEST_MEMFD, 0x200000, PS, 0, g, 16 * PS)
    show("region_modify_gmem", region, vm, 0, KVM_MEM_GUEST_MEMFD, 0, 4 * PS, 0, g, 0)
    show("region_delete", region, vm, 0, 0, 0, 0)
    vm2 = ioctl_int(kvm, KVM_CREATE_VM, 0)
    show("region_other_vms_gmem", region, vm2, 0, KVM_MEM_GUEST_MEMFD, 0, PS, 0, g, 0)
    # a forked child cannot use the VM
    pid = os.fork()
    if pid == 0:
        try:
            ioctl_int(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD)
            os._exit(0)
        except OSError as e:
            os._exit(e.errno)
    print("child_vm_ioctl", errno.errorcode.get(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]),
                                                 "ok"))
    # the VM fd closed: the guest_memfd lives on, the VM with it
    os.close(vm)
    print("gmem_after_vm_close", m[0:5].decode())
    print("views", " ".join(sorted(os.listdir(sys.argv[1] + "/.state/gmem"))))
    m.close()
    os.close(g)
    os.close(vm2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
