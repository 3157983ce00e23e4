"""The node kinds of a gmemfs mount, one module each, and where they are
registered.

Each kind is a `base.Node` subclass whose methods are its operations (the
kernel's file_operations / inode_operations; see base.py), and each module
has an ``install(mount)`` that adds its nodes to the tree. The FUSE adapter
(gmemfs/fs.py) knows no kind: it finds the node and calls its operation.

A new kind of node: one module here, and one line in KINDS.
"""
from __future__ import annotations

from . import access, eventq, exec, gmem, iommu, kvm, state, vfio, vm
from .base import ROOT_INO, Dir, Mount

# The kinds of MNT, installed in this order (their fixed inode numbers come first).
KINDS = (
    iommu,      # MNT/iommu           /dev/iommu: a new iommufd context per open
    gmem,       # MNT/gmem/NAME       guest_memfd files
    kvm,        # MNT/kvm             /dev/kvm for what gmemfs emulates
    vfio,       # MNT/vfio/devices/   emulated VFIO PCI devices (QEMU's edu), --vfio-devices N
    state,      # MNT/.state/         read-only views, the event log
    exec,       # MNT/.exec/          the files of fd-returning ioctls (gmemfs exec)
    eventq,     #   the fault queue and vEVENTQ files (FAULT_QUEUE_ALLOC, VEVENTQ_ALLOC)
    access,     #   the selftest access file (IOMMU_TEST_OP_CREATE_ACCESS)
    vm,         #   VM files (KVM_CREATE_VM), their guest_memfds; MNT/.state/kvm
)


def build(options=None) -> Mount:
    """A mount with its tree: the root and every kind's nodes."""
    mount = Mount(options)
    mount.root = mount.add(Dir(mount, "", ino=ROOT_INO))
    for kind in KINDS:
        kind.install(mount)
    return mount
