"""The gmemfs filesystem: the FUSE adapter driven by gmemfs.fuse_ll.

It keeps no emulation logic and knows no kind of node. For each request it
finds the node (the inode table) or the open file (the fh table) of the
mount (gmemfs.nodes.base.Mount) and calls that node kind's operation
(gmemfs/nodes/); the namespace requests (lookup, readdir, create, unlink) go
to the directory's operations the same way. Where a kind does not have an
operation, the adapter answers what the kernel's VFS answers for a file
without it (MISSING below).

Layout (user ABI, keep it exactly; the kinds are registered in
gmemfs/nodes/__init__.py):

    MNT/iommu            every open() is a new, independent iommufd context
    MNT/gmem/            guest_memfd files: open(O_CREAT) + KVM_CREATE_GUEST_MEMFD
    MNT/kvm              KVM_CHECK_EXTENSION for what gmemfs emulates
    MNT/vfio/devices/    emulated VFIO PCI devices (QEMU's edu), --vfio-devices N
    MNT/.state/          read-only views (text; one value or JSON per file);
                         events (JSON lines, poll()able), counters, iommufd, config
"""
from __future__ import annotations

import errno
import select

import ioctl_abi as abi
from gmemfs import fuse_ll as F
from gmemfs import nodes
from gmemfs.nodes.base import OpenFile

_EXEC_CALL = abi.GMEMFS_EXEC_CALL
_EXEC_MMAP = abi.GMEMFS_EXEC_MMAP

# What the kernel answers for a file whose file_operations lack an operation,
# and so what gmemfs answers for a node kind without it (Linux sources):
#
#   read       EINVAL   fs/open.c do_dentry_open sets FMODE_CAN_READ only with
#                       ->read or ->read_iter; fs/read_write.c: without it -EINVAL
#   write      EINVAL   the same with FMODE_CAN_WRITE, ->write / ->write_iter
#   ioctl      ENOTTY   fs/ioctl.c vfs_ioctl: no ->unlocked_ioctl -> -ENOTTY
#   fallocate  EOPNOTSUPP  fs/open.c vfs_fallocate: no ->fallocate -> -EOPNOTSUPP
#   fsync      EINVAL   fs/sync.c vfs_fsync_range: no ->fsync -> -EINVAL
#   poll       DEFAULT_POLLMASK  include/linux/poll.h: no ->poll -> always
#                       ready, POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM
#   open, release       optional: nothing to set up or tear down
MISSING = {
    "read": errno.EINVAL,
    "write": errno.EINVAL,
    "ioctl": errno.ENOTTY,
    "fallocate": errno.EOPNOTSUPP,
    "fsync": errno.EINVAL,
}
DEFAULT_POLLMASK = select.POLLIN | select.POLLOUT | select.POLLRDNORM | select.POLLWRNORM


def _missing(op: str):
    return OSError(MISSING[op], f"this node has no {op} operation")


class GmemFS:
    """The operations object driven by gmemfs.fuse_ll."""

    def __init__(self, options=None):
        self.mount = nodes.build(options)
        self.options = self.mount.options
        self._files = self.mount.files
        self._events = self.mount.events
        self._stats = self.mount.stats

    @property
    def session(self):
        return self.mount.session

    @session.setter
    def session(self, session):
        self.mount.session = session

    def _gate(self, node) -> None:
        if node.needs_host:
            self.mount.check_host()

    # ------------------------------------------------------- lifecycle --

    def init(self):
        ready = self.options.get("on_ready")
        if ready:
            ready()

    def destroy(self):
        for fh in list(self._files):
            self.mount.close_file(fh)

    # ---------------------------------------------------- namespace ops --

    def lookup(self, req, parent: int, name: str):
        fn = self.mount.node(parent).lookup
        if fn is None:
            raise OSError(errno.ENOTDIR, "not a directory")
        node = fn(name)
        if node is None:
            raise OSError(errno.ENOENT, f"{name}: no such entry")
        node.nlookup += 1
        F.reply_entry(req, node.attr(), node.attr_timeout)

    def forget(self, ino: int, nlookup: int):
        node = self.mount.inodes.get(ino)
        if node is not None:
            node.nlookup -= nlookup
            self.mount.drop_if_unused(node)

    def getattr(self, req, ino: int, fh):
        node = self.mount.node(ino)
        F.reply_attr(req, node.attr(), node.attr_timeout)

    def setattr(self, req, ino: int, to_set: int, mode: int, size: int, fh):
        fn = self.mount.node(ino).setattr
        if fn is None:
            raise OSError(errno.EPERM, "gmemfs nodes have fixed attributes")
        fn(req, to_set, mode, size)

    def _create(self, req, parent: int, name: str, mode: int):
        self.mount.check_host()
        fn = self.mount.node(parent).create
        if fn is None:
            raise OSError(errno.EPERM, "files can only be created in MNT/gmem/")
        _, uid, gid = F.req_ctx(req)
        node = fn(name, mode, uid, gid)
        node.nlookup += 1
        return node

    def mknod(self, req, parent: int, name: str, mode: int):
        node = self._create(req, parent, name, mode)
        F.reply_entry(req, node.attr(), node.attr_timeout)

    def create(self, req, parent: int, name: str, mode: int, fi):
        node = self._create(req, parent, name, mode)
        of = self._open(node, fi.flags)
        F.reply_create(req, node.attr(), node.attr_timeout, fi, of.fh,
                       direct_io=of.direct_io, nonseekable=of.nonseekable,
                       keep_cache=of.keep_cache)

    def unlink(self, req, parent: int, name: str):
        fn = self.mount.node(parent).unlink
        if fn is None:
            raise OSError(errno.EPERM, "only MNT/gmem/ entries can be removed")
        node = fn(name)
        F.reply_err(req, 0)
        self.mount.drop_if_unused(node)

    def rename(self, req, parent, name, newparent, newname, flags):
        raise OSError(errno.EPERM, "gmemfs entries cannot be renamed")

    def opendir(self, req, ino: int, fi):
        if self.mount.node(ino).lookup is None:
            raise OSError(errno.ENOTDIR, "not a directory")
        F.reply_open(req, fi, 0)

    def readdir(self, req, ino: int, size: int, off: int, plus: bool):
        node = self.mount.node(ino)
        if node.entries is None:
            raise OSError(errno.ENOTDIR, "not a directory")
        children = node.entries()
        entries = [(".", node.attr()), ("..", node.attr())]
        entries += [(name, child.attr()) for name, child in children]
        sent_to = F.reply_readdir(req, entries, size, off, plus)
        if plus:
            # the kernel took a lookup reference on every entry it got but . and ..
            for _, child in children[max(off - 2, 0):max(sent_to - 2, 0)]:
                child.nlookup += 1

    def statfs(self, req, ino: int):
        F.reply_statfs(req, blocks=0, bfree=0, files=len(self.mount.inodes), ffree=1 << 20)

    # ---------------------------------------------------------- file ops --

    def _open(self, node, flags: int) -> OpenFile:
        of = OpenFile(node, flags)
        if node.open is not None:
            node.open(of)
        self.mount.new_fh(of)
        return of

    def open(self, req, ino: int, fi):
        node = self.mount.node(ino)
        self._gate(node)
        of = self._open(node, fi.flags)
        F.reply_open(req, fi, of.fh, direct_io=of.direct_io, nonseekable=of.nonseekable,
                     keep_cache=of.keep_cache)

    def _file_op(self, fh: int, op: str, gate: bool = True):
        """The open file ``fh`` and its node's operation ``op``; the VFS's
        errno (MISSING) when the node's kind has none."""
        of = self.mount.file(fh)
        if gate:
            self._gate(of.node)
        fn = getattr(of.node, op)
        if fn is None:
            raise _missing(op)
        return of, fn

    def read(self, req, ino: int, fh: int, size: int, off: int, direct: bool):
        of, fn = self._file_op(fh, "read")
        fn(req, of, size, off, direct)

    def write(self, req, ino: int, fh: int, buf, off: int, writepage: bool):
        of, fn = self._file_op(fh, "write")
        fn(req, of, buf, off, writepage)

    def flush(self, req, ino: int, fh: int):
        F.reply_err(req, 0)

    def fsync(self, req, ino: int, fh: int, datasync: int):
        of, fn = self._file_op(fh, "fsync", gate=False)
        fn(req, of, datasync)

    def release(self, ino: int, fh: int):
        self.mount.close_file(fh)

    def poll(self, req, ino: int, fh: int, ph):
        of = self._files.get(fh)
        fn = of.node.poll if of is not None else None
        if fn is not None:
            fn(req, of, ph)
            return
        if ph != F.ffi.NULL:
            F.lib.fuse_pollhandle_destroy(ph)
        F.reply_poll(req, DEFAULT_POLLMASK)

    def fallocate(self, req, ino: int, fh: int, mode: int, offset: int, length: int):
        of, fn = self._file_op(fh, "fallocate")
        fn(req, of, mode, offset, length)

    def ioctl(self, req, ino: int, fh: int, cmd: int, arg: int, flags: int, in_data: bytes,
              out_size: int, prefetch: bytes | None = None, creds=None):
        of = self._files.get(fh)
        if of is None:
            raise OSError(errno.EBADF, "no such open file")
        node = of.node
        if node.needs_host and self._events.host_dead:
            self.mount.check_host()
        self._stats["ioctls"] += 1
        if cmd == _EXEC_CALL and self.mount.exec_call is not None:    # gmemfs exec
            self.mount.exec_call(self.mount, req, of, in_data, creds)
            return
        if cmd == _EXEC_MMAP and self.mount.exec_mmap is not None:
            self.mount.exec_mmap(self.mount, req, of, in_data, creds)
            return
        fn = node.ioctl
        if fn is None:
            raise _missing("ioctl")
        fn(req, of, cmd, arg, in_data, out_size, prefetch, creds)

    def retrieve_reply(self, cookie: int, ino: int, offset: int, data: bytes):
        pass
