"""The gmemfs filesystem: nodes, open files, and the mapping of FUSE requests
onto the models (gmemfs.gmem, iommufd_emu). No emulation logic lives here.

Layout (user ABI, keep it exactly):

    MNT/iommu            every open() is a new, independent iommufd context
    MNT/gmem/            guest_memfd files: open(O_CREAT) + KVM_CREATE_GUEST_MEMFD
    MNT/.state/          read-only views (text; one value or JSON per file);
                         events (JSON lines, poll()able), counters, iommufd, config
"""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time

import trio

import ioctl_abi as abi     # every ioctl number and struct: the one source of truth
from gmemfs import fuse_ll as F
from gmemfs.caller import Caller, FileRef

log = logging.getLogger("gmemfs.fs")

ROOT_INO, IOMMU_INO, GMEM_DIR_INO, STATE_DIR_INO, STATE_GMEM_DIR_INO, KVM_INO = 1, 2, 3, 4, 5, 6
FIRST_DYNAMIC_INO = 1000
PAGE_SIZE = 4096

POLLIN, POLLOUT = 0x1, 0x4


class Attr:
    __slots__ = ("ino", "mode", "nlink", "size", "uid", "gid", "blksize", "mtime_ns")

    def __init__(self, ino, mode, nlink=1, size=0, uid=0, gid=0, blksize=4096, mtime_ns=0):
        self.ino, self.mode, self.nlink, self.size = ino, mode, nlink, size
        self.uid, self.gid, self.blksize, self.mtime_ns = uid, gid, blksize, mtime_ns


class Node:
    attr_timeout = 1.0

    def __init__(self, ino: int, name: str, mode: int, uid=0, gid=0):
        self.ino = ino
        self.name = name
        self.mode = mode
        self.uid, self.gid = uid, gid
        self.mtime_ns = time.time_ns()
        self.nlookup = 0
        self.nopen = 0

    def attr(self) -> Attr:
        return Attr(self.ino, self.mode, 2 if stat.S_ISDIR(self.mode) else 1, 0, self.uid,
                    self.gid, PAGE_SIZE, self.mtime_ns)


class DirNode(Node):
    def __init__(self, ino, name, mode=stat.S_IFDIR | 0o755):
        super().__init__(ino, name, mode)
        self.children: dict[str, Node] = {}


class IommuNode(Node):
    """MNT/iommu: every open is a new iommufd context."""


class KvmNode(Node):
    """MNT/kvm: capability discovery for what gmemfs emulates (KVM_CHECK_EXTENSION)."""


# KVM_CHECK_EXTENSION answers of MNT/kvm (guest_memfd.md §1.2, v8 §6.2)
KVM_API_VERSION = 12
KVM_CAPS = {
    abi.KVM_CAP_GUEST_MEMFD: 1,
    abi.KVM_CAP_GUEST_MEMFD_FLAGS: abi.GUEST_MEMFD_FLAG_MMAP | abi.GUEST_MEMFD_FLAG_INIT_SHARED,
    abi.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES: abi.KVM_MEMORY_ATTRIBUTE_PRIVATE,
}


class StateNode(Node):
    """A read-only file whose content is rendered when it is opened."""
    attr_timeout = 0.0

    def __init__(self, ino, name, render):
        super().__init__(ino, name, stat.S_IFREG | 0o444)
        self.render = render


class GmemNode(Node):
    """A file of MNT/gmem/. It becomes a guest_memfd with KVM_CREATE_GUEST_MEMFD."""
    attr_timeout = 0.0

    def __init__(self, ino, name, uid, gid):
        super().__init__(ino, name, stat.S_IFREG | 0o600, uid, gid)
        self.gmem = None           # gmemfs.gmem.GuestMemfd once created
        self.linked = True
        # the kernel may hold page-cache pages of this file (we served a fault)
        self.cached = False
        # a shared->private conversion is dropping the kernel's pages: faults
        # in this byte range are refused (SIGBUS) until it is done
        self.converting: tuple[int, int] | None = None
        # page-cache fills refused because the page is private: offset -> (count, t0)
        self.refused: dict[int, tuple[int, float]] = {}

    def attr(self) -> Attr:
        a = super().attr()
        a.nlink = 1 if self.linked else 0
        if self.gmem is not None:
            a.size = self.gmem.size
        return a


class EventsNode(StateNode):
    """MNT/.state/events: the event log as JSON lines, read as a stream (each
    open file continues where it stopped; nothing new reads 0 bytes) and
    poll()able (POLLIN when an event arrives)."""


class OpenFile:
    __slots__ = ("node", "ctx", "data", "flags", "reader")

    def __init__(self, node, ctx=None, data=b"", flags=0, reader=None):
        self.node, self.ctx, self.data, self.flags = node, ctx, data, flags
        self.reader = reader      # events.EventReader of an MNT/.state/events open


class _GmemRef(FileRef):
    """A caller's guest_memfd fd as the models see it. Like the kernel's file
    reference held by an IOMMU_IOAS_MAP_FILE, it keeps the guest_memfd alive
    (unlinked and closed by every process) until the model closes it."""

    def __init__(self, fs: "GmemFS", node: GmemNode, readable: bool, writable: bool):
        super().__init__("gmem", None, readable, writable, gmem=node.gmem, node=node)
        self._fs = fs
        node.nopen += 1

    def close(self) -> None:
        fs, self._fs = self._fs, None
        if fs is not None:
            self.node.nopen -= 1
            fs._maybe_drop(self.node)


class GmemFS:
    """The operations object driven by gmemfs.fuse_ll."""

    def __init__(self, options=None):
        self.options = options or {}
        self.session: F.Session | None = None
        self.inodes: dict[int, Node] = {}
        self.files: dict[int, OpenFile] = {}
        self._next_fh = 1
        self._next_ino = FIRST_DYNAMIC_INO
        self.started_ns = time.time_ns()
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.stats = {"ioctls": 0, "ioctl_errors": 0, "contexts_opened": 0,
                      "contexts_closed": 0, "fallocates": 0}
        self.root = self._add(DirNode(ROOT_INO, ""))
        self.iommu = self._add(IommuNode(IOMMU_INO, "iommu", stat.S_IFREG | 0o666), self.root)
        self.gmem_dir = self._add(DirNode(GMEM_DIR_INO, "gmem", stat.S_IFDIR | 0o777), self.root)
        self.kvm = self._add(KvmNode(KVM_INO, "kvm", stat.S_IFREG | 0o666), self.root)
        self.state_dir = self._add(DirNode(STATE_DIR_INO, ".state"), self.root)
        self.state_gmem_dir = self._add(DirNode(STATE_GMEM_DIR_INO, "gmem"), self.state_dir)
        self._add(StateNode(self._alloc_ino(), "contexts", self._render_contexts), self.state_dir)
        self._add(StateNode(self._alloc_ino(), "server.json", self._render_server),
                  self.state_dir)
        from iommufd_emu import dispatch, policy
        from iommufd_emu.context import Context
        from iommufd_emu.events import EventLog
        from iommufd_emu.platform import CcConfig
        # the guest_memfd policy / platform model of this mount (ValueError on
        # bad -o values) and its event log, shared by every iommufd context
        self.cc = CcConfig.from_options(self.options)
        self.events = EventLog(self.cc.platform, self.cc.policy)
        self.events.listen(self._on_event)
        self._poll_waiters: dict[int, object] = {}      # fh -> fuse_pollhandle
        ctx_opts = {**self.cc.context_options(), "events": self.events}
        self._new_context = lambda: Context(ctx_opts)
        self._describe_iommufd = policy.describe
        self._add(EventsNode(self._alloc_ino(), "events", None), self.state_dir)
        self._add(StateNode(self._alloc_ino(), "counters", self._render_counters),
                  self.state_dir)
        self._add(StateNode(self._alloc_ino(), "iommufd", self._render_iommufd), self.state_dir)
        self._add(StateNode(self._alloc_ino(), "config", lambda: self.cc.as_text().encode()),
                  self.state_dir)
        self._dispatch = dispatch.ioctl
        self._cmd_names = {v: k for k, v in vars(abi).items()
                           if isinstance(v, int) and (k.startswith("IOMMU_") or k.startswith("KVM_"))
                           and k.upper() == k and v > 0xff}

    # ------------------------------------------------------------ helpers --

    def _alloc_ino(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def _add(self, node: Node, parent: DirNode | None = None) -> Node:
        self.inodes[node.ino] = node
        if parent is not None:
            parent.children[node.name] = node
        return node

    def _node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise OSError(errno.ENOENT, f"no inode {ino}")
        return node

    def _file(self, fh: int) -> OpenFile:
        f = self.files.get(fh)
        if f is None:
            raise OSError(errno.EBADF, f"no open file {fh}")
        return f

    def _new_fh(self, of: OpenFile) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self.files[fh] = of
        of.node.nopen += 1
        return fh

    def _maybe_drop(self, node: Node) -> None:
        if isinstance(node, GmemNode) and not node.linked and node.nlookup <= 0 \
                and node.nopen <= 0:
            self.inodes.pop(node.ino, None)
            if node.gmem is not None:
                node.gmem.close()
                node.gmem = None

    def caller(self, req) -> Caller:
        tid, uid, gid = F.req_ctx(req)
        return Caller(tid, uid, gid, self._resolve_own)

    def _resolve_own(self, mnt_id: int, ino: int, readable: bool, writable: bool):
        """FileRef for a caller fd that is one of our own files, else None."""
        if self.session is None or mnt_id != self.session.mount_id:
            return None
        node = self.inodes.get(ino)
        if isinstance(node, GmemNode) and node.gmem is not None:
            return _GmemRef(self, node, readable, writable)
        return FileRef("gmemfs-other", None, readable, writable, node=node)

    def _check_host(self) -> None:
        """After an emulated TDX machine check the host is dead: every call on
        the mount fails with EIO until remount (MNT/.state stays readable)."""
        if self.events.host_dead:
            raise OSError(errno.EIO, "the emulated host is dead: " + self.events.host_dead_reason)

    def _on_event(self, ev) -> None:
        """A new event: wake every poll()er of MNT/.state/events."""
        if not self._poll_waiters or self.session is None:
            return
        waiters, self._poll_waiters = self._poll_waiters, {}
        for ph in waiters.values():
            try:
                self.session.notify_poll(ph)
            except Exception:
                log.exception("poll notification failed")

    def gmem_by_name(self, name: str):
        node = self.gmem_dir.children.get(name)
        return node.gmem if isinstance(node, GmemNode) else None

    def live_contexts(self) -> int:
        return sum(1 for f in self.files.values() if f.ctx is not None)

    # ------------------------------------------------------ state views --

    def _render_contexts(self) -> bytes:
        return f"{self.live_contexts()}\n".encode()

    def _render_counters(self) -> bytes:
        return (json.dumps(self.events.counters(), indent=1, sort_keys=True) + "\n").encode()

    def _render_iommufd(self) -> bytes:
        ctxs = [(fh, f.ctx) for fh, f in sorted(self.files.items()) if f.ctx is not None]
        d = self._describe_iommufd(ctxs, self.cc)
        return (json.dumps(d, indent=1, sort_keys=True) + "\n").encode()

    def _render_server(self) -> bytes:
        info = {
            "pid": os.getpid(),
            "mountpoint": self.session.mountpoint if self.session else None,
            "uptime_s": round((time.time_ns() - self.started_ns) / 1e9, 3),
            "contexts": self.live_contexts(),
            "open_files": len(self.files),
            "gmem_files": sorted(n for n in self.gmem_dir.children),
            "direct_io_mmap": self.direct_io_mmap,
            "cc": self.cc.context_options(),
            "host_dead": self.events.host_dead,
            "stats": {**self.stats, "server_bugs": F.server_bugs},
        }
        return (json.dumps(info, indent=1, sort_keys=True) + "\n").encode()

    # ------------------------------------------------------- lifecycle --

    @property
    def direct_io_mmap(self) -> bool:
        # FUSE_DIRECT_IO_ALLOW_MMAP was patched into the INIT reply (known once
        # that reply is written, i.e. after init() returned)
        return self.session is not None and bool(self.session.init_flags2_patched() & (1 << 4))

    def init(self):
        ready = self.options.get("on_ready")
        if ready:
            ready()

    def destroy(self):
        for fh in list(self.files):
            self._close_file(fh)

    # ---------------------------------------------------- namespace ops --

    def lookup(self, req, parent: int, name: str):
        pnode = self._node(parent)
        if not isinstance(pnode, DirNode):
            raise OSError(errno.ENOTDIR, "not a directory")
        node = pnode.children.get(name)
        if node is None and pnode is self.state_gmem_dir:
            node = self._state_gmem_node(name)
        if node is None:
            raise OSError(errno.ENOENT, f"{name}: no such entry")
        node.nlookup += 1
        F.reply_entry(req, node.attr(), node.attr_timeout)

    def _state_gmem_node(self, name: str):
        g = self.gmem_dir.children.get(name)
        if not isinstance(g, GmemNode):
            return None
        node = StateNode(self._alloc_ino(), name, lambda: self._render_gmem(name))
        return self._add(node, self.state_gmem_dir)

    def _render_gmem(self, name: str) -> bytes:
        g = self.gmem_dir.children.get(name)
        if not isinstance(g, GmemNode):
            return b"{}\n"
        if g.gmem is None:
            return (json.dumps({"name": name, "created": False}) + "\n").encode()
        d = dict(g.gmem.describe())
        d.update(name=name, created=True)
        return (json.dumps(d, indent=1, sort_keys=True, default=str) + "\n").encode()

    def forget(self, ino: int, nlookup: int):
        node = self.inodes.get(ino)
        if node is not None:
            node.nlookup -= nlookup
            self._maybe_drop(node)

    def getattr(self, req, ino: int, fh):
        node = self._node(ino)
        F.reply_attr(req, node.attr(), node.attr_timeout)

    def setattr(self, req, ino: int, to_set: int, mode: int, size: int, fh):
        node = self._node(ino)
        if isinstance(node, GmemNode):
            # guest_memfd.md §4.2: ftruncate, fchmod, fchown, futimens -> EINVAL
            raise OSError(errno.EINVAL, "guest_memfd attributes cannot change")
        raise OSError(errno.EPERM, "gmemfs nodes have fixed attributes")

    def unlink(self, req, parent: int, name: str):
        pnode = self._node(parent)
        if pnode is not self.gmem_dir:
            raise OSError(errno.EPERM, "only MNT/gmem/ entries can be removed")
        node = pnode.children.pop(name, None)
        if node is None:
            raise OSError(errno.ENOENT, f"{name}: no such entry")
        node.linked = False
        st = self.state_gmem_dir.children.pop(name, None)
        if st is not None and st.nlookup <= 0:
            self.inodes.pop(st.ino, None)
        F.reply_err(req, 0)
        self._maybe_drop(node)

    def mknod(self, req, parent: int, name: str, mode: int):
        self._check_host()
        node = self._new_gmem(req, parent, name, mode)
        node.nlookup += 1
        F.reply_entry(req, node.attr(), node.attr_timeout)

    def rename(self, req, parent, name, newparent, newname, flags):
        raise OSError(errno.EPERM, "gmemfs entries cannot be renamed")

    def _new_gmem(self, req, parent: int, name: str, mode: int) -> GmemNode:
        pnode = self._node(parent)
        if pnode is not self.gmem_dir:
            raise OSError(errno.EPERM, "files can only be created in MNT/gmem/")
        if not stat.S_ISREG(mode or stat.S_IFREG):
            raise OSError(errno.EPERM, "only regular files in MNT/gmem/")
        if name in pnode.children:
            raise OSError(errno.EEXIST, f"{name} exists")
        if len(name.encode()) > 255 or "/" in name:
            raise OSError(errno.ENAMETOOLONG, "name too long")
        _, uid, gid = F.req_ctx(req)
        node = GmemNode(self._alloc_ino(), name, uid, gid)
        self._add(node, pnode)
        return node

    # ---------------------------------------------------------- file ops --

    def create(self, req, parent: int, name: str, mode: int, fi):
        self._check_host()
        node = self._new_gmem(req, parent, name, mode)
        node.nlookup += 1
        fh = self._new_fh(OpenFile(node, flags=fi.flags))
        F.reply_create(req, node.attr(), node.attr_timeout, fi, fh,
                       direct_io=self.direct_io_mmap, nonseekable=True)

    def open(self, req, ino: int, fi):
        node = self._node(ino)
        if isinstance(node, DirNode):
            raise OSError(errno.EISDIR, "is a directory")
        if not isinstance(node, StateNode):
            self._check_host()
        if isinstance(node, EventsNode):
            if fi.flags & os.O_ACCMODE != os.O_RDONLY:
                raise OSError(errno.EACCES, "state views are read-only")
            fh = self._new_fh(OpenFile(node, flags=fi.flags, reader=self.events.reader()))
            F.reply_open(req, fi, fh, direct_io=True, nonseekable=True)
        elif isinstance(node, IommuNode):
            ctx = self._new_context()
            fh = self._new_fh(OpenFile(node, ctx=ctx, flags=fi.flags))
            self.stats["contexts_opened"] += 1
            F.reply_open(req, fi, fh, direct_io=True, nonseekable=True)
        elif isinstance(node, KvmNode):
            fh = self._new_fh(OpenFile(node, flags=fi.flags))
            F.reply_open(req, fi, fh, direct_io=True, nonseekable=True)
        elif isinstance(node, GmemNode):
            fh = self._new_fh(OpenFile(node, flags=fi.flags))
            F.reply_open(req, fi, fh, direct_io=self.direct_io_mmap, nonseekable=True)
        elif isinstance(node, StateNode):
            if fi.flags & os.O_ACCMODE != os.O_RDONLY:
                raise OSError(errno.EACCES, "state views are read-only")
            fh = self._new_fh(OpenFile(node, data=node.render(), flags=fi.flags))
            F.reply_open(req, fi, fh, direct_io=True)
        else:
            raise OSError(errno.EIO, "unknown node")

    def read(self, req, ino: int, fh: int, size: int, off: int, direct: bool):
        f = self._file(fh)
        node = f.node
        if f.reader is not None:
            F.reply_buf(req, f.reader.read(size))
        elif isinstance(node, StateNode):
            F.reply_buf(req, f.data[off:off + size])
        elif isinstance(node, GmemNode):
            self._check_host()
            self._gmem_read(req, node, size, off, direct)
        else:
            raise OSError(errno.EINVAL, "not readable")

    def _gmem_read(self, req, node: GmemNode, size: int, off: int, direct: bool):
        if direct or node.gmem is None:
            # guest_memfd.md §4.2: read/readv -> EINVAL
            raise OSError(errno.EINVAL, "guest_memfd does not support read()")
        g = node.gmem
        # a page-cache fill for an mmap fault or readahead
        end = min(off + size, g.size)
        if off >= end:
            F.reply_buf(req, b"")
            return
        conv = node.converting
        # without GUEST_MEMFD_FLAG_MMAP the kernel refuses mmap (ENODEV); FUSE
        # cannot refuse it, so refuse every fill instead: any touch is SIGBUS
        no_mmap = not g.flags & abi.GUEST_MEMFD_FLAG_MMAP
        private = no_mmap or not g.is_shared(off, end - off) or \
            (conv and off < conv[1] and end > conv[0])
        if private and not self._populate_loop(node, off):
            # touching a private page is SIGBUS: fail the fill (guest_memfd.md §6.3).
            # Never a short read: FUSE would shrink the cached file size.
            raise OSError(errno.EIO, "private page: no host access")
        node.cached = True
        if private:
            # MAP_POPULATE / mlock / MADV_POPULATE over a private page make the
            # kernel retry the fill forever (spec §8.1). Break the loop with a
            # zero page and drop it from the page cache right after, so the
            # next touch faults again and gets SIGBUS.
            F.reply_buf(req, bytes(end - off))
            self.session.spawn(self._drop_cache, node, off, end - off)
            return
        F.reply_buf(req, g.read(off, end - off))

    # one touch of a private page costs a few refused fills (the fault is
    # retried once); a GUP populate loop makes thousands a second
    POPULATE_LOOP_REFUSALS = 512
    POPULATE_LOOP_WINDOW = 1.0

    def _populate_loop(self, node: GmemNode, off: int) -> bool:
        """True when fills of this private page keep coming back: a GUP
        populate loop, not a touch."""
        now = time.monotonic()
        count, t0 = node.refused.get(off, (0, now))
        if now - t0 > self.POPULATE_LOOP_WINDOW:
            count, t0 = 0, now
        count += 1
        if len(node.refused) > 4096:
            node.refused.clear()
        node.refused[off] = (count, t0)
        if count >= self.POPULATE_LOOP_REFUSALS:
            node.refused.pop(off, None)
            log.debug("populate loop on private page %#x of %s: served zeros, dropping it",
                      off, node.name)
            return True
        return False

    async def _drop_cache(self, node: GmemNode, off: int, length: int):
        await trio.sleep(0.05)
        await self.invalidate(node, off, length)

    async def invalidate(self, node: GmemNode, off: int = 0, length: int = 0):
        """Write back and drop the kernel's cached pages of ``node`` in the range
        (length 0 = to EOF). Runs in a worker thread: the kernel may send us
        the write-back of dirty pages, which this loop must serve meanwhile."""
        if self.session is None or not node.cached:
            return
        if off == 0 and length == 0:
            node.cached = False
        await trio.to_thread.run_sync(self.session.notify_inval_inode, node.ino, off, length)

    def write(self, req, ino: int, fh: int, buf, off: int, writepage: bool):
        f = self._file(fh)
        node = f.node
        if not isinstance(node, GmemNode):
            raise OSError(errno.EBADF, "not writable")
        self._check_host()
        if not writepage or node.gmem is None:
            # guest_memfd.md §4.2: write/writev -> EINVAL
            raise OSError(errno.EINVAL, "guest_memfd does not support write()")
        # write-back of pages dirtied through a shared mapping
        g = node.gmem
        data = bytes(buf)
        end = min(off + len(data), g.size)
        if end > off:
            for s, e in g.shared_runs(off, end - off):   # a page gone private is not written
                g.write(s, data[s - off:e - off])
        F.reply_write(req, len(data))

    def flush(self, req, ino: int, fh: int):
        F.reply_err(req, 0)

    def fsync(self, req, ino: int, fh: int, datasync: int):
        node = self._file(fh).node
        if isinstance(node, GmemNode):
            raise OSError(errno.EINVAL, "guest_memfd has no fsync")  # §4.2
        F.reply_err(req, 0)

    def release(self, ino: int, fh: int):
        self._close_file(fh)

    def _close_file(self, fh: int):
        f = self.files.pop(fh, None)
        if f is None:
            return
        f.node.nopen -= 1
        ph = self._poll_waiters.pop(fh, None)
        if ph is not None:
            F.lib.fuse_pollhandle_destroy(ph)
        if f.ctx is not None:
            try:
                f.ctx.close()
            finally:
                self.stats["contexts_closed"] += 1
        self._maybe_drop(f.node)

    def opendir(self, req, ino: int, fi):
        node = self._node(ino)
        if not isinstance(node, DirNode):
            raise OSError(errno.ENOTDIR, "not a directory")
        F.reply_open(req, fi, 0)

    def readdir(self, req, ino: int, size: int, off: int, plus: bool):
        node = self._node(ino)
        if not isinstance(node, DirNode):
            raise OSError(errno.ENOTDIR, "not a directory")
        if node is self.state_gmem_dir:
            for name in list(self.gmem_dir.children):
                if name not in node.children:
                    self._state_gmem_node(name)
        children = sorted(node.children.items())
        entries = [(".", node.attr()), ("..", node.attr())]
        entries += [(name, child.attr()) for name, child in children]
        sent_to = F.reply_readdir(req, entries, size, off, plus)
        if plus:
            # the kernel took a lookup reference on every entry it got but . and ..
            for _, child in children[max(off - 2, 0):max(sent_to - 2, 0)]:
                child.nlookup += 1

    def statfs(self, req, ino: int):
        F.reply_statfs(req, blocks=0, bfree=0, files=len(self.inodes), ffree=1 << 20)

    def poll(self, req, ino: int, fh: int, ph):
        f = self.files.get(fh)
        if f is not None and f.reader is not None:
            # MNT/.state/events: POLLIN when there is something new to read;
            # otherwise keep the handle and notify it at the next event
            old = self._poll_waiters.pop(fh, None)
            if old is not None:
                F.lib.fuse_pollhandle_destroy(old)
            if f.reader.pending():
                if ph != F.ffi.NULL:
                    F.lib.fuse_pollhandle_destroy(ph)
                F.reply_poll(req, POLLIN)
                return
            if ph != F.ffi.NULL:
                self._poll_waiters[fh] = ph
            F.reply_poll(req, 0)
            return
        # guest_memfd and iommufd files are always ready (guest_memfd.md §4.2)
        if ph != F.ffi.NULL:
            F.lib.fuse_pollhandle_destroy(ph)
        F.reply_poll(req, POLLIN | POLLOUT)

    def retrieve_reply(self, cookie: int, ino: int, offset: int, data: bytes):
        pass

    # ------------------------------------------------------------- ioctl --

    def ioctl(self, req, ino: int, fh: int, cmd: int, arg: int, flags: int, in_data: bytes,
              out_size: int, prefetch: bytes | None = None, creds=None):
        f = self.files.get(fh)
        if f is None:
            raise OSError(errno.EBADF, "no such open file")
        self._check_host()
        self.stats["ioctls"] += 1
        if f.ctx is not None:
            caller = Caller(*creds, self._resolve_own) if creds else self.caller(req)
            if cmd == abi.IOMMU_TEST_CMD and self._is_dma_op(caller, arg, prefetch) and \
                    any(n.cached for n in self.inodes.values() if isinstance(n, GmemNode)):
                self.session.spawn(self._coherent_dma, req, f, cmd, arg, caller, prefetch)
                return
            F.reply_ioctl(req, self._run_iommufd(f, cmd, arg, caller, prefetch))
        elif isinstance(f.node, GmemNode):
            self._gmem_ioctl(req, f, cmd, in_data, out_size)
        elif isinstance(f.node, KvmNode):
            tid = creds[0] if creds else F.req_ctx(req)[0]
            if cmd == abi.KVM_CHECK_EXTENSION:
                val = KVM_CAPS.get(arg, 0)       # unknown caps are 0, like the kernel
                self._log_ioctl(cmd, tid, 0, f"cap {arg} = {val}")
                F.reply_ioctl(req, val)
            elif cmd == 0xAE00:   # KVM_GET_API_VERSION
                F.reply_ioctl(req, KVM_API_VERSION)
            else:
                # /dev/kvm answers unknown ioctls (and VM ioctls) with EINVAL
                self._log_ioctl(cmd, tid, errno.EINVAL, "not emulated on MNT/kvm")
                raise OSError(errno.EINVAL, "not emulated on MNT/kvm")
        else:
            raise OSError(errno.ENOTTY, "no ioctls on this node")

    def _run_iommufd(self, f: OpenFile, cmd: int, arg: int, caller, prefetch) -> int:
        """One iommufd ioctl through the model's dispatch table, counted and
        logged; returns the ioctl's value or raises its OSError."""
        try:
            ret = self._dispatch(f.ctx, cmd, arg, caller, prefetch)
        except OSError as e:
            self.stats["ioctl_errors"] += 1
            self._log_ioctl(cmd, caller.tid, e.errno, e.strerror)
            e.gmemfs_logged = True
            raise
        if self._debug:
            self._log_ioctl(cmd, caller.tid, 0, None)
        return ret or 0

    @staticmethod
    def _is_dma_op(caller, arg: int, prefetch: bytes | None) -> bool:
        if prefetch is not None and len(prefetch) >= 8:
            op = prefetch[4:8]
        else:
            try:
                op = caller.read(arg + 4, 4)
            except OSError:
                return False     # dispatch reports the fault
        return int.from_bytes(op, "little") == abi.GMEMFS_TEST_OP_DMA

    async def _coherent_dma(self, req, f: OpenFile, cmd: int, arg: int, caller, prefetch):
        """An emulated device DMA sees exactly what processes wrote through
        their mappings, without msync, and they see what it wrote: before the
        access, every guest_memfd page the kernel caches is written back and
        dropped (so the model holds the truth); after it, pages faulted in
        meanwhile are dropped again (a device write must not be shadowed by a
        stale cached copy)."""
        try:
            nodes = [n for n in self.inodes.values() if isinstance(n, GmemNode) and n.cached]
            for n in nodes:
                await self.invalidate(n)
            ret = self._run_iommufd(f, cmd, arg, caller, prefetch)
            for n in nodes:
                if n.cached:
                    await self.invalidate(n)
            F.reply_ioctl(req, ret)
        except Exception as e:
            F._fail(req, e, "ioctl DMA")

    def _log_ioctl(self, cmd, tid, err, reason):
        if self._debug:
            name = self._cmd_names.get(cmd, f"{cmd:#x}")
            res = "0" if not err else errno.errorcode.get(err, str(err))
            log.debug("ioctl %s pid=%d -> %s%s", name, tid, res, f" ({reason})" if reason else "")

    def _gmem_ioctl(self, req, f: OpenFile, cmd: int, in_data: bytes, out_size: int):
        node: GmemNode = f.node
        tid = F.req_ctx(req)[0]
        if cmd == abi.KVM_CREATE_GUEST_MEMFD and node.gmem is None:
            from gmemfs.gmem import GuestMemfd
            a = abi.from_bytes("struct kvm_create_guest_memfd", in_data)
            size = a.size - (1 << 64) if a.size >= 1 << 63 else a.size
            try:
                node.gmem = GuestMemfd.create(size, a.flags)
            except OSError as e:
                self._log_ioctl(cmd, tid, e.errno, e.strerror)
                e.gmemfs_logged = True
                raise
            node.gmem.name = node.name
            # the kernel still caches size 0 for this inode and faults do not
            # refresh it (spec §8.1 trap): storing the last byte makes it learn
            # the size. (A zero-length store does not: the kernel only grows
            # i_size for a store of > 0 bytes.) The page stays not-uptodate, so
            # a touch still comes here and private pages still SIGBUS.
            last = node.gmem.size - 1
            self.session.notify_store(node.ino, last, node.gmem.read(last, 1))
            # (that page is cached but not up to date: nothing to write back
            # or drop before a conversion, so the file does not count as cached)
            self._log_ioctl(cmd, tid, 0, None)
            F.reply_ioctl(req, 0)
            return
        if cmd == abi.KVM_SET_MEMORY_ATTRIBUTES2 and node.gmem is not None:
            self._set_attributes2(req, node, in_data, tid)
            return
        # guest_memfd.md §4.1: KVM_CREATE_GUEST_MEMFD on a gmem fd -> ENOTTY;
        # unknown ioctls -> ENOTTY
        self._log_ioctl(cmd, tid, errno.ENOTTY, "unknown ioctl on a guest_memfd")
        raise OSError(errno.ENOTTY, "unknown ioctl on a guest_memfd")

    def _set_attributes2(self, req, node: GmemNode, in_data: bytes, tid: int):
        """KVM_SET_MEMORY_ATTRIBUTES2 (guest_memfd.md §6, v8). shared->private
        must first unmap the range from every host page table: gmemfs writes
        back and drops the kernel's cached pages (worker thread) while faults
        in the range are refused, then stores the attribute."""
        a = abi.from_bytes("struct kvm_memory_attributes2", in_data)
        g = node.gmem
        args = (a.offset, a.size, a.attributes, a.flags, list(a.reserved))
        if node.cached and 0 < a.size and a.offset + a.size <= g.size:
            # drop the kernel's pages first (to private: after writing them
            # back; to shared: stale zero pages of a broken populate loop)
            self.session.spawn(self._convert_async, req, node, in_data, args, tid)
            return
        self._apply_attributes2(req, node, in_data, args, tid)

    async def _convert_async(self, req, node, in_data, args, tid):
        offset, size = args[0], args[1]
        node.converting = (offset, min(offset + size, node.gmem.size))
        try:
            await self.invalidate(node, offset, size)
            self._apply_attributes2(req, node, in_data, args, tid)
        except Exception as e:   # reply, whatever happened
            F._fail(req, e, "KVM_SET_MEMORY_ATTRIBUTES2")
        finally:
            node.converting = None

    def _apply_attributes2(self, req, node, in_data, args, tid):
        cmd = abi.KVM_SET_MEMORY_ATTRIBUTES2
        try:
            node.gmem.set_memory_attributes(*args)
        except OSError as e:
            self._log_ioctl(cmd, tid, e.errno, e.strerror)
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
        node.mtime_ns = time.time_ns()
        self._log_ioctl(cmd, tid, 0, None)
        F.reply_ioctl(req, 0)

    # --------------------------------------------------------- fallocate --

    def fallocate(self, req, ino: int, fh: int, mode: int, offset: int, length: int):
        node = self._file(fh).node
        self._check_host()
        if not isinstance(node, GmemNode):
            raise OSError(errno.EOPNOTSUPP, "fallocate only on guest_memfd files")
        if node.gmem is None:
            raise OSError(errno.ENODEV, "not a guest_memfd yet: issue KVM_CREATE_GUEST_MEMFD")
        self.stats["fallocates"] += 1
        node.gmem.fallocate(mode, offset, length)
        node.mtime_ns = time.time_ns()
        F.reply_err(req, 0)
