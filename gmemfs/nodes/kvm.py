"""MNT/kvm: /dev/kvm for what gmemfs emulates (node kind KvmNode).

Like /dev/kvm it answers KVM_GET_API_VERSION, KVM_CHECK_EXTENSION
(guest_memfd.md §1.2, v8 §6.2: unknown capabilities are 0; gmemfs/kvm.py
says which) and KVM_CREATE_VM, which returns a new VM fd (nodes/vm.py): under
gmemfs exec only, else EOPNOTSUPP. Any other ioctl is EINVAL, as /dev/kvm
answers VM ioctls.
"""
from __future__ import annotations

import errno
import stat

import ioctl_abi as abi
from gmemfs import fuse_ll as F
from gmemfs.kvm import KVM_API_VERSION, Vm, check_extension

from .base import Node
from .exec import PASS

KVM_INO = 6


class KvmNode(Node):
    """MNT/kvm: KVM_CHECK_EXTENSION for what gmemfs emulates."""

    def __init__(self, mount):
        super().__init__(mount, "kvm", stat.S_IFREG | 0o666, ino=KVM_INO)

    def open(self, of):
        of.direct_io = of.nonseekable = True

    def ioctl(self, req, of, cmd: int, arg: int, in_data: bytes, out_size: int,
              prefetch=None, creds=None):
        tid = creds[0] if creds else F.req_ctx(req)[0]
        if cmd == abi.KVM_CHECK_EXTENSION:
            val = check_extension(arg)       # unknown caps are 0, like the kernel
            self.mount.log_ioctl(cmd, tid, 0, f"cap {arg} = {val}")
            F.reply_ioctl(req, val)
        elif cmd == 0xAE00:   # KVM_GET_API_VERSION
            F.reply_ioctl(req, KVM_API_VERSION)
        elif cmd == abi.KVM_CREATE_VM:
            self.mount.log_ioctl(cmd, tid, errno.EOPNOTSUPP, "needs gmemfs exec")
            raise OSError(errno.EOPNOTSUPP, "KVM_CREATE_VM returns a new fd, which a FUSE "
                          "server cannot install: run the program under `gmemfs exec`")
        else:
            # /dev/kvm answers unknown ioctls (and VM ioctls) with EINVAL
            self.mount.log_ioctl(cmd, tid, errno.EINVAL, "not emulated on MNT/kvm")
            raise OSError(errno.EINVAL, "not emulated on MNT/kvm")


    def exec_ioctl(self, of, cmd: int, arg: int, caller, files):
        if cmd != abi.KVM_CREATE_VM:
            return PASS
        vm = Vm(arg, caller.pid)                  # EINVAL: a VM type gmemfs does not offer
        vm.name = f"vm{caller.pid}-{id(vm) & 0xffff:04x}"
        files.new(vm, None)
        return 0


def install(mount) -> None:
    mount.add(KvmNode(mount), mount.root)
