"""MNT/kvm: capability discovery for what gmemfs emulates (node kind KvmNode).

Like /dev/kvm it answers KVM_GET_API_VERSION and KVM_CHECK_EXTENSION
(guest_memfd.md §1.2, v8 §6.2: unknown capabilities are 0) and EINVAL to
any other ioctl, as /dev/kvm does to VM ioctls.
"""
from __future__ import annotations

import errno
import stat

import ioctl_abi as abi
from gmemfs import fuse_ll as F

from .base import Node

KVM_INO = 6

# KVM_CHECK_EXTENSION answers of MNT/kvm (guest_memfd.md §1.2, v8 §6.2)
KVM_API_VERSION = 12
KVM_CAPS = {
    abi.KVM_CAP_GUEST_MEMFD: 1,
    abi.KVM_CAP_GUEST_MEMFD_FLAGS: abi.GUEST_MEMFD_FLAG_MMAP | abi.GUEST_MEMFD_FLAG_INIT_SHARED,
    abi.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES: abi.KVM_MEMORY_ATTRIBUTE_PRIVATE,
}


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
            val = KVM_CAPS.get(arg, 0)       # unknown caps are 0, like the kernel
            self.mount.log_ioctl(cmd, tid, 0, f"cap {arg} = {val}")
            F.reply_ioctl(req, val)
        elif cmd == 0xAE00:   # KVM_GET_API_VERSION
            F.reply_ioctl(req, KVM_API_VERSION)
        else:
            # /dev/kvm answers unknown ioctls (and VM ioctls) with EINVAL
            self.mount.log_ioctl(cmd, tid, errno.EINVAL, "not emulated on MNT/kvm")
            raise OSError(errno.EINVAL, "not emulated on MNT/kvm")


def install(mount) -> None:
    mount.add(KvmNode(mount), mount.root)
