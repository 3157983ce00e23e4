"""In-process fakes of the Caller / ProcessMemory / FileRef duck types
(docs/ARCHITECTURE.md) for model unit tests. Not for end-to-end tests.

``FakeCaller`` owns a sparse address space made of mapped regions, each a
bytearray at a base address, optionally read-only. Unmapped addresses fault
with EFAULT like process_vm_readv would.
"""

from __future__ import annotations

import errno
import itertools

import pytest

_pids = itertools.count(4000)
_file_ids = itertools.count(1)


class FakeAddressSpace:
    def __init__(self, pid: int = 0) -> None:
        self.regions: list[list] = []      # [base, bytearray, readonly]
        self.alive = True
        self.pid = pid
        self.files: dict[int, tuple] = {}  # base -> (file identity, offset): shared file maps

    def mmap(self, base: int, size: int, readonly: bool = False,
             fill: bytes | None = None, file=None) -> int:
        """``file=(FakeFileRef, offset)``: a MAP_SHARED mapping of that file
        (its bytes are not mirrored; ``backing`` reports the file's identity)."""
        for b, buf, _ in self.regions:
            if base < b + len(buf) and b < base + size:
                raise ValueError("overlapping fake mapping")
        data = bytearray(size)
        if fill:
            data[:] = (fill * (size // len(fill) + 1))[:size]
        self.regions.append([base, data, readonly])
        self.regions.sort(key=lambda r: r[0])
        if file is not None:
            self.files[base] = (("file", file[0].identity), file[1])
        return base

    def backing(self, addr: int, size: int, pid: int | None = None):
        """ProcessMemory.backing: runs (start, end, key, base) of [addr, addr+size)."""
        pid = self.pid if pid is None else pid
        out = []
        for buf, o, n in self._pieces(addr, size, False):
            base = next(b for b, bb, _ in self.regions if bb is buf)
            s = base + o
            f = self.files.get(base)
            if f is None:
                out.append((s, s + n, ("mm", pid), s))
            else:
                out.append((s, s + n, f[0], f[1] + o))
        return out

    def munmap(self, base: int) -> None:
        self.regions = [r for r in self.regions if r[0] != base]

    def _pieces(self, addr: int, size: int, write: bool):
        if not self.alive:
            raise OSError(errno.ESRCH, "process exited")
        out = []
        cur, end = addr, addr + size
        while cur < end:
            for b, buf, ro in self.regions:
                if b <= cur < b + len(buf):
                    if write and ro:
                        raise OSError(errno.EFAULT, f"read-only page at {cur:#x}")
                    n = min(end, b + len(buf)) - cur
                    out.append((buf, cur - b, n))
                    cur += n
                    break
            else:
                raise OSError(errno.EFAULT, f"unmapped address {cur:#x}")
        return out

    def read(self, addr: int, size: int) -> bytes:
        return b"".join(bytes(buf[o:o + n]) for buf, o, n in self._pieces(addr, size, False))

    def write(self, addr: int, data: bytes) -> None:
        pieces = self._pieces(addr, len(data), True)
        pos = 0
        for buf, o, n in pieces:
            buf[o:o + n] = data[pos:pos + n]
            pos += n

    def check_access(self, addr: int, size: int, write: bool) -> None:
        self._pieces(addr, size, write)


class FakeMemory:
    """ProcessMemory duck type."""

    def __init__(self, pid: int, space: FakeAddressSpace) -> None:
        self.pid = pid
        self.space = space
        self.closed = False

    def read(self, addr, size):
        return self.space.read(addr, size)

    def write(self, addr, data):
        self.space.write(addr, bytes(data))

    def check_access(self, addr, size, write):
        self.space.check_access(addr, size, write)

    def backing(self, addr, size, own_dev=None):
        return self.space.backing(addr, size, self.pid)

    def alive(self):
        return self.space.alive

    def close(self):
        self.closed = True


class FakeFileRef:
    """FileRef duck type over a shared bytearray ("the file")."""

    def __init__(self, kind: str = "shmem", size: int = 0, data: bytearray | None = None,
                 gmem=None, readable: bool = True, writable: bool = True,
                 identity=None) -> None:
        self.kind = kind
        self.gmem = gmem if kind == "gmem" else None
        self.fd = None
        self.readable = readable
        self.writable = writable
        self.data = data if data is not None else bytearray(size)
        self.identity = identity if identity is not None else ("fake", next(_file_ids))
        self.closed = False

    def size(self) -> int:
        if self.gmem is not None:
            s = getattr(self.gmem, "size")
            return s() if callable(s) else s
        return len(self.data)

    def pread(self, off: int, n: int) -> bytes:
        return bytes(self.data[off:off + n])

    def pwrite(self, off: int, data: bytes) -> None:
        end = off + len(data)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[off:end] = data

    def close(self) -> None:
        self.closed = True

    def dup(self) -> "FakeFileRef":
        """A new ref to the same file (what get_file returns per call)."""
        r = FakeFileRef(self.kind, data=self.data, gmem=self.gmem,
                        readable=self.readable, writable=self.writable,
                        identity=self.identity)
        r.obj = getattr(self, "obj", None)
        return r


class FakeInstaller:
    """The FUSE adapter's installer of new fds (dispatch.UCmd.new_file) for
    in-process tests: the file standing for the object goes straight into
    the fake caller's fd table; ``close(fd)`` is the last close of it."""

    def __init__(self, caller) -> None:
        self.caller = caller
        self.installed: dict[int, object] = {}

    def new(self, obj, addr) -> int:
        ref = FakeFileRef("gmemfs-other")
        ref.obj = obj
        fd = self.caller.add_fd(ref)
        self.installed[fd] = obj
        return fd

    def close(self, fd: int) -> None:
        del self.caller.fds[fd]
        self.installed.pop(fd).file_released()

    def close_all(self) -> None:
        """The process exits: its files go first (each holds the context)."""
        for fd in list(self.installed):
            self.close(fd)


class FakeCaller:
    """Caller duck type: memory + fd table of one fake process."""

    def __init__(self, uid: int = 1000, gid: int = 1000, pid: int | None = None,
                 space: FakeAddressSpace | None = None, caps=()) -> None:
        self.pid = pid if pid is not None else next(_pids)
        self.tid = self.pid
        self.uid = uid
        self.gid = gid
        self.space = space or FakeAddressSpace(self.pid)
        if not self.space.pid:
            self.space.pid = self.pid
        self.fds: dict[int, FakeFileRef] = {}
        self.caps = set(caps)
        self.refs_handed_out: list[FakeFileRef] = []

    # Caller API
    def read(self, addr: int, size: int) -> bytes:
        return self.space.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self.space.write(addr, bytes(data))

    def get_file(self, fd: int) -> FakeFileRef:
        f = self.fds.get(fd)
        if f is None:
            raise OSError(errno.EBADF, f"fd {fd} not open")
        r = f.dup()
        self.refs_handed_out.append(r)
        return r

    def memory(self) -> FakeMemory:
        return FakeMemory(self.pid, self.space)

    def has_cap(self, cap: str) -> bool:
        return cap in self.caps

    # test helpers
    def mmap(self, base: int, size: int, **kw) -> int:
        return self.space.mmap(base, size, **kw)

    def add_fd(self, f: FakeFileRef, fd: int | None = None) -> int:
        if fd is None:
            fd = 3
            while fd in self.fds:
                fd += 1
        self.fds[fd] = f
        return fd


class IommufdHarness:
    """Drive iommufd_emu.dispatch.ioctl with structs placed in a FakeCaller.

    ``h.ioctl("IOMMU_IOAS_ALLOC", "iommu_ioas_alloc", flags=0)`` writes the
    struct (``size`` defaults to the kernel size) at ``h.ARG``, dispatches
    and returns the struct read back afterwards (OSError propagates).
    """

    ARG = 0x10000
    SCRATCH = 0x20000          # 64 KiB of scratch for arrays / bitmaps

    def __init__(self, caller: FakeCaller | None = None, options=None, system=None,
                 regions=()):
        import iommufd_emu
        from iommufd_emu.pages import System
        self.system = system or System()
        opts = dict(options or {})
        opts.setdefault("system", self.system)
        self.caller = caller or FakeCaller()
        for base, size in ((self.ARG, 0x1000), (self.SCRATCH, 0x10000)):
            try:
                self.caller.mmap(base, size)
            except ValueError:      # a caller shared by two contexts has them already
                pass
        for base, size in regions:          # the test's user buffers: (base, size), ...
            self.caller.mmap(base, size)
        self.ctx = iommufd_emu.Context(opts)
        self.last_ret = None
        self.files = None          # a FakeInstaller: new fds can be installed

    # ``with IommufdHarness(...) as h:`` closes the context at the end
    def __enter__(self) -> "IommufdHarness":
        return self

    def __exit__(self, *exc) -> None:
        if self.files is not None:
            self.files.close_all()
        self.ctx.close()

    def raw(self, cmd: int, data: bytes, arg: int | None = None, caller=None) -> int:
        from iommufd_emu import dispatch
        arg = self.ARG if arg is None else arg
        c = caller or self.caller
        if data:
            c.write(arg, data)
        return dispatch.ioctl(self.ctx, cmd, arg, c, files=self.files)

    def ioctl(self, cmd, struct: str, size: int | None = None, caller=None, **fields):
        import ioctl_abi
        if isinstance(cmd, str):
            cmd = getattr(ioctl_abi, cmd)
        p = ioctl_abi.new(struct, **fields)
        ksize = ioctl_abi.sizeof(struct)
        p.size = ksize if size is None else size
        data = ioctl_abi.to_bytes(p)
        c = caller or self.caller
        self.last_ret = self.raw(cmd, data, caller=c)
        return ioctl_abi.from_bytes(struct, c.read(self.ARG, ksize))

    # common shortcuts
    def ioas_alloc(self) -> int:
        return self.ioctl("IOMMU_IOAS_ALLOC", "iommu_ioas_alloc").out_ioas_id

    def destroy(self, obj_id: int) -> None:
        self.ioctl("IOMMU_DESTROY", "iommu_destroy", id=obj_id)

    def map(self, ioas_id, user_va, length, iova=0, flags=None):
        import ioctl_abi as a
        if flags is None:
            flags = a.IOMMU_IOAS_MAP_READABLE | a.IOMMU_IOAS_MAP_WRITEABLE
            if iova:
                flags |= a.IOMMU_IOAS_MAP_FIXED_IOVA
        return self.ioctl("IOMMU_IOAS_MAP", "iommu_ioas_map", flags=flags,
                          ioas_id=ioas_id, user_va=user_va, length=length,
                          iova=iova).iova

    def map_file(self, ioas_id, fd, start, length, iova=0, flags=None):
        import ioctl_abi as a
        if flags is None:
            flags = a.IOMMU_IOAS_MAP_READABLE | a.IOMMU_IOAS_MAP_WRITEABLE
            if iova:
                flags |= a.IOMMU_IOAS_MAP_FIXED_IOVA
        return self.ioctl("IOMMU_IOAS_MAP_FILE", "iommu_ioas_map_file", flags=flags,
                          ioas_id=ioas_id, fd=fd, start=start, length=length,
                          iova=iova).iova

    def unmap(self, ioas_id, iova, length) -> int:
        return self.ioctl("IOMMU_IOAS_UNMAP", "iommu_ioas_unmap", ioas_id=ioas_id,
                          iova=iova, length=length).length

    def test_cmd(self, op, obj_id=0, **fields):
        import ioctl_abi as a
        if isinstance(op, str):
            op = getattr(a, op)
        return self.ioctl("IOMMU_TEST_CMD", "iommu_test_cmd", op=op, id=obj_id, **fields)

    def mock_domain(self, pt_id, dev_flags=None):
        if dev_flags is None:
            r = self.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN", pt_id)
            m = r.mock_domain
        else:
            r = self.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS", pt_id,
                              mock_domain_flags={"dev_flags": dev_flags})
            m = r.mock_domain_flags
        return m.out_stdev_id, m.out_hwpt_id, m.out_idev_id


def errno_of(fn, *a, **kw) -> int:
    """The errno of the OSError that ``fn(*a, **kw)`` must raise."""
    with pytest.raises(OSError) as ei:
        fn(*a, **kw)
    return ei.value.errno


def hwpt_alloc(h, dev_id, pt_id, flags=0, data=None, data_type=None, **kw):
    """IOMMU_HWPT_ALLOC through ``h``; ``data``: the driver blob (selftest
    type unless ``data_type``), placed in the harness scratch. The new id."""
    import ioctl_abi as A
    fields = dict(dev_id=dev_id, pt_id=pt_id, flags=flags)
    if data is not None:
        h.caller.write(h.SCRATCH + 0x8000, data)
        fields.update(data_uptr=h.SCRATCH + 0x8000, data_len=len(data),
                      data_type=A.IOMMU_HWPT_DATA_SELFTEST if data_type is None else data_type)
    elif data_type is not None:
        fields.update(data_type=data_type)
    fields.update(kw)
    return h.ioctl("IOMMU_HWPT_ALLOC", "iommu_hwpt_alloc", **fields).out_hwpt_id
