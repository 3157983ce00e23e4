"""MNT/iommu: /dev/iommu (node kind IommuNode).

Every open is a new, independent iommufd context (iommufd_emu.Context, the
open's private state), torn down at the last close. Its main file operation
is ioctl: the request goes to the model's dispatch table
(iommufd_emu/dispatch.py), which reads and writes the caller's struct itself.
mmap() of a driver's region (the selftest vIOMMU's pages) is checked under
gmemfs exec (``exec_mmap``, iommufd_emu/mmap.py); the kernel then maps this
file and its page-cache fills (``read``) and write-backs (``write``) are the
region's bytes. read(2) and write(2) are EINVAL, as on /dev/iommu. The file's
size is `MMAP_SPACE` (a mapping's fault past the size would be SIGBUS).
An emulated device DMA (IOMMU_TEST_CMD GMEMFS_TEST_OP_DMA) first makes the
guest_memfd model exact: the pages the kernel caches are written back and
dropped before the access and dropped again after it.
"""
from __future__ import annotations

import errno
import os
import stat

import ioctl_abi as abi
from gmemfs import fuse_ll as F
from gmemfs.caller import Caller
from iommufd_emu import dispatch, mmap
from iommufd_emu.context import Context

from .base import Attr, Node
from .exec import PASS

IOMMU_INO = 2
_TEST_CMD = abi.IOMMU_TEST_CMD
GMEMFS_IOCTL_SELF_FH = 0x47F0     # asked by this server only (nodes/vfio.py)
_FD_CMDS = (abi.IOMMU_FAULT_QUEUE_ALLOC, abi.IOMMU_VEVENTQ_ALLOC)
_FD_TEST_OPS = (abi.IOMMU_TEST_OP_CREATE_ACCESS, abi.IOMMU_TEST_OP_DMABUF_GET)
MMAP_SPACE = 1 << 40      # the file's size: room for the regions' offsets


class IommuNode(Node):
    """MNT/iommu: every open is a new iommufd context."""

    def __init__(self, mount):
        super().__init__(mount, "iommu", stat.S_IFREG | 0o666, ino=IOMMU_INO)
        self._ctx_opts = {**mount.cc.context_options(), "events": mount.events}
        self._dispatch = dispatch.ioctl
        self._resolve_own = mount.resolve_own

    def attr(self) -> Attr:
        a = super().attr()
        a.size = MMAP_SPACE
        return a

    def open(self, of):
        of.private = ctx = Context(self._ctx_opts)
        of.direct_io = of.nonseekable = True
        ctx.mapping_alive = self._mapping_alive
        self.mount.contexts[of] = ctx
        self.mount.stats["contexts_opened"] += 1

    def release(self, of):
        ctx = of.private
        if ctx.holds:
            # a bound VFIO device holds the context (iommufd_ctx_get): it is
            # torn down when the last one unbinds
            ctx.on_last_hold = lambda: self.release(of)
            return
        self.mount.contexts.pop(of, None)
        try:
            ctx.close()
        finally:
            self.mount.stats["contexts_closed"] += 1

    def ioctl(self, req, of, cmd: int, arg: int, in_data: bytes, out_size: int,
              prefetch=None, creds=None):
        m = self.mount
        caller = Caller(*creds, self._resolve_own) if creds else m.caller(req)
        if cmd == GMEMFS_IOCTL_SELF_FH and caller.pid == os.getpid():
            F.reply_ioctl(req, of.fh)        # which open this is (VFIO BIND, nodes/vfio.py)
            return
        if cmd == _TEST_CMD and m.cached and _is_dma_op(caller, arg, prefetch):
            m.spawn(self._coherent_dma, req, of, cmd, arg, caller, prefetch)
            return
        F.reply_ioctl(req, self._run(of, cmd, arg, caller, prefetch))

    def exec_ioctl(self, of, cmd: int, arg: int, caller, files):
        """The fd-returning commands under gmemfs exec (nodes/exec.py):
        FAULT_QUEUE_ALLOC, VEVENTQ_ALLOC, and IOMMU_TEST_CMD with an op that
        returns a new fd; anything else runs the normal way (PASS)."""
        if cmd == _TEST_CMD:
            try:
                op = int.from_bytes(caller.read(arg + 4, 4), "little")
            except OSError:
                return PASS
            if op not in _FD_TEST_OPS:
                return PASS
        elif cmd not in _FD_CMDS:
            return PASS
        return self._run(of, cmd, arg, caller, None, files)

    # ------------------------------------------------------------- mmap
    def exec_mmap(self, of, offset: int, length: int, prot: int, flags: int, caller, pid):
        """The kernel's checks of an mmap() of the iommufd fd (mmap.check),
        then the mapping is recorded: it holds the region's owner."""
        ctx = of.private
        writable = of.flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
        owner = mmap.check(ctx, offset, length, prot, flags, writable)
        mmap.add(ctx, owner, offset, length, pid)

    def read(self, req, of, size: int, off: int, direct: bool):
        if direct:
            raise OSError(errno.EINVAL, "/dev/iommu has no read()")
        data = mmap.read_pages(of.private, off, size)
        if data is None:
            # a page of no checked mapping (mmap without gmemfs exec): SIGBUS.
            # Never a short read: FUSE would shrink the file's size.
            raise OSError(errno.EIO, f"offset {off:#x} is in no mapped region")
        F.reply_buf(req, data)

    def write(self, req, of, buf, off: int, writepage: bool):
        if not writepage:
            raise OSError(errno.EINVAL, "/dev/iommu has no write()")
        mmap.write_pages(of.private, off, bytes(buf))
        F.reply_write(req, len(buf))

    def _mapping_alive(self, m) -> bool:
        """Does process ``m.pid`` still map part of the region (its
        /proc/PID/maps has a VMA of this file overlapping it)?"""
        dev = self.mount.session.dev if self.mount.session is not None else None
        try:
            with open(f"/proc/{m.pid}/maps") as f:
                for line in f:
                    parts = line.split(None, 5)
                    if len(parts) < 5 or int(parts[4]) != IOMMU_INO:
                        continue
                    if dev is not None and \
                            tuple(int(x, 16) for x in parts[3].split(":")) != tuple(dev):
                        continue
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    off = int(parts[2], 16)
                    if off < m.offset + m.length and off + (hi - lo) > m.offset:
                        return True
        except OSError:
            return False           # the process is gone, and its mappings
        return False

    def _run(self, of, cmd: int, arg: int, caller, prefetch, files=None) -> int:
        """One iommufd ioctl through the model's dispatch table, counted and
        logged; returns the ioctl's value or raises its OSError."""
        m = self.mount
        try:
            ret = self._dispatch(of.private, cmd, arg, caller, prefetch, files)
        except OSError as e:
            m.ioctl_failed(cmd, caller.tid, e)
            raise
        if m.debug:
            m.log_ioctl(cmd, caller.tid, 0, None)
        return ret or 0

    async def _coherent_dma(self, req, of, cmd: int, arg: int, caller, prefetch):
        """An emulated device DMA on an exact guest_memfd model (Mount.coherent)."""
        try:
            ret = await self.mount.coherent(lambda: self._run(of, cmd, arg, caller, prefetch))
            F.reply_ioctl(req, ret)
        except Exception as e:
            F._fail(req, e, "ioctl DMA")


def _is_dma_op(caller, arg: int, prefetch: bytes | None) -> bool:
    if prefetch is not None and len(prefetch) >= 8:
        op = prefetch[4:8]
    else:
        try:
            op = caller.read(arg + 4, 4)
        except OSError:
            return False     # dispatch reports the fault
    return int.from_bytes(op, "little") == abi.GMEMFS_TEST_OP_DMA


def install(mount) -> None:
    mount.add(IommuNode(mount), mount.root)
