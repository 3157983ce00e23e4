"""End-to-end: what a node kind without an operation answers, on a real mount.

The FUSE adapter (gmemfs/fs.py) answers for an operation a node kind does not
have what the kernel's VFS answers for a file without it. MNT/iommu and
MNT/kvm are the cases: /dev/iommu (iommufd_fops) and /dev/kvm
(kvm_chardev_ops) have no ->read, ->write, ->fsync, ->fallocate, ->poll
either, so gmemfs now gives the real devices' answers. Each test names the
kernel source of the rule.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select

import pytest

import ioctl_abi as abi
from fakes import errno_of

pytestmark = pytest.mark.e2e

libc = ctypes.CDLL(None, use_errno=True)

DEFAULT_POLLMASK = select.POLLIN | select.POLLOUT | select.POLLRDNORM | select.POLLWRNORM


@pytest.mark.parametrize("node", ["iommu", "kvm"])
def test_no_read_write_is_EINVAL_like_a_file_without_them(mount, node):
    """fs/open.c do_dentry_open sets FMODE_CAN_READ / FMODE_CAN_WRITE only for
    a file with ->read(_iter) / ->write(_iter); fs/read_write.c answers EINVAL
    without them (as /dev/iommu and /dev/kvm do)."""
    fd = os.open(mount / node, os.O_RDWR)
    try:
        assert errno_of(os.read, fd, 16) == errno.EINVAL
        assert errno_of(os.write, fd, b"x" * 16) == errno.EINVAL
    finally:
        os.close(fd)


@pytest.mark.parametrize("node", ["iommu", "kvm"])
def test_no_fsync_is_EINVAL(mount, node):
    """fs/sync.c vfs_fsync_range: a file without ->fsync gets EINVAL (fsync and
    fdatasync)."""
    fd = os.open(mount / node, os.O_RDWR)
    try:
        assert errno_of(os.fsync, fd) == errno.EINVAL
        assert errno_of(os.fdatasync, fd) == errno.EINVAL
    finally:
        os.close(fd)


def test_state_view_fsync_is_a_no_op(mount):
    """A .state view has an fsync that does nothing (like sysfs's noop_fsync):
    there is nothing to write back."""
    fd = os.open(mount / ".state" / "counters", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_no_fallocate_is_EOPNOTSUPP(mount):
    """fs/open.c vfs_fallocate: a file without ->fallocate gets EOPNOTSUPP."""
    fd = os.open(mount / "iommu", os.O_RDWR)
    try:
        assert libc.fallocate(fd, 0, ctypes.c_long(0), ctypes.c_long(4096)) == -1
        assert ctypes.get_errno() == errno.EOPNOTSUPP
    finally:
        os.close(fd)


def test_no_ioctl_is_ENOTTY(mount):
    """fs/ioctl.c vfs_ioctl: a file without ->unlocked_ioctl gets ENOTTY (a
    .state view has none; an _IO command reaches the server unchanged)."""
    fd = os.open(mount / ".state" / "counters", os.O_RDONLY)
    try:
        assert errno_of(fcntl.ioctl, fd, abi.IOMMU_DESTROY, 0) == errno.ENOTTY
    finally:
        os.close(fd)


@pytest.mark.parametrize("node", ["iommu", "kvm"])
def test_no_poll_is_DEFAULT_POLLMASK(mount, node):
    """include/linux/poll.h: a file without ->poll is always ready with
    DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM, so a
    poll() for POLLRDNORM | POLLWRNORM returns them at once."""
    fd = os.open(mount / node, os.O_RDWR)
    try:
        p = select.poll()
        p.register(fd, select.POLLRDNORM | select.POLLWRNORM)
        assert p.poll(0) == [(fd, select.POLLRDNORM | select.POLLWRNORM)]
        p.modify(fd, DEFAULT_POLLMASK | select.POLLPRI)
        assert p.poll(0) == [(fd, DEFAULT_POLLMASK)]
    finally:
        os.close(fd)
