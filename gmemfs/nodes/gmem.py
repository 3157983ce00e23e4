"""MNT/gmem/: guest_memfd files (node kinds GmemDir and GmemNode).

A file made with ``open(MNT/gmem/NAME, O_CREAT)`` becomes a guest_memfd with
KVM_CREATE_GUEST_MEMFD on it (the model: gmemfs/gmem.py). Its file
operations: read (a page-cache fill for an mmap fault; read(2) is EINVAL),
write (write-back of a shared mapping; write(2) is EINVAL), ioctl
(KVM_CREATE_GUEST_MEMFD once, KVM_SET_MEMORY_ATTRIBUTES2), fallocate. Like
kvm_gmem_fops it has no fsync and no poll: the adapter's answers for a file
without them are a guest_memfd's own (EINVAL; always ready, guest_memfd.md
§4.2).

mmap: a gmem file is opened with direct I/O when the kernel lets a
direct-I/O file be mapped shared (FUSE_DIRECT_IO_ALLOW_MMAP), so read(2) and
write(2) reach us while faults come as page-cache reads; the kernel's cached
pages are written back and dropped where the model must be exact (a
conversion to private, a device DMA: Mount.invalidate).
"""
from __future__ import annotations

import errno
import logging
import stat
import time

import trio

import ioctl_abi as abi
from gmemfs import fuse_ll as F
from gmemfs.caller import FileRef
from gmemfs.gmem import GuestMemfd

from .base import Dir, Node

log = logging.getLogger("gmemfs.fs")

GMEM_DIR_INO = 3


class GmemDir(Dir):
    """MNT/gmem/: the only directory where files are made and removed."""

    def __init__(self, mount):
        super().__init__(mount, "gmem", stat.S_IFDIR | 0o777, ino=GMEM_DIR_INO)

    def create(self, name: str, mode: int, uid: int, gid: int) -> "GmemNode":
        if not stat.S_ISREG(mode or stat.S_IFREG):
            raise OSError(errno.EPERM, "only regular files in MNT/gmem/")
        if name in self.children or name in self.mount.gmems:
            # (a guest_memfd of a VM has a name in MNT/.state/gmem/ only)
            raise OSError(errno.EEXIST, f"{name} exists")
        if len(name.encode()) > 255 or "/" in name:
            raise OSError(errno.ENAMETOOLONG, "name too long")
        node = GmemNode(self.mount, name, uid, gid)
        self.mount.add(node, self)
        self.mount.gmems[name] = node
        return node

    def unlink(self, name: str) -> "GmemNode":
        node = self.children.pop(name, None)
        if node is None:
            raise OSError(errno.ENOENT, f"{name}: no such entry")
        if self.mount.gmems.get(name) is node:
            del self.mount.gmems[name]
        node.linked = False
        return node


class _GmemRef(FileRef):
    """A caller's guest_memfd fd as the models see it. Like the kernel's file
    reference held by an IOMMU_IOAS_MAP_FILE, it keeps the guest_memfd alive
    (unlinked and closed by every process) until the model closes it."""

    def __init__(self, node: "GmemNode", readable: bool, writable: bool):
        super().__init__("gmem", None, readable, writable, gmem=node.gmem, node=node)
        self._mount = node.mount
        node.nopen += 1

    def close(self) -> None:
        mount, self._mount = self._mount, None
        if mount is not None:
            self.node.nopen -= 1
            mount.drop_if_unused(self.node)


class GmemNode(Node):
    """A file of MNT/gmem/. It becomes a guest_memfd with KVM_CREATE_GUEST_MEMFD."""

    attr_timeout = 0.0

    def __init__(self, mount, name, uid, gid):
        super().__init__(mount, name, stat.S_IFREG | 0o600, uid=uid, gid=gid)
        self.gmem = None           # gmemfs.gmem.GuestMemfd once created
        # a shared->private conversion is dropping the kernel's pages: faults
        # in this byte range are refused (SIGBUS) until it is done
        self.converting: tuple[int, int] | None = None
        # page-cache fills refused because the page is private: offset -> (count, t0)
        self.refused: dict[int, tuple[int, float]] = {}

    # ------------------------------------------------------ the inode --

    def attr(self):
        a = super().attr()
        a.nlink = 1 if self.linked else 0
        if self.gmem is not None:
            a.size = self.gmem.size
        return a

    def setattr(self, req, to_set, mode, size):
        # guest_memfd.md §4.2: ftruncate, fchmod, fchown, futimens -> EINVAL
        raise OSError(errno.EINVAL, "guest_memfd attributes cannot change")

    def evict(self) -> None:
        if self.gmem is not None:
            self.gmem.close()
            self.gmem = None

    def file_ref(self, readable, writable):
        if self.gmem is not None:
            return _GmemRef(self, readable, writable)
        return super().file_ref(readable, writable)

    # ---------------------------------------------------- file operations --

    def open(self, of):
        of.direct_io = self.mount.direct_io_mmap
        of.nonseekable = True

    def read(self, req, of, size: int, off: int, direct: bool):
        if direct or self.gmem is None:
            # guest_memfd.md §4.2: read/readv -> EINVAL
            raise OSError(errno.EINVAL, "guest_memfd does not support read()")
        g = self.gmem
        # a page-cache fill for an mmap fault or readahead
        end = min(off + size, g.size)
        if off >= end:
            F.reply_buf(req, b"")
            return
        conv = self.converting
        # without GUEST_MEMFD_FLAG_MMAP the kernel refuses mmap (ENODEV); FUSE
        # cannot refuse it, so refuse every fill instead: any touch is SIGBUS
        no_mmap = not g.flags & abi.GUEST_MEMFD_FLAG_MMAP
        private = no_mmap or not g.is_shared(off, end - off) or \
            (conv and off < conv[1] and end > conv[0])
        if private and not self._populate_loop(off):
            # touching a private page is SIGBUS: fail the fill (guest_memfd.md §6.3).
            # Never a short read: FUSE would shrink the cached file size.
            raise OSError(errno.EIO, "private page: no host access")
        self.mount.cached[self] = None
        if private:
            # MAP_POPULATE / mlock / MADV_POPULATE over a private page make the
            # kernel retry the fill forever (spec §8.1). Break the loop with a
            # zero page and drop it from the page cache right after, so the
            # next touch faults again and gets SIGBUS.
            F.reply_buf(req, bytes(end - off))
            self.mount.spawn(self._drop_cache, off, end - off)
            return
        F.reply_buf(req, g.read(off, end - off))

    # one touch of a private page costs a few refused fills (the fault is
    # retried once); a GUP populate loop makes thousands a second
    POPULATE_LOOP_REFUSALS = 512
    POPULATE_LOOP_WINDOW = 1.0

    def _populate_loop(self, off: int) -> bool:
        """True when fills of this private page keep coming back: a GUP
        populate loop, not a touch."""
        now = time.monotonic()
        count, t0 = self.refused.get(off, (0, now))
        if now - t0 > self.POPULATE_LOOP_WINDOW:
            count, t0 = 0, now
        count += 1
        if len(self.refused) > 4096:
            self.refused.clear()
        self.refused[off] = (count, t0)
        if count >= self.POPULATE_LOOP_REFUSALS:
            self.refused.pop(off, None)
            log.debug("populate loop on private page %#x of %s: served zeros, dropping it",
                      off, self.name)
            return True
        return False

    async def _drop_cache(self, off: int, length: int):
        await trio.sleep(0.05)
        await self.mount.invalidate(self, off, length)

    def write(self, req, of, buf, off: int, writepage: bool):
        if not writepage or self.gmem is None:
            # guest_memfd.md §4.2: write/writev -> EINVAL
            raise OSError(errno.EINVAL, "guest_memfd does not support write()")
        # write-back of pages dirtied through a shared mapping
        g = self.gmem
        data = bytes(buf)
        end = min(off + len(data), g.size)
        if end > off:
            for s, e in g.shared_runs(off, end - off):   # a page gone private is not written
                g.write(s, data[s - off:e - off])
        F.reply_write(req, len(data))

    def fallocate(self, req, of, mode: int, offset: int, length: int):
        if self.gmem is None:
            raise OSError(errno.ENODEV, "not a guest_memfd yet: issue KVM_CREATE_GUEST_MEMFD")
        self.mount.stats["fallocates"] += 1
        self.gmem.fallocate(mode, offset, length)
        self.mtime_ns = time.time_ns()
        F.reply_err(req, 0)

    # ------------------------------------------------------------ ioctl --

    def ioctl(self, req, of, cmd: int, arg: int, in_data: bytes, out_size: int,
              prefetch=None, creds=None):
        m = self.mount
        tid = F.req_ctx(req)[0]
        if cmd == abi.KVM_CREATE_GUEST_MEMFD and self.gmem is None:
            a = abi.from_bytes("struct kvm_create_guest_memfd", in_data)
            size = a.size - (1 << 64) if a.size >= 1 << 63 else a.size
            try:
                self.gmem = GuestMemfd.create(size, a.flags)
            except OSError as e:
                m.log_ioctl(cmd, tid, e.errno, e.strerror)
                e.gmemfs_logged = True
                raise
            self.gmem.name = self.name
            # the kernel still caches size 0 for this inode and faults do not
            # refresh it (spec §8.1 trap): storing the last byte makes it learn
            # the size. (A zero-length store does not: the kernel only grows
            # i_size for a store of > 0 bytes.) The page stays not-uptodate, so
            # a touch still comes here and private pages still SIGBUS.
            last = self.gmem.size - 1
            m.session.notify_store(self.ino, last, self.gmem.read(last, 1))
            # (that page is cached but not up to date: nothing to write back
            # or drop before a conversion, so the file does not count as cached)
            m.log_ioctl(cmd, tid, 0, None)
            F.reply_ioctl(req, 0)
            return
        if cmd == abi.KVM_SET_MEMORY_ATTRIBUTES2 and self.gmem is not None:
            self._set_attributes2(req, in_data, tid)
            return
        # guest_memfd.md §4.1: KVM_CREATE_GUEST_MEMFD on a gmem fd -> ENOTTY;
        # unknown ioctls -> ENOTTY
        m.log_ioctl(cmd, tid, errno.ENOTTY, "unknown ioctl on a guest_memfd")
        raise OSError(errno.ENOTTY, "unknown ioctl on a guest_memfd")

    def _set_attributes2(self, req, in_data: bytes, tid: int):
        """KVM_SET_MEMORY_ATTRIBUTES2 (guest_memfd.md §6, v8). shared->private
        must first unmap the range from every host page table: gmemfs writes
        back and drops the kernel's cached pages (worker thread) while faults
        in the range are refused, then stores the attribute."""
        a = abi.from_bytes("struct kvm_memory_attributes2", in_data)
        g = self.gmem
        args = (a.offset, a.size, a.attributes, a.flags, list(a.reserved))
        if self in self.mount.cached and 0 < a.size and a.offset + a.size <= g.size:
            # drop the kernel's pages first (to private: after writing them
            # back; to shared: stale zero pages of a broken populate loop)
            self.mount.spawn(self._convert_async, req, in_data, args, tid)
            return
        self._apply_attributes2(req, in_data, args, tid)

    async def _convert_async(self, req, in_data, args, tid):
        offset, size = args[0], args[1]
        self.converting = (offset, min(offset + size, self.gmem.size))
        try:
            await self.mount.invalidate(self, offset, size)
            self._apply_attributes2(req, in_data, args, tid)
        except Exception as e:   # reply, whatever happened
            F._fail(req, e, "KVM_SET_MEMORY_ATTRIBUTES2")
        finally:
            self.converting = None

    def _apply_attributes2(self, req, in_data, args, tid):
        cmd = abi.KVM_SET_MEMORY_ATTRIBUTES2
        try:
            self.gmem.set_memory_attributes(*args)
        except OSError as e:
            self.mount.log_ioctl(cmd, tid, e.errno, e.strerror)
            eo = getattr(e, "error_offset", None)
            if eo is None:
                e.gmemfs_logged = True
                raise
            # the series reports where it stopped: copy the struct back with
            # error_offset and fail with the errno
            out = abi.from_bytes("struct kvm_memory_attributes2", in_data)
            out.error_offset = eo
            F.reply_ioctl(req, -e.errno, abi.to_bytes(out))
            return
        self.mtime_ns = time.time_ns()
        self.mount.log_ioctl(cmd, tid, 0, None)
        F.reply_ioctl(req, 0)


def install(mount) -> None:
    mount.add(GmemDir(mount), mount.root)
