"""What every node kind of a gmemfs mount is made of.

The kernel gives each kind of file a ``struct file_operations`` (and each kind
of inode a ``struct inode_operations``). gmemfs gives each kind of node a
class, and the class *is* the table: an operation the kind has is a method,
an operation it does not have stays ``None`` (as here in `Node`). The FUSE
adapter (gmemfs/fs.py) finds the node and calls the operation; for one that
is ``None`` it answers what the kernel's VFS answers for a file without it
(the errno table is in fs.py, with the kernel source it comes from).

Operations a kind may define (``of`` is the `OpenFile`, the ``struct file``;
``req`` the FUSE request: a handler that takes it replies through the
``gmemfs.fuse_ll.reply_*`` functions before it returns, or starts a task with
``mount.spawn`` that replies later; raising ``OSError`` answers its errno):

  namespace (inode operations)
    lookup(name) -> Node | None        a directory: the child called ``name``
    entries() -> [(name, Node)]         a directory: readdir, in a stable order
    create(name, mode, uid, gid) -> Node   mknod / open(O_CREAT) in this directory
    unlink(name) -> Node                remove a name; returns the node that lost it
    setattr(req, to_set, mode, size)    chmod, chown, truncate, utimes

  file operations
    open(of)               per-open set-up: ``of.private`` (file->private_data)
                           and the reply flags ``of.direct_io`` (read()/write()
                           reach the server, mmap faults come as page-cache
                           reads), ``of.nonseekable``, ``of.keep_cache``
    read(req, of, size, off, direct)    ``direct``: read(2); else a page-cache
                                        fill (an mmap fault or readahead)
    write(req, of, buf, off, writepage) ``writepage``: write-back of a shared
                                        mapping; else write(2)
    ioctl(req, of, cmd, arg, in_data, out_size, prefetch, creds)
    exec_ioctl(of, cmd, arg, caller, files)   the fd-returning form of an ioctl,
                           for the stopped caller of gmemfs exec (nodes/exec.py):
                           returns its value (a new file asked from ``files``)
                           or exec.PASS (not one: it runs as a plain ioctl)
    exec_mmap(of, offset, length, prot, flags, caller, pid)   mmap() of the file,
                           for the stopped caller of gmemfs exec (``pid`` its
                           thread group): raises the errno
                           the kernel's mmap would, else the kernel maps the
                           file (its pages come as page-cache reads)
    poll(req, of, ph)
    fallocate(req, of, mode, offset, length)
    fsync(req, of, datasync)
    release(of)            the last close of this open (no reply)

  the inode's life
    attr() -> Attr                      getattr, lookup replies
    evict()                             it left the inode table: no name, no
                                        lookup reference, no open file
    file_ref(readable, writable)        what a caller's fd on this node is to
                                        the models (Caller.get_file)

Class attributes: ``attr_timeout`` (seconds the kernel may cache the
attributes and the name), ``needs_host`` (every file operation fails with EIO
once the emulated host is dead, see `Mount.check_host`).

A node kind is one module under gmemfs/nodes/ with an ``install(mount)`` that
adds its nodes to the tree, plus one line in gmemfs/nodes/__init__.py.
"""
from __future__ import annotations

import errno
import logging
import stat
import time

import trio

import ioctl_abi as abi
from gmemfs import fuse_ll as F
from gmemfs.caller import Caller, FileRef
from iommufd_emu.events import EventLog
from iommufd_emu.platform import CcConfig

log = logging.getLogger("gmemfs.fs")

ROOT_INO = 1
FIRST_DYNAMIC_INO = 1000
PAGE_SIZE = 4096


class Attr:
    __slots__ = ("ino", "mode", "nlink", "size", "uid", "gid", "blksize", "mtime_ns")

    def __init__(self, ino, mode, nlink=1, size=0, uid=0, gid=0, blksize=4096, mtime_ns=0):
        self.ino, self.mode, self.nlink, self.size = ino, mode, nlink, size
        self.uid, self.gid, self.blksize, self.mtime_ns = uid, gid, blksize, mtime_ns


class Node:
    """An inode of the mount. Subclasses are the node kinds (module doc)."""

    attr_timeout = 1.0
    needs_host = True

    # inode operations
    lookup = None
    entries = None
    create = None
    unlink = None
    setattr = None
    # file operations
    open = None
    read = None
    write = None
    ioctl = None
    exec_ioctl = None
    exec_mmap = None
    poll = None
    fallocate = None
    fsync = None
    release = None

    def __init__(self, mount: "Mount", name: str, mode: int, ino: int | None = None,
                 uid: int = 0, gid: int = 0):
        self.mount = mount
        self.ino = mount.alloc_ino() if ino is None else ino
        self.name = name
        self.mode = mode
        self.uid, self.gid = uid, gid
        self.mtime_ns = time.time_ns()
        self.nlookup = 0          # lookup references the kernel holds
        self.nopen = 0            # open files (and model references) on it
        self.linked = True        # it has a name in a directory

    def attr(self) -> Attr:
        return Attr(self.ino, self.mode, 2 if stat.S_ISDIR(self.mode) else 1, 0, self.uid,
                    self.gid, PAGE_SIZE, self.mtime_ns)

    def evict(self) -> None:
        """The node left the inode table (see Mount.drop_if_unused)."""

    def file_ref(self, readable: bool, writable: bool) -> FileRef:
        return FileRef("gmemfs-other", None, readable, writable, node=self)


class Dir(Node):
    """A directory: its names are ``children``."""

    needs_host = False

    def __init__(self, mount, name, mode=stat.S_IFDIR | 0o755, ino=None):
        super().__init__(mount, name, mode, ino)
        self.children: dict[str, Node] = {}

    def lookup(self, name: str):
        return self.children.get(name)

    def entries(self):
        return sorted(self.children.items())

    def open(self, of):
        raise OSError(errno.EISDIR, "is a directory")


class OpenFile:
    """One open of a node (the kernel's ``struct file``): ``private`` is the
    kind's per-open state (file->private_data)."""

    __slots__ = ("node", "flags", "fh", "private", "direct_io", "nonseekable", "keep_cache")

    def __init__(self, node: Node, flags: int = 0, private=None):
        self.node, self.flags, self.private = node, flags, private
        self.fh = 0
        self.direct_io = self.nonseekable = self.keep_cache = False


class Mount:
    """What the nodes of one mount share (the superblock): the inode and open
    file tables, the session, the mount options, the guest_memfd platform /
    policy configuration and its event log, and the counters."""

    def __init__(self, options=None):
        self.options = options or {}
        self.session: F.Session | None = None
        self.inodes: dict[int, Node] = {}
        self.files: dict[int, OpenFile] = {}
        self._next_fh = 1
        self._next_ino = FIRST_DYNAMIC_INO
        self.started_ns = time.time_ns()
        self.debug = log.isEnabledFor(logging.DEBUG)
        self.stats = {"ioctls": 0, "ioctl_errors": 0, "contexts_opened": 0,
                      "contexts_closed": 0, "fallocates": 0}
        # the guest_memfd policy / platform model of this mount (ValueError on
        # bad -o values) and its event log, shared by every iommufd context
        self.cc = CcConfig.from_options(self.options)
        self.events = EventLog(self.cc.platform, self.cc.policy)
        self.root: Dir | None = None
        # the guest_memfds of the mount by name: what MNT/.state/gmem/ shows
        self.gmems: dict[str, Node] = {}
        # open iommufd contexts (OpenFile of MNT/iommu -> Context)
        self.contexts: dict[OpenFile, object] = {}
        # nodes whose pages the kernel may hold in its page cache (we served a
        # fault); an ordered set
        self.cached: dict[Node, None] = {}
        # GMEMFS_EXEC_CALL of the gmemfs exec supervisor (set by nodes/exec.py)
        self.exec_call = None
        self.exec_mmap = None
        self._cmd_names = {v: k for k, v in vars(abi).items()
                           if isinstance(v, int) and k.startswith(("IOMMU_", "KVM_", "VFIO_DEVICE_"))
                           and k.upper() == k and v > 0xff}

    # ---------------------------------------------------------- inodes --

    def alloc_ino(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def add(self, node: Node, parent: Dir | None = None) -> Node:
        self.inodes[node.ino] = node
        if parent is not None:
            parent.children[node.name] = node
        return node

    def node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise OSError(errno.ENOENT, f"no inode {ino}")
        return node

    def drop_if_unused(self, node: Node) -> None:
        """A node with no name, no lookup reference and no open file leaves
        the inode table (the kernel's iput of the last reference)."""
        if not node.linked and node.nlookup <= 0 and node.nopen <= 0:
            self.inodes.pop(node.ino, None)
            self.cached.pop(node, None)
            node.evict()

    # ------------------------------------------------------ open files --

    def file(self, fh: int) -> OpenFile:
        f = self.files.get(fh)
        if f is None:
            raise OSError(errno.EBADF, f"no open file {fh}")
        return f

    def new_fh(self, of: OpenFile) -> int:
        fh = of.fh = self._next_fh
        self._next_fh += 1
        self.files[fh] = of
        of.node.nopen += 1
        return fh

    def close_file(self, fh: int) -> None:
        of = self.files.pop(fh, None)
        if of is None:
            return
        node = of.node
        node.nopen -= 1
        try:
            if node.release is not None:
                node.release(of)
        finally:
            self.drop_if_unused(node)

    # --------------------------------------------------------- callers --

    def caller(self, req) -> Caller:
        tid, uid, gid = F.req_ctx(req)
        return Caller(tid, uid, gid, self.resolve_own)

    def resolve_own(self, mnt_id: int, ino: int, readable: bool, writable: bool):
        """FileRef for a caller fd that is one of our own files, else None."""
        if self.session is None or mnt_id != self.session.mount_id:
            return None
        node = self.inodes.get(ino)
        if node is None:
            return FileRef("gmemfs-other", None, readable, writable, node=None)
        return node.file_ref(readable, writable)

    # ------------------------------------------------------- the host --

    def check_host(self) -> None:
        """After an emulated TDX machine check the host is dead: every call on
        the mount fails with EIO until remount (MNT/.state stays readable)."""
        if self.events.host_dead:
            raise OSError(errno.EIO, "the emulated host is dead: " + self.events.host_dead_reason)

    @property
    def direct_io_mmap(self) -> bool:
        # FUSE_DIRECT_IO_ALLOW_MMAP was patched into the INIT reply (known once
        # that reply is written, i.e. after init() returned)
        return self.session is not None and bool(self.session.init_flags2_patched() & (1 << 4))

    def spawn(self, async_fn, *args) -> None:
        """Run ``async_fn(*args)`` as a trio task of the session; it replies."""
        self.session.spawn(async_fn, *args)

    # ---------------------------------------------- the kernel's cache --

    async def invalidate(self, node: Node, off: int = 0, length: int = 0):
        """Write back and drop the kernel's cached pages of ``node`` in the range
        (length 0 = to EOF). Runs in a worker thread: the kernel may send us
        the write-back of dirty pages, which this loop must serve meanwhile."""
        if self.session is None or node not in self.cached:
            return
        if off == 0 and length == 0:
            del self.cached[node]
        await trio.to_thread.run_sync(self.session.notify_inval_inode, node.ino, off, length)

    async def coherent(self, access):
        """Run ``access()`` (an emulated device access) on an exact
        guest_memfd model and return its value: before it, every guest_memfd
        page the kernel caches is written back and dropped (the device sees
        what processes wrote through their mappings, without msync); after
        it, pages faulted in meanwhile are dropped again (a device write must
        not be shadowed by a stale cached copy)."""
        nodes = list(self.cached)
        for n in nodes:
            await self.invalidate(n)
        try:
            return access()
        finally:
            for n in nodes:
                if n in self.cached:
                    await self.invalidate(n)

    # --------------------------------------------------------- logging --

    def ioctl_failed(self, cmd, tid, e: OSError) -> None:
        """A failed ioctl: counted; logged (and marked logged) with --debug."""
        self.stats["ioctl_errors"] += 1
        if self.debug:
            self.log_ioctl(cmd, tid, e.errno, e.strerror)
            e.gmemfs_logged = True

    def log_ioctl(self, cmd, tid, err, reason) -> None:
        if self.debug:
            name = self._cmd_names.get(cmd, f"{cmd:#x}")
            res = "0" if not err else errno.errorcode.get(err, str(err))
            log.debug("ioctl %s pid=%d -> %s%s", name, tid, res, f" ({reason})" if reason else "")
