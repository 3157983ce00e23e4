"""Access to the process that issued a FUSE request: its memory and its fds.

FUSE passes iommufd's ``_IO`` ioctls in restricted mode with only the raw user
pointer, so handlers read and write the caller's structs (and any pointer
inside them) with ``process_vm_readv``/``process_vm_writev`` on the requesting
thread. ``process_vm_writev`` fails on read-only pages exactly where the
kernel's copy_to_user would (``/proc/<pid>/mem`` would not), so errno fidelity
holds: a bad pointer is EFAULT.

fd numbers inside structs (``MAP_FILE.fd``) belong to the caller: they are
resolved with ``pidfd_open`` + ``pidfd_getfd`` on the caller, never on anyone
else. gmemfs's own files are recognised from ``/proc/self/fdinfo`` (mount id and
inode number) and are never ``fstat``-ed: a stat of our own mount from the
server loop would wait for the loop itself.

See docs/ARCHITECTURE.md for the duck type every handler relies on.
"""
from __future__ import annotations

import errno
import os

from gmemfs._fuse_ll import ffi, lib

TMPFS_MAGIC = 0x01021994
HUGETLBFS_MAGIC = 0x958458F6
PIDFD_THREAD = os.O_EXCL  # Linux >= 6.9: a pidfd for a thread, not only a leader

_buf_cache: dict[int, object] = {}


def _scratch(size: int):
    """A reusable C buffer of at least ``size`` bytes (the server is single-threaded)."""
    cap = 64
    while cap < size:
        cap <<= 1
    buf = _buf_cache.get(cap)
    if buf is None:
        buf = _buf_cache[cap] = ffi.new("char[]", cap)
    return buf


_small = ffi.new("char[]", 256)     # the common case: an ioctl struct


def vm_read(pid: int, addr: int, size: int) -> bytes:
    if size <= 0 or addr < 0 or addr + size > 1 << 64:
        if size == 0 and addr >= 0:
            return b""
        raise OSError(errno.EFAULT, "bad user range")
    buf = _small if size <= 256 else _scratch(size)
    n = lib.gmemfs_vm_read(pid, addr, buf, size)
    if n < 0:
        raise OSError(errno.EFAULT if -n in (errno.EFAULT, errno.ENOMEM, errno.EINVAL) else -n,
                      f"cannot read {size} bytes at {addr:#x} in pid {pid}")
    return ffi.unpack(buf, size)


def vm_write(pid: int, addr: int, data: bytes) -> None:
    size = len(data)
    if addr < 0 or addr + size > 1 << 64:
        raise OSError(errno.EFAULT, "bad user range")
    if size == 0:
        return
    n = lib.gmemfs_vm_write(pid, addr, ffi.from_buffer(data), size)
    if n < 0:
        raise OSError(errno.EFAULT if -n in (errno.EFAULT, errno.ENOMEM, errno.EINVAL) else -n,
                      f"cannot write {size} bytes at {addr:#x} in pid {pid}")


def tgid_of(tid: int) -> int:
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return tid


def pidfd_open(tid: int) -> int:
    fd = lib.gmemfs_pidfd_open(tid, PIDFD_THREAD)
    if fd == -errno.EINVAL:  # kernel without PIDFD_THREAD: use the thread group
        fd = lib.gmemfs_pidfd_open(tgid_of(tid), 0)
    if fd < 0:
        raise OSError(-fd, f"pidfd_open({tid})")
    return fd


def read_fdinfo(fd: int, pid: str | int = "self") -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


# Capability numbers (include/uapi/linux/capability.h) the iommufd model asks about.
CAPS = {"CAP_IPC_LOCK": 14, "CAP_SYS_RAWIO": 17, "CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24}


def thread_has_cap(tid: int, cap: str) -> bool:
    """What the kernel's capable(cap) says for thread ``tid``: the bit is in the
    thread's effective set (``CapEff:`` of /proc/TID/status, per thread) and the
    thread lives in the initial user namespace (capable() checks init_user_ns;
    a thread of a child user namespace is never capable)."""
    bit = CAPS[cap]
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    eff = int(line.split()[1], 16)
                    break
            else:
                return False
        if not eff >> bit & 1:
            return False
        return os.readlink(f"/proc/{tid}/ns/user") == os.readlink("/proc/1/ns/user")
    except OSError:
        return False


PM_PRESENT = 1 << 63
PM_FILE = 1 << 61          # /proc/PID/pagemap: file page or shared-anonymous page


def _maps_vmas(pid: int, start: int, end: int):
    """VMAs of ``pid`` intersecting [start, end), ascending:
    (lo, hi, perms, file offset, (major, minor), inode)."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if hi <= start:
                continue
            if lo >= end:
                break
            maj, mnr = (int(x, 16) for x in parts[3].split(":"))
            out.append((lo, hi, parts[1], int(parts[2], 16), (maj, mnr), int(parts[4])))
    return out


def vma_backing(pid: int, addr: int, size: int, own_dev=None):
    """What backs [addr, addr+size) of process ``pid``, as runs
    ``(start, end, key, base)``: the byte at ``v`` in [start, end) is byte
    ``base + (v - start)`` of the memory named ``key``:

    * ``("file", (st_dev, st_ino))``, base = file offset: a shared mapping of a
      file (memfd, tmpfs, hugetlbfs, shared anonymous memory, any file), and a
      page of a private file mapping that was not copied on write
      (/proc/PID/pagemap: not present, or a file page);
    * ``("mm", pid)``, base = the address itself: private memory (anonymous,
      copied-on-write pages);
    * ``("gmemfs", ino)``: a mapping of this gmemfs mount (``own_dev``), whose
      files are never stat-ed.

    The file identity is the device and inode /proc/PID/maps prints (the
    superblock's, as fstat gives for shmem/hugetlbfs/most disks); where they
    differ from the file's own (fstat of /proc/PID/map_files/..., which follows
    to the mapped file) the map_files answer wins. OSError(EFAULT) if part of
    the range is not mapped (what get_user_pages would say)."""
    end = addr + size
    out = []
    pos = addr
    for lo, hi, perms, off, dev, ino in _maps_vmas(pid, addr, end):
        if lo > pos:
            break
        s, e = pos, min(hi, end)
        if ino == 0:
            out.append((s, e, ("mm", pid), s))
        elif own_dev is not None and dev == tuple(own_dev):
            out.append((s, e, ("gmemfs", ino), off + (s - lo)))
        else:
            ident = (os.makedev(*dev), ino)
            try:
                st = os.stat(f"/proc/{pid}/map_files/{lo:x}-{hi:x}")
                ident = (st.st_dev, st.st_ino)
            except OSError:
                pass
            key = ("file", ident)
            if perms[3] == "s":
                out.append((s, e, key, off + (s - lo)))
            else:
                out.extend(_private_file_runs(pid, s, e, lo, off, key))
        pos = e
        if pos >= end:
            return out
    raise OSError(errno.EFAULT, f"[{pos:#x}, {end:#x}) of pid {pid} is not mapped")


def _private_file_runs(pid, s, e, lo, off, key):
    """Split a private file mapping by /proc/PID/pagemap: copied-on-write pages
    are the process's own, the others still the file's."""
    first, last = s >> 12, (e - 1) >> 12
    try:
        with open(f"/proc/{pid}/pagemap", "rb") as f:
            f.seek(first * 8)
            raw = f.read((last - first + 1) * 8)
    except OSError:
        raw = b""
    runs = []
    for i in range(last - first + 1):
        ent = int.from_bytes(raw[i * 8:i * 8 + 8], "little") if len(raw) >= i * 8 + 8 else 0
        anon = ent & PM_PRESENT and not ent & PM_FILE
        ps = max(s, (first + i) << 12)
        pe = min(e, (first + i + 1) << 12)
        k, base = (("mm", pid), ps) if anon else (key, off + (ps - lo))
        if runs and runs[-1][2] == k and runs[-1][3] + (runs[-1][1] - runs[-1][0]) == base:
            runs[-1] = (runs[-1][0], pe, k, runs[-1][3])
        else:
            runs.append((ps, pe, k, base))
    return runs


class ProcessMemory:
    """A process's memory, reachable later (IOMMU_IOAS_MAP by user VA).

    The server cannot pin another process's pages: if the process unmaps the
    range, accesses fault (EFAULT); if it exits, every access is EFAULT. A
    pidfd keeps the identity so a recycled pid is never read.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self._pidfd = lib.gmemfs_pidfd_open(pid, 0)

    def alive(self) -> bool:
        if self._pidfd < 0:
            return False
        try:
            # a pidfd becomes readable when the process exits
            import select
            r, _, _ = select.select([self._pidfd], [], [], 0)
            return not r
        except (OSError, ValueError):
            return False

    def check_access(self, addr: int, size: int, write: bool) -> None:
        """What pinning [addr, addr+size) would say: EFAULT unless every byte
        lies in a mapping the process can read (and write, for ``write``).
        One pass over /proc/PID/maps, however long the range."""
        if not self.alive():
            raise OSError(errno.EFAULT, f"process {self.pid} has exited")
        end = addr + size
        pos = addr
        try:
            with open(f"/proc/{self.pid}/maps") as f:
                for line in f:
                    rng, perms = line.split(None, 2)[:2]
                    lo, hi = (int(x, 16) for x in rng.split("-"))
                    if hi <= pos:
                        continue
                    if lo > pos:
                        break                       # a hole at pos
                    if perms[0] != "r" or (write and perms[1] != "w"):
                        break                       # not readable / not writable
                    pos = hi
                    if pos >= end:
                        return
        except OSError:
            pass
        raise OSError(errno.EFAULT, f"[{pos:#x}, {end:#x}) of pid {self.pid} is not "
                                    f"{'writable' if write else 'readable'} memory")

    def backing(self, addr: int, size: int, own_dev=None):
        """What backs [addr, addr+size): runs (start, end, key, base), see
        vma_backing; EFAULT if unmapped or the process has exited."""
        if not self.alive():
            raise OSError(errno.EFAULT, f"process {self.pid} has exited")
        try:
            return vma_backing(self.pid, addr, size, own_dev)
        except OSError as e:
            if e.errno == errno.EFAULT:
                raise
            raise OSError(errno.EFAULT, f"cannot read the mappings of pid {self.pid}") from e

    def pin_shared(self, addr: int, size: int) -> list:
        """What a long-term pin of [addr, addr+size) keeps alive beyond the
        process: the files behind its MAP_SHARED mappings (shared anonymous
        memory included), as [(start, end, FileRef, file offset of start)]
        reached through /proc/PID/map_files (needs CAP_SYS_ADMIN; [] without
        it: the range then stays reachable only while the process maps it)."""
        out = []
        end = addr + size
        try:
            vmas = _maps_vmas(self.pid, addr, end)
        except OSError:
            return out
        for lo, hi, perms, off, _dev, ino in vmas:
            if not ino or perms[3:4] != "s":
                continue
            writable = perms[1:2] == "w"
            try:
                local = os.open(f"/proc/{self.pid}/map_files/{lo:x}-{hi:x}",
                                os.O_RDWR if writable else os.O_RDONLY)
            except OSError:
                continue
            out.append((lo, hi, _host_ref(local, True, writable), off))
        return out

    def read(self, addr: int, size: int) -> bytes:
        if not self.alive():
            raise OSError(errno.EFAULT, f"process {self.pid} has exited")
        return vm_read(self.pid, addr, size)

    def write(self, addr: int, data: bytes) -> None:
        if not self.alive():
            raise OSError(errno.EFAULT, f"process {self.pid} has exited")
        vm_write(self.pid, addr, data)

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# Host files held for MAP_FILE areas, shared by identity: the kernel keeps a
# file reference per pages object, gmemfs keeps one fd per distinct open file
# kind, so thousands of areas of one memfd cost one fd, not thousands (the
# server's RLIMIT_NOFILE would otherwise cap the number of areas).
# (st_dev, st_ino, readable, writable) -> [fd, refcount]
_shared_fds: dict[tuple, list] = {}


class FileRef:
    """What an fd number of the caller refers to (see docs/ARCHITECTURE.md)."""

    def __init__(self, kind: str, fd: int | None, readable: bool, writable: bool,
                 gmem=None, node=None, identity=None, obj=None):
        self.kind = kind
        self.fd = fd
        self.readable = readable
        self.writable = writable
        self.gmem = gmem
        self.node = node
        self.identity = identity      # (st_dev, st_ino) of a host file
        self.obj = obj                # the model object a gmemfs file stands for
                                      # (the file of an fd-returning ioctl)

    def size(self) -> int:
        if self.gmem is not None:
            return self.gmem.size
        if self.fd is None:
            return 0
        return os.fstat(self.fd).st_size

    def pread(self, off: int, n: int) -> bytes:
        if self.fd is None:
            raise OSError(errno.EINVAL, "not a host file")
        return os.pread(self.fd, n, off)

    def pwrite(self, off: int, data: bytes) -> None:
        if self.fd is None:
            raise OSError(errno.EINVAL, "not a host file")
        os.pwrite(self.fd, data, off)

    def close(self) -> None:
        if self.fd is None:
            return
        key = self._key
        entry = _shared_fds.get(key) if key is not None else None
        if entry is not None and entry[0] == self.fd:
            entry[1] -= 1
            if entry[1] == 0:
                del _shared_fds[key]
                os.close(self.fd)
        else:
            os.close(self.fd)
        self.fd = None

    _key = None

    def __repr__(self):
        return f"FileRef(kind={self.kind!r}, fd={self.fd}, w={self.writable})"


class Caller:
    """The thread that issued one FUSE request."""

    __slots__ = ("tid", "uid", "gid", "_pid", "_resolver")

    def __init__(self, tid: int, uid: int, gid: int, resolver=None):
        self.tid = tid
        self.uid = uid
        self.gid = gid
        self._pid = None
        self._resolver = resolver   # (mnt_id, ino) -> FileRef | None, for our own files

    @property
    def pid(self) -> int:
        if self._pid is None:
            self._pid = tgid_of(self.tid)
        return self._pid

    def read(self, addr: int, size: int) -> bytes:
        return vm_read(self.tid, addr, size)

    def write(self, addr: int, data: bytes) -> None:
        vm_write(self.tid, addr, data)

    def memory(self) -> ProcessMemory:
        return ProcessMemory(self.pid)

    def has_cap(self, cap: str) -> bool:
        """capable(cap) of the requesting thread (CAP_IPC_LOCK, CAP_SYS_RESOURCE,
        CAP_SYS_RAWIO, CAP_SYS_ADMIN): see thread_has_cap."""
        return thread_has_cap(self.tid, cap)

    def dup_fd(self, fd: int) -> int:
        """A copy of the caller's fd in this process (pidfd_getfd); the
        caller of dup_fd closes it. EBADF if ``fd`` is not open there."""
        if fd < 0 or fd >= 1 << 31:
            raise OSError(errno.EBADF, f"fd {fd} is not open in the caller")
        pidfd = pidfd_open(self.tid)
        try:
            local = lib.gmemfs_pidfd_getfd(pidfd, fd)
        finally:
            os.close(pidfd)
        if local < 0:
            raise OSError(errno.EBADF if -local in (errno.EBADF, errno.ESRCH) else -local,
                          f"fd {fd} is not open in the caller")
        return local

    def get_eventfd(self, fd: int) -> int:
        """The caller's eventfd ``fd`` as a host fd the model owns
        (eventfd_ctx_fdget: EBADF if not open, EINVAL if not an eventfd).
        Never shared like other host files: every eventfd is the same anon
        inode."""
        local = self.dup_fd(fd)
        try:
            if "eventfd-count" not in read_fdinfo(local):
                raise OSError(errno.EINVAL, f"fd {fd} is not an eventfd")
        except BaseException:
            os.close(local)
            raise
        return local

    def get_file(self, fd: int) -> FileRef:
        local = self.dup_fd(fd)
        try:
            info = read_fdinfo(local)
            flags = int(info.get("flags", "0"), 8)
            acc = flags & os.O_ACCMODE
            readable = acc in (os.O_RDONLY, os.O_RDWR)
            writable = acc in (os.O_WRONLY, os.O_RDWR)
            if self._resolver is not None:
                own = self._resolver(int(info.get("mnt_id", "-1")), int(info.get("ino", "0")),
                                     readable, writable)
                if own is not None:       # one of our files: never fstat it
                    os.close(local)
                    return own
            return _host_ref(local, readable, writable)
        except BaseException:
            os.close(local)
            raise



def _host_ref(local: int, readable: bool, writable: bool) -> FileRef:
    """A FileRef for ``local``, an fd of a host file this process owns now
    (it is closed, or kept as the one shared fd of that file)."""
    try:
        ftype = lib.gmemfs_fstatfs_type(local)
        if ftype == TMPFS_MAGIC:
            kind = "shmem"
        elif ftype == HUGETLBFS_MAGIC:
            kind = "hugetlb"
        else:
            kind = "other"
        st = os.fstat(local)
    except BaseException:
        os.close(local)
        raise
    key = (st.st_dev, st.st_ino, readable, writable)
    entry = _shared_fds.get(key)
    if entry is None:
        entry = _shared_fds[key] = [local, 0]
    else:
        os.close(local)
    entry[1] += 1
    ref = FileRef(kind, entry[0], readable, writable, identity=(st.st_dev, st.st_ino))
    ref._key = key
    return ref
