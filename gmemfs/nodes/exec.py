"""The files of fd-returning ioctls, for `gmemfs exec` (node kinds ExecDir,
ObjectNode) and the supervisor's GMEMFS_EXEC_CALL (`exec_call`).

A FUSE server cannot put an fd into the calling process. Under
`gmemfs exec` (gmemfs/exec.py) the supervisor intercepts the ioctls whose
kernel form returns one (seccomp user notification) and sends them here with
GMEMFS_EXEC_CALL, issued on its copy of the caller's fd (ioctl_abi/uapi.h).
The call runs the node's ``exec_ioctl(of, cmd, arg, caller, files)`` for the
stopped caller thread; a model that makes a new file (dispatch's
``UCmd.new_file``, the VM and the guest_memfd makers) asks ``files``, the
`Installer`, which gives the object a node (its kind registered with
`object_kind`) and a one-time name under MNT/.exec/. The supervisor opens it
and installs that fd in the caller: the fd is a real fd on a gmemfs file
standing for the object.

An object file, like the kernel's anonymous inode file, has no name once it
is open and cannot be opened again (a reopen, e.g. through /proc/PID/fd, is
ENXIO). Its node goes when the last fd (or mapping) is gone, and its kind's
``_closed()`` tells the model (the file's reference on the object, and on the
iommufd context for the iommufd kinds, are dropped there).

Who may call: root, or a requester whose uid is the caller's real,
effective, saved and filesystem uid (who may read its memory anyway, as
ptrace would allow), and only while that thread is stopped in exactly
``ioctl(fd, cmd, arg)`` (/proc/TID/syscall).
"""
from __future__ import annotations

import errno
import logging
import os
import platform
import secrets
import stat

import ioctl_abi as abi
from gmemfs import fuse_ll as F
from gmemfs.caller import Caller, FileRef

from .base import Dir, Node

log = logging.getLogger("gmemfs.exec")

EXEC_DIR_INO = 9
PLACEHOLDER_FD = 0xFFFFFFFF          # in the caller's struct until the fd is installed
PASS = object()                      # exec_ioctl: not an fd-returning form, run it as is
NR_IOCTL = {"x86_64": 16, "aarch64": 29}.get(platform.machine())
NR_MMAP = {"x86_64": 9, "aarch64": 222}.get(platform.machine())

# model class -> (node class, the ioctl returns the fd, newfd flags)
_KINDS: dict[type, tuple[type, bool, int]] = {}


def object_kind(model_cls: type, returns_fd: bool = False, cloexec: bool = True):
    """Register the node kind standing for objects of ``model_cls``."""
    def register(node_cls):
        _KINDS[model_cls] = (node_cls, returns_fd, os.O_CLOEXEC if cloexec else 0)
        return node_cls
    return register


def _kind_of(obj):
    for cls in type(obj).__mro__:
        if cls in _KINDS:
            return _KINDS[cls]
    raise OSError(errno.EOPNOTSUPP, f"no file kind for {type(obj).__name__}")


class ObjectNode(Node):
    """A file standing for one model object (``obj``), opened once through
    its MNT/.exec/ name."""

    attr_timeout = 0.0

    def __init__(self, mount, obj, uid: int, gid: int, name: str = ""):
        super().__init__(mount, name, stat.S_IFREG | 0o600, uid=uid, gid=gid)
        self.obj = obj
        self.opened = False
        self.linked = False

    def open(self, of):
        if self.opened:
            # like an anonymous inode: no second open of the same file
            raise OSError(errno.ENXIO, "the file of an fd-returning ioctl cannot be reopened")
        self.opened = True
        self.mount.exec_dir._claim(self)
        of.direct_io = of.nonseekable = True
        self._opened(of)

    def release(self, of):
        try:
            self._closed(of)
        finally:
            # nothing names it any more: it goes now (a FORGET for it later
            # is ignored), whatever the kernel's dentry cache still holds
            self.nlookup = 0

    def _opened(self, of) -> None:
        """The file was opened (it is about to be installed in the caller)."""

    def _closed(self, of) -> None:
        """The last fd on the file is gone."""

    def file_ref(self, readable, writable):
        return FileRef("gmemfs-other", None, readable, writable, node=self, obj=self.obj)


class ExecDir(Dir):
    """MNT/.exec/: the one-time names of object files waiting to be opened
    by the supervisor; it lists nothing (names are 120-bit random)."""

    needs_host = True

    def __init__(self, mount):
        super().__init__(mount, ".exec", stat.S_IFDIR | 0o711, ino=EXEC_DIR_INO)
        mount.exec_dir = self

    def entries(self):
        return []

    def _name(self, node: ObjectNode) -> str:
        for name in [n for n, o in self.children.items() if _gone(o)]:
            self._drop(name)
        node.name = secrets.token_hex(15)
        node.linked = True
        self.mount.add(node, self)
        return node.name

    def _claim(self, node: ObjectNode) -> None:
        if self.children.get(node.name) is node:
            del self.children[node.name]
        node.linked = False

    def _drop(self, name: str) -> None:
        node = self.children.pop(name)
        node.linked = False
        self.mount.drop_if_unused(node)


def _gone(node) -> bool:
    return getattr(node.obj, "dead", False)


class Installer:
    """What a model asks for a new file (dispatch.UCmd.new_file): it returns
    the fd number to store for now; the real one comes from the supervisor."""

    def __init__(self):
        self.pending: list[tuple[object, int | None]] = []

    def new(self, obj, addr: int | None) -> int:
        if self.pending:
            raise OSError(errno.EINVAL, "one new fd per ioctl")
        self.pending.append((obj, addr))
        return PLACEHOLDER_FD


# ------------------------------------------------------------ the call

def _target_ids(tid: int):
    """(tgid, [real, effective, saved, fs uid], [gids]) of thread ``tid``."""
    tgid, uids, gids = None, None, None
    with open(f"/proc/{tid}/status") as f:
        for line in f:
            if line.startswith("Tgid:"):
                tgid = int(line.split()[1])
            elif line.startswith("Uid:"):
                uids = [int(x) for x in line.split()[1:5]]
            elif line.startswith("Gid:"):
                gids = [int(x) for x in line.split()[1:5]]
    return tgid, uids, gids


def _check_stopped_in(tid: int, nr, args, what: str) -> None:
    """Thread ``tid`` is stopped in syscall ``nr`` with exactly ``args``
    (32-bit ones compared on their low 32 bits), per /proc/TID/syscall."""
    try:
        with open(f"/proc/{tid}/syscall") as f:
            fields = f.read().split()
    except OSError as e:
        raise OSError(errno.ESRCH, f"thread {tid}: {e.strerror}") from None
    try:
        got = [int(fields[0])] + [int(x, 16) for x in fields[1:1 + len(args)]]
    except (ValueError, IndexError):
        got = None
    ok = nr is not None and got is not None and len(got) == len(args) + 1 and got[0] == nr
    if ok:
        for have, (want, bits) in zip(got[1:], args):
            if have & ((1 << bits) - 1) != want:
                ok = False
    if not ok:
        raise OSError(errno.EPERM, f"thread {tid} is not stopped in {what}")


def _target(req, creds, tid: int):
    """The credentials of thread ``tid`` if the requester may act for it:
    root, or the thread's own real, effective, saved and fs uid."""
    req_tid, req_uid, _ = creds if creds else F.req_ctx(req)
    try:
        tgid, uids, gids = _target_ids(tid)
    except OSError:
        raise OSError(errno.ESRCH, f"no thread {tid}") from None
    if req_uid != 0 and any(u != req_uid for u in uids):
        raise OSError(errno.EPERM, f"pid {req_tid} may not act for thread {tid}")
    return tgid, uids, gids


def exec_call(mount, req, of, in_data: bytes, creds) -> None:
    """GMEMFS_EXEC_CALL from the supervisor on its copy of the caller's fd."""
    call = abi.from_bytes("gmemfs_exec_call", in_data)
    tid = call.tid
    _, uids, gids = _target(req, creds, tid)
    _check_stopped_in(tid, NR_IOCTL, [(call.fd, 32), (call.cmd, 32), (call.arg, 64)],
                      f"ioctl({call.fd}, {call.cmd:#x}, {call.arg:#x})")
    caller = Caller(tid, uids[3], gids[3], mount.resolve_own)
    node = of.node
    fn = getattr(node, "exec_ioctl", None)
    files = Installer()
    call.status, call.error, call.value, call.flags = abi.GMEMFS_EXEC_DONE, 0, 0, 0
    try:
        ret = PASS if fn is None else fn(of, call.cmd, call.arg, caller, files)
    except OSError as e:
        call.error = e.errno or errno.EIO
        ret = None
    if ret is PASS:
        call.status = abi.GMEMFS_EXEC_PASS
    elif not call.error:
        call.value = (ret or 0) & ((1 << 64) - 1)
        if files.pending:
            obj, addr = files.pending[0]
            node_cls, returns_fd, nflags = _kind_of(obj)
            onode = node_cls(mount, obj, caller.uid, caller.gid)
            token = mount.exec_dir._name(onode)
            call.status = abi.GMEMFS_EXEC_NEWFD
            call.newfd_flags = nflags
            call.fd_addr = addr or 0
            if returns_fd:
                call.flags = abi.GMEMFS_EXEC_NEWFD_RETURN
            call.token = list(token.encode().ljust(abi.GMEMFS_EXEC_TOKEN_LEN, b"\0"))
    mount.log_ioctl(call.cmd, tid, call.error, "via gmemfs exec" +
                    (" (new fd)" if call.status == abi.GMEMFS_EXEC_NEWFD else ""))
    F.reply_ioctl(req, 0, abi.to_bytes(call))


def exec_mmap(mount, req, of, in_data: bytes, creds) -> None:
    """GMEMFS_EXEC_MMAP from the supervisor on its copy of the caller's fd:
    the node's ``exec_mmap`` checks the mapping (raises the kernel's errno)
    and records it; 0 lets the kernel map the file."""
    call = abi.from_bytes("gmemfs_exec_mmap", in_data)
    tid = call.tid
    tgid, uids, gids = _target(req, creds, tid)
    _check_stopped_in(tid, NR_MMAP, [(call.addr, 64), (call.length, 64), (call.prot, 32),
                                     (call.flags, 32), (call.fd, 32), (call.offset, 64)],
                      f"mmap(.., {call.length:#x}, {call.prot:#x}, {call.flags:#x}, "
                      f"{call.fd}, {call.offset:#x})")
    fn = of.node.exec_mmap
    call.error = 0
    if fn is not None:
        caller = Caller(tid, uids[3], gids[3], mount.resolve_own)
        try:
            fn(of, call.offset, call.length, call.prot, call.flags, caller, tgid)
        except OSError as e:
            call.error = e.errno or errno.EIO
    log.debug("exec mmap pid %d offset %#x length %#x -> %s", tid, call.offset, call.length,
              errno.errorcode.get(call.error, call.error) if call.error else "mapped")
    F.reply_ioctl(req, 0, abi.to_bytes(call))


def install(mount) -> None:
    mount.add(ExecDir(mount), mount.root)
    mount.exec_call = exec_call
    mount.exec_mmap = exec_mmap
