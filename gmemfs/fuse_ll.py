"""A thin trio driver for libfuse3's low-level API (cffi module gmemfs._fuse_ll).

The session fd is non-blocking; the loop waits until it is readable, then
``gmemfs_drain`` receives and processes every queued request in C, calling
back into Python once per request. A handler either replies before it
returns (the common case: no trio task, ~14 us round trip) or calls
``session.spawn(async_fn, ...)`` and replies later; other requests keep
flowing meanwhile.

Every callback is wrapped: ``OSError`` becomes the reply errno (logged at
debug level with its reason); any other exception is a server bug, logged
with a traceback and answered EIO. A request is never left unanswered by an
exception, so a client never hangs on a server bug.

Operations are delegated to an ``ops`` object (gmemfs.fs.GmemFS) whose
methods receive ``req`` and reply through the ``reply_*`` functions below.
"""
from __future__ import annotations

import errno
import logging
import os
import signal

import trio

from gmemfs._fuse_ll import ffi, lib

log = logging.getLogger("gmemfs.fuse")

_ops = None          # the filesystem object (one session per process)
_session = None      # the Session


# ---------------------------------------------------------------- replies --

def reply_err(req, err: int) -> None:
    lib.fuse_reply_err(req, err)


def reply_none(req) -> None:
    lib.fuse_reply_none(req)


def reply_buf(req, data: bytes) -> None:
    lib.fuse_reply_buf(req, data, len(data))


def reply_write(req, count: int) -> None:
    lib.fuse_reply_write(req, count)


def reply_ioctl(req, result: int, data: bytes = b"") -> None:
    lib.fuse_reply_ioctl(req, result, data if data else ffi.NULL, len(data))


def reply_poll(req, revents: int) -> None:
    lib.fuse_reply_poll(req, revents)


def reply_attr(req, a, timeout: float) -> None:
    lib.gmemfs_reply_attr(req, a.ino, a.mode, a.nlink, a.size, a.uid, a.gid, a.blksize,
                          a.mtime_ns, timeout)


def reply_entry(req, a, timeout: float) -> None:
    lib.gmemfs_reply_entry(req, a.ino, a.mode, a.nlink, a.size, a.uid, a.gid, a.blksize,
                           a.mtime_ns, timeout, timeout)


# Every file is opened with FOPEN_NOFLUSH: close() of one of our files must
# never wait for the server. The server itself closes fds of its own files
# (a caller's fd copied with pidfd_getfd to identify it); with a FLUSH round
# trip that close would wait for the very loop that issues it.

def reply_create(req, a, timeout: float, fi, fh: int, direct_io=False, nonseekable=False,
                 keep_cache=False) -> None:
    fi.fh = fh
    lib.gmemfs_fi_set(fi, direct_io, keep_cache, nonseekable, 1)
    lib.gmemfs_reply_create(req, a.ino, a.mode, a.nlink, a.size, a.uid, a.gid, a.blksize,
                            a.mtime_ns, timeout, timeout, fi)


def reply_open(req, fi, fh: int, direct_io=False, nonseekable=False, keep_cache=False) -> None:
    fi.fh = fh
    lib.gmemfs_fi_set(fi, direct_io, keep_cache, nonseekable, 1)
    lib.fuse_reply_open(req, fi)


def reply_statfs(req, blocks=0, bfree=0, files=0, ffree=0, bsize=4096, namemax=255) -> None:
    lib.gmemfs_reply_statfs(req, blocks, bfree, files, ffree, bsize, namemax)


def reply_readdir(req, entries, size: int, off: int, plus: bool) -> int:
    """entries: list of (name, attr) in a stable order; ``off`` is the index to
    start at. Returns the index after the last entry sent (readdirplus: the
    kernel now holds one more lookup of each sent entry but "." and "..")."""
    buf = ffi.new("char[]", size) if size else ffi.NULL
    pos = 0
    for idx in range(off, len(entries)):
        name, a = entries[idx]
        need = lib.gmemfs_add_direntry(req, buf + pos, size - pos, name.encode(), a.ino, a.mode,
                                       idx + 1, plus, a.size, a.nlink, a.uid, a.gid, a.blksize,
                                       a.mtime_ns, 0.0)
        if need > size - pos:
            lib.fuse_reply_buf(req, buf, pos)
            return idx
        pos += need
    lib.fuse_reply_buf(req, buf, pos)
    return len(entries)


def req_ctx(req):
    """(tid, uid, gid) of the requesting thread."""
    c = lib.fuse_req_ctx(req)
    return c.pid, c.uid, c.gid


# -------------------------------------------------------------- callbacks --

def _str(cname) -> str:
    """A name from the kernel (bytes, not necessarily UTF-8) as a str."""
    return ffi.string(cname).decode(errors="surrogateescape")


server_bugs = 0      # exceptions other than OSError answered EIO (MNT/.state/server.json)


def _fail(req, e: BaseException, what: str) -> None:
    global server_bugs
    if isinstance(e, OSError) and e.errno:
        if log.isEnabledFor(logging.DEBUG) and not getattr(e, "gmemfs_logged", False):
            log.debug("%s -> %s (%s)", what, errno.errorcode.get(e.errno, e.errno), e.strerror)
        lib.fuse_reply_err(req, e.errno)
    else:
        server_bugs += 1
        log.exception("server bug in %s; answered EIO", what)
        lib.fuse_reply_err(req, errno.EIO)


@ffi.def_extern()
def py_init(userdata, conn):
    try:
        lib.gmemfs_conn_setup(conn, 0)
        _ops.init()
    except BaseException:
        log.exception("init failed")


@ffi.def_extern()
def py_destroy(userdata):
    try:
        _ops.destroy()
    except BaseException:
        log.exception("destroy failed")


@ffi.def_extern()
def py_lookup(req, parent, name):
    try:
        _ops.lookup(req, parent, _str(name))
    except BaseException as e:
        _fail(req, e, "lookup")


@ffi.def_extern()
def py_forget(req, ino, nlookup):
    try:
        _ops.forget(ino, nlookup)
    except BaseException:
        log.exception("forget failed")
    lib.fuse_reply_none(req)


@ffi.def_extern()
def py_getattr(req, ino, fi):
    try:
        _ops.getattr(req, ino, fi.fh if fi != ffi.NULL else None)
    except BaseException as e:
        _fail(req, e, "getattr")


@ffi.def_extern()
def py_setattr(req, ino, to_set, mode, size, fi):
    try:
        _ops.setattr(req, ino, to_set, mode, size, fi.fh if fi != ffi.NULL else None)
    except BaseException as e:
        _fail(req, e, "setattr")


@ffi.def_extern()
def py_unlink(req, parent, name):
    try:
        _ops.unlink(req, parent, _str(name))
    except BaseException as e:
        _fail(req, e, "unlink")


@ffi.def_extern()
def py_mknod(req, parent, name, mode, rdev):
    try:
        _ops.mknod(req, parent, _str(name), mode)
    except BaseException as e:
        _fail(req, e, "mknod")


@ffi.def_extern()
def py_mkdir(req, parent, name, mode):
    _fail(req, OSError(errno.EPERM, "gmemfs has a fixed directory layout"), "mkdir")


@ffi.def_extern()
def py_rmdir(req, parent, name):
    _fail(req, OSError(errno.EPERM, "gmemfs has a fixed directory layout"), "rmdir")


@ffi.def_extern()
def py_rename(req, parent, name, newparent, newname, flags):
    try:
        _ops.rename(req, parent, _str(name), newparent,
                    _str(newname), flags)
    except BaseException as e:
        _fail(req, e, "rename")


@ffi.def_extern()
def py_open(req, ino, fi):
    try:
        _ops.open(req, ino, fi)
    except BaseException as e:
        _fail(req, e, "open")


@ffi.def_extern()
def py_create(req, parent, name, mode, fi):
    try:
        _ops.create(req, parent, _str(name), mode, fi)
    except BaseException as e:
        _fail(req, e, "create")


@ffi.def_extern()
def py_read(req, ino, size, off, fi):
    try:
        # direct I/O reads (read(2) on an FOPEN_DIRECT_IO file) carry the caller's
        # lock owner; page-cache reads (mmap faults, readahead) never do.
        _ops.read(req, ino, fi.fh, size, off, fi.lock_owner != 0)
    except BaseException as e:
        _fail(req, e, "read")


@ffi.def_extern()
def py_write(req, ino, buf, size, off, fi, writepage):
    try:
        _ops.write(req, ino, fi.fh, ffi.buffer(buf, size), off, bool(writepage))
    except BaseException as e:
        _fail(req, e, "write")


@ffi.def_extern()
def py_flush(req, ino, fi):
    try:
        _ops.flush(req, ino, fi.fh)
    except BaseException as e:
        _fail(req, e, "flush")


@ffi.def_extern()
def py_release(req, ino, fi):
    try:
        _ops.release(ino, fi.fh)
    except BaseException:
        log.exception("release failed")
    lib.fuse_reply_err(req, 0)


@ffi.def_extern()
def py_fsync(req, ino, datasync, fi):
    try:
        _ops.fsync(req, ino, fi.fh, datasync)
    except BaseException as e:
        _fail(req, e, "fsync")


@ffi.def_extern()
def py_opendir(req, ino, fi):
    try:
        _ops.opendir(req, ino, fi)
    except BaseException as e:
        _fail(req, e, "opendir")


@ffi.def_extern()
def py_readdir(req, ino, size, off, fi, plus):
    try:
        _ops.readdir(req, ino, size, off, bool(plus))
    except BaseException as e:
        _fail(req, e, "readdir")


@ffi.def_extern()
def py_releasedir(req, ino, fi):
    lib.fuse_reply_err(req, 0)


@ffi.def_extern()
def py_statfs(req, ino):
    try:
        _ops.statfs(req, ino)
    except BaseException as e:
        _fail(req, e, "statfs")


@ffi.def_extern()
def py_getxattr(req, ino, name, size):
    # ENOSYS makes the kernel stop asking (it answers EOPNOTSUPP itself from
    # then on); otherwise every fallocate costs a GETXATTR round trip
    # (security.capability, for file_remove_privs)
    lib.fuse_reply_err(req, errno.ENOSYS)


@ffi.def_extern()
def py_listxattr(req, ino, size):
    # an empty list, as the kernel answers for a guest_memfd
    if size == 0:
        lib.fuse_reply_xattr(req, 0)
    else:
        lib.fuse_reply_buf(req, ffi.NULL, 0)


@ffi.def_extern()
def py_access(req, ino, mask):
    lib.fuse_reply_err(req, 0)


_uintptr_t = ffi.typeof("uintptr_t")
_char_p = ffi.typeof("char *")


@ffi.def_extern()
def py_ioctl(req, ino, cmd, arg, fi, flags, in_buf, in_bufsz, out_bufsz, pre, pre_len,
             tid, uid, gid):
    try:
        data = ffi.unpack(ffi.cast(_char_p, in_buf), in_bufsz) if in_bufsz else b""
        prefetch = ffi.unpack(ffi.cast(_char_p, pre), pre_len) if pre_len > 0 else None
        _ops.ioctl(req, ino, fi.fh, cmd, int(ffi.cast(_uintptr_t, arg)), flags, data, out_bufsz,
                   prefetch, (tid, uid, gid))
    except BaseException as e:
        _fail(req, e, f"ioctl {cmd:#x}")


@ffi.def_extern()
def py_poll(req, ino, fi, ph):
    try:
        _ops.poll(req, ino, fi.fh, ph)
    except BaseException as e:
        if ph != ffi.NULL:
            lib.fuse_pollhandle_destroy(ph)
        _fail(req, e, "poll")


@ffi.def_extern()
def py_fallocate(req, ino, mode, offset, length, fi):
    try:
        _ops.fallocate(req, ino, fi.fh, mode, offset, length)
    except BaseException as e:
        _fail(req, e, "fallocate")


@ffi.def_extern()
def py_retrieve_reply(req, cookie, ino, offset, data, size):
    try:
        _ops.retrieve_reply(int(ffi.cast("uintptr_t", cookie)), ino, offset,
                            ffi.unpack(ffi.cast("char *", data), size))
    except BaseException:
        log.exception("retrieve_reply failed")
    lib.fuse_reply_none(req)


# ---------------------------------------------------------------- session --

class MountError(Exception):
    """The mount cannot happen; the message says why."""


def check_mountpoint(mountpoint: str) -> str:
    mp = os.path.abspath(mountpoint)
    if not os.path.exists("/dev/fuse"):
        raise MountError("/dev/fuse does not exist: load the fuse module, or run the container "
                         "with --device /dev/fuse")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise MountError("/dev/fuse is not readable and writable by this user")
    if not os.path.isdir(mp):
        raise MountError(f"mount point {mp} does not exist or is not a directory")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == mp:
                raise MountError(f"mount point {mp} is busy: something is already mounted there "
                                 f"(unmount it first: fusermount3 -u {mp})")
    return mp


def _mountinfo_of(mountpoint: str):
    """(mount id, (major, minor) of its superblock) of the topmost mount at
    ``mountpoint`` (/proc/self/mountinfo; never a stat of our own mount)."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == mountpoint:
                major, minor = (int(x) for x in fields[2].split(":"))
                found = (int(fields[0]), (major, minor))   # the last one wins
    return found


class Session:
    def __init__(self, ops, mountpoint: str, fsname="gmemfs", mount_options=(), debug=False):
        global _ops, _session
        self.ops = ops
        self.mountpoint = check_mountpoint(mountpoint)
        opts = ["fsname=" + fsname, "subtype=gmemfs", "noexec", "nosuid", "nodev",
                "default_permissions"]
        opts += [o for o in mount_options if o]
        argv = [b"gmemfs", b"-o", ",".join(opts).encode()]
        if debug and os.environ.get("GMEMFS_LIBFUSE_DEBUG"):
            argv.append(b"-d")
        self._argv_keep = [ffi.new("char[]", a) for a in argv]
        self._argv = ffi.new("char *[]", self._argv_keep)
        self.se = ffi.NULL
        self.mounted = False
        self.nursery = None
        self.mount_id = None
        self.dev = None                # (major, minor) of the mounted superblock
        self.direct_io_mmap = False
        _ops, _session = ops, self

    def mount(self, allow_mmap_dio=True):
        if not self.se:
            self.se = lib.gmemfs_session_new(len(self._argv_keep), self._argv)
            if self.se == ffi.NULL:
                raise MountError("fuse_session_new failed (bad mount options?)")
        rc = lib.gmemfs_session_mount(self.se, self.mountpoint.encode(), int(allow_mmap_dio))
        if rc != 0:
            if os.geteuid() != 0:
                raise MountError(f"cannot mount on {self.mountpoint}: not permitted (run as root, "
                                 "or install fuse3 so that fusermount3 is available)")
            raise MountError(f"cannot mount on {self.mountpoint} (libfuse said why above)")
        self.mounted = True
        self.mount_id, self.dev = _mountinfo_of(self.mountpoint)

    def spawn(self, async_fn, *args):
        """Run ``async_fn(*args)`` as a trio task; it must reply to its request."""
        self.nursery.start_soon(async_fn, *args)

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED):
        fd = lib.fuse_session_fd(self.se)
        # the signal handlers are in place before the first request (INIT) is
        # read, so nobody can see the mount before SIGINT/SIGTERM unmount it
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, \
                trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._signals, signals, scope)
                task_status.started()
                await self._loop(fd, nursery)

    async def _loop(self, fd, nursery):
        try:
            while not lib.fuse_session_exited(self.se):
                await trio.lowlevel.wait_readable(fd)
                n = lib.gmemfs_drain(self.se, 128)
                if n == 0 and lib.fuse_session_exited(self.se):
                    break       # unmounted (fusermount3 -u, umount)
                if n < 0 and -n not in (errno.EAGAIN, errno.EINTR):
                    log.error("reading /dev/fuse failed: %s", os.strerror(-n))
                    break
                await trio.lowlevel.checkpoint()
        finally:
            nursery.cancel_scope.cancel()

    async def _signals(self, signals, cancel_scope):
        async for signum in signals:
            log.info("signal %d: unmounting %s", signum, self.mountpoint)
            cancel_scope.cancel()
            return

    def unmount(self):
        if self.se != ffi.NULL:
            if self.mounted:
                lib.fuse_session_unmount(self.se)
                self.mounted = False
            lib.fuse_session_destroy(self.se)
            self.se = ffi.NULL

    # ------------------------------------------------------ notifications --
    # inval_inode may make the kernel send us requests (writeback of dirty
    # pages) and wait for them: call it from a worker thread
    # (trio.to_thread.run_sync), never from the loop itself.

    def notify_inval_inode(self, ino: int, off: int, length: int) -> int:
        return lib.fuse_lowlevel_notify_inval_inode(self.se, ino, off, length)

    def notify_inval_entry(self, parent: int, name: str) -> int:
        b = name.encode()
        return lib.fuse_lowlevel_notify_inval_entry(self.se, parent, b, len(b))

    def notify_store(self, ino: int, off: int, data: bytes) -> int:
        return lib.gmemfs_notify_store(self.se, ino, off, data if data else ffi.NULL, len(data))

    def notify_poll(self, ph) -> None:
        lib.fuse_lowlevel_notify_poll(ph)
        lib.fuse_pollhandle_destroy(ph)

    @staticmethod
    def init_flags2_patched() -> int:
        return lib.gmemfs_init_flags2_patched()
