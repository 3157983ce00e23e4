"""KVM VM files and the guest_memfds they make (node kinds VmNode,
VmGmemNode; the model: gmemfs/kvm.py). Both come from gmemfs exec
(nodes/exec.py): KVM_CREATE_VM on MNT/kvm returns a VmNode fd,
KVM_CREATE_GUEST_MEMFD on it a VmGmemNode fd.

VmNode: the VM fd (O_RDWR | O_CLOEXEC, like the kernel's ``kvm-vm`` file).
Its ioctls are only what gmemfs emulates: KVM_CHECK_EXTENSION,
KVM_SET_USER_MEMORY_REGION2 (memslots, guest_memfd bindings validated as
the kernel does) and KVM_CREATE_GUEST_MEMFD (through gmemfs exec; without it
EOPNOTSUPP); anything else is ENOTTY. Every VM ioctl from another process
than the VM's creator is EIO.

VmGmemNode: a guest_memfd owned by a VM, anonymous like the kernel's (no
name in MNT/gmem/, no second open: ENXIO; O_RDWR without FD_CLOEXEC). It is
a gmem file in every other way (mmap, fallocate, KVM_SET_MEMORY_ATTRIBUTES2,
MAP_FILE by iommufd) and is shown as MNT/.state/gmem/kvm-gmem-INO. When its
last reference goes its bindings are cut.

MNT/.state/kvm: JSON, the VMs alive and their memslots.
"""
from __future__ import annotations

import errno
import json

import ioctl_abi as abi
from gmemfs import fuse_ll as F
from gmemfs.caller import Caller
from gmemfs.gmem import GuestMemfd
from gmemfs.kvm import Vm

from .exec import PASS, ObjectNode, object_kind
from .gmem import GmemNode
from .state import STATE_DIR_INO, StateNode


def _gmem_of(caller, fd: int):
    """The GuestMemfd behind a caller fd (EBADF), None if it is none."""
    ref = caller.get_file(fd)
    try:
        return ref.gmem if ref.kind == "gmem" else None
    finally:
        ref.close()


@object_kind(Vm, returns_fd=True)
class VmNode(ObjectNode):
    """The file of KVM_CREATE_VM."""

    def _opened(self, of):
        self.mount.vms.append(self.obj)
        self.obj.fd_open = True

    def _closed(self, of):
        vm = self.obj
        vm.fd_open = False
        _forget_vm(self.mount, vm)

    def ioctl(self, req, of, cmd: int, arg: int, in_data: bytes, out_size: int,
              prefetch=None, creds=None):
        m = self.mount
        caller = Caller(*creds, m.resolve_own) if creds else m.caller(req)
        vm = self.obj
        try:
            vm.check_mm(caller.pid)
            if cmd == abi.KVM_CHECK_EXTENSION:
                F.reply_ioctl(req, vm.check_extension(arg))
            elif cmd == abi.KVM_SET_USER_MEMORY_REGION2:
                r = abi.from_bytes("kvm_userspace_memory_region2", in_data)
                vm.set_memory_region(r.slot, r.flags, r.guest_phys_addr, r.memory_size,
                                     r.userspace_addr, r.guest_memfd_offset, r.guest_memfd,
                                     lambda fd: _gmem_of(caller, fd))
                F.reply_ioctl(req, 0)
            elif cmd == abi.KVM_CREATE_GUEST_MEMFD:
                raise OSError(errno.EOPNOTSUPP, "KVM_CREATE_GUEST_MEMFD returns a new fd, which "
                              "a FUSE server cannot install: run the program under `gmemfs exec`")
            else:
                raise OSError(errno.ENOTTY, "not a VM ioctl gmemfs emulates")
        except OSError as e:
            m.log_ioctl(cmd, caller.tid, e.errno, e.strerror)
            e.gmemfs_logged = True
            raise
        m.log_ioctl(cmd, caller.tid, 0, None)

    def exec_ioctl(self, of, cmd: int, arg: int, caller, files):
        if cmd != abi.KVM_CREATE_GUEST_MEMFD:
            return PASS
        vm = self.obj
        vm.check_mm(caller.pid)                                   # EIO
        a = abi.from_bytes("kvm_create_guest_memfd",
                           caller.read(arg, abi.sizeof("kvm_create_guest_memfd")))   # EFAULT
        size = a.size - (1 << 64) if a.size >= 1 << 63 else a.size
        files.new(vm.create_guest_memfd(size, a.flags), None)
        return 0


@object_kind(GuestMemfd, returns_fd=True, cloexec=False)
class VmGmemNode(GmemNode):
    """A guest_memfd made by KVM_CREATE_GUEST_MEMFD on a VM fd."""

    def __init__(self, mount, obj, uid, gid, name=""):
        super().__init__(mount, name, uid, gid)
        self.gmem = self.obj = obj
        self.opened = False
        self.linked = False
        self.view = f"kvm-gmem-{self.ino}"
        obj.name = self.view
        mount.gmems[self.view] = self

    def open(self, of):
        if self.opened:
            raise OSError(errno.ENXIO, "an anonymous guest_memfd cannot be reopened")
        self.opened = True
        self.mount.exec_dir._claim(self)
        super().open(of)

    def release(self, of):
        self.nlookup = 0                  # nothing names it: it goes when unused

    def evict(self) -> None:
        if self.mount.gmems.get(self.view) is self:
            del self.mount.gmems[self.view]
        g = self.gmem
        vm = getattr(g, "vm", None)
        super().evict()
        if vm is not None:
            vm.gmem_closed(g)
            _forget_vm(self.mount, vm)


def _forget_vm(mount, vm) -> None:
    """A VM lives while its fd or a guest_memfd of it is open."""
    if not getattr(vm, "fd_open", False) and not vm.gmems and vm in mount.vms:
        mount.vms.remove(vm)


def install(mount) -> None:
    mount.vms = []
    state = mount.inodes[STATE_DIR_INO]
    mount.add(StateNode(mount, "kvm", lambda: (json.dumps(
        [vm.describe() for vm in mount.vms], indent=1, sort_keys=True) + "\n").encode()), state)
