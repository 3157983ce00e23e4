"""iommufd ioctl dispatch (spec §2.2 / §2.4), one table like iommufd_ioctl_ops.

``ioctl(ctx, cmd, arg, caller) -> int`` (or raises ``OSError``):

1. ``nr = cmd & 0xff``; ``nr < 0x80`` or beyond the table end (0xa0 on a test
   kernel, ``Context(options={'test_kernel': False})`` ends at 0x94) -> the
   VFIO type1 compatibility rows of the table (``VFIO_TABLE``, by full
   command: struct, argsz minimum, handler in vfio_compat.py; their argsz
   rules are vfio_compat.c's, not §2.2's); any other command -> ENOTTY.
2. read the u32 ``size`` at ``arg`` -> EFAULT;
3. empty slot or ``cmd`` != slot command -> ENOTTY;
4. ``size < min`` -> EINVAL;
5. copy ``size`` bytes into a zeroed buffer of the kernel size; bytes beyond
   the kernel size must be zero (E2BIG); copy faults -> EFAULT;
6. run the handler inside a context transaction: objects it allocated are
   published on success and destroyed (IDs released) on failure.

Handlers get ``(ctx, cmd, ucmd)``: ``cmd`` is a cffi pointer to the kernel
struct laid over the kernel buffer, ``ucmd`` carries the caller and offers
``respond()`` (copy back ``min(user size, kernel size)`` bytes, EFAULT on
failure) - a handler that does not call it writes nothing (§2.4).

Commands whose kernel form installs a new fd in the caller
(IOMMU_FAULT_QUEUE_ALLOC, IOMMU_VEVENTQ_ALLOC, selftest CREATE_ACCESS and
DMABUF_GET) get the file through ``files``, the adapter's installer (see
`UCmd.new_file`): under ``gmemfs exec`` the supervisor installs it in the
caller. Without an installer (a plain FUSE mount: a FUSE server cannot put a
file descriptor into the calling process) they answer **EOPNOTSUPP** after
the kernel's own checks that come before the fd (VEVENTQ_ALLOC: up to the
vIOMMU lookup and EEXIST), the kernel's "known request, unsupported here"
(§2.3), and the reason names ``gmemfs exec``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Callable

from . import eventq, hwpt, ioas, selftest, vfio_compat, viommu
from .context import Context
from .errors import err

IOMMUFD_TYPE = 0x3B
CMD_BASE = 0x80
TABLE_END_TEST = 0xA0      # last nr on a test kernel (IOMMU_TEST_CMD)
TABLE_END = 0x94           # last nr otherwise (IOMMU_HW_QUEUE_ALLOC)


def _io(nr: int) -> int:
    return (IOMMUFD_TYPE << 8) | nr


def ffi():
    import ioctl_abi
    return ioctl_abi.ffi


_FFI = ffi()


@dataclass(frozen=True)
class Op:
    """One slot of the table, like the kernel's struct iommufd_ioctl_op."""
    cmd: int
    struct: str          # kernel struct name, without "struct "
    min_size: int
    handler: Callable
    size: int = 0        # sizeof(struct), the kernel size
    ptr: object = None   # the cffi type "struct ... *" laid over the kernel buffer


class UCmd:
    """What a handler knows about the call besides the struct."""

    __slots__ = ("ctx", "caller", "arg", "user_size", "buf", "op", "responded", "files")

    def __init__(self, ctx: Context, caller, arg: int, user_size: int,
                 buf: bytearray, op: Op, files=None) -> None:
        self.ctx = ctx
        self.caller = caller
        self.arg = arg
        self.user_size = user_size
        self.buf = buf
        self.op = op
        self.responded = False
        self.files = files

    def new_file(self, obj, fd_field: str | None) -> int:
        """The kernel's get_unused_fd + anon_inode_getfile for ``obj``: a new
        file that holds a reference on ``obj`` (``obj.users``) and, once it
        is installed, on the context. ``fd_field`` names the struct field
        (dotted for union members) where the fd number goes, None when the
        ioctl returns it. Returns the number to store there now (the
        installer writes the real one after installing the file)."""
        if self.files is None:
            raise err(errno.EOPNOTSUPP, f"{type(obj).__name__.upper()} needs a new fd in the "
                      "caller, which a FUSE server cannot install: run the program under "
                      "`gmemfs exec`")
        addr = None
        if fd_field is not None:
            import ioctl_abi
            addr = self.arg + ioctl_abi.offsetof(self.op.struct, fd_field)
        obj.users += 1
        return self.files.new(obj, addr)

    def respond(self) -> None:
        """Copy back min(user size, kernel size) bytes (spec §2.4)."""
        n = min(self.user_size, len(self.buf))
        self.caller.write(self.arg, bytes(self.buf[:n]))
        self.responded = True

    def write_back(self, offset: int, size: int) -> None:
        """Copy back only [offset, offset+size) (IOMMU_OPTION's val64)."""
        self.caller.write(self.arg + offset, bytes(self.buf[offset:offset + size]))
        self.responded = True


# ---------------------------------------------------------------------------
# Generic handlers
# ---------------------------------------------------------------------------

def h_destroy(ctx, cmd, ucmd):
    ctx.destroy_id(cmd.id)
    return 0


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

def _op(cmd: int, struct: str, min_size: int, handler: Callable) -> Op:
    return Op(cmd, struct, min_size, handler, kernel_size(struct), _ptr_type(struct))


def _build_table():
    ops = [
        _op(_io(0x80), "iommu_destroy", 8, h_destroy),
        _op(_io(0x81), "iommu_ioas_alloc", 12, ioas.h_ioas_alloc),
        _op(_io(0x82), "iommu_ioas_allow_iovas", 24, ioas.h_allow_iovas),
        _op(_io(0x83), "iommu_ioas_copy", 40, ioas.h_copy),
        _op(_io(0x84), "iommu_ioas_iova_ranges", 32, ioas.h_iova_ranges),
        _op(_io(0x85), "iommu_ioas_map", 40, ioas.h_map),
        _op(_io(0x86), "iommu_ioas_unmap", 24, ioas.h_unmap),
        _op(_io(0x87), "iommu_option", 24, ioas.h_option),
        _op(_io(0x88), "iommu_vfio_ioas", 12, ioas.h_vfio_ioas),
        _op(_io(0x89), "iommu_hwpt_alloc", 24, hwpt.h_hwpt_alloc),
        _op(_io(0x8A), "iommu_hw_info", 32, hwpt.h_get_hw_info),
        _op(_io(0x8B), "iommu_hwpt_set_dirty_tracking", 16, hwpt.h_set_dirty_tracking),
        _op(_io(0x8C), "iommu_hwpt_get_dirty_bitmap", 48, hwpt.h_get_dirty_bitmap),
        _op(_io(0x8D), "iommu_hwpt_invalidate", 32, hwpt.h_invalidate),
        _op(_io(0x8E), "iommu_fault_alloc", 16, eventq.h_fault_queue_alloc),
        _op(_io(0x8F), "iommu_ioas_map_file", 40, ioas.h_map_file),
        _op(_io(0x90), "iommu_viommu_alloc", 24, viommu.h_viommu_alloc),
        _op(_io(0x91), "iommu_vdevice_alloc", 24, viommu.h_vdevice_alloc),
        _op(_io(0x92), "iommu_ioas_change_process", 8, ioas.h_change_process),
        _op(_io(0x93), "iommu_veventq_alloc", 28, eventq.h_veventq_alloc),
        _op(_io(0x94), "iommu_hw_queue_alloc", 40, viommu.h_hw_queue_alloc),
        _op(_io(0xA0), "iommu_test_cmd", 68, selftest.h_test_cmd),
    ]
    return {op.cmd & 0xFF: op for op in ops}


_SIZES: dict[str, int] = {}


def kernel_size(struct: str) -> int:
    n = _SIZES.get(struct)
    if n is None:
        n = _SIZES[struct] = ffi().sizeof(f"struct {struct}")
    return n


_PTR_TYPES: dict[str, object] = {}


def _ptr_type(struct: str):
    t = _PTR_TYPES.get(struct)
    if t is None:
        t = _PTR_TYPES[struct] = ffi().typeof(f"struct {struct} *")
    return t


IOCTL_TABLE: dict[int, Op] = _build_table()


def _vfio(cmd: int, struct: str | None, min_size: int, handler: Callable) -> Op:
    return Op(cmd, struct or "", min_size, handler, kernel_size(struct) if struct else 0)


def _build_vfio_table():
    """The VFIO type1 container commands (vfio_compat.c), by full command:
    struct (None: an integer argument), the ``argsz`` minimum (offsetofend of
    the last mandatory member) and the handler ``(ctx, arg, caller)``."""
    V = vfio_compat
    ops = [
        _vfio(V.VFIO_GET_API_VERSION, None, 0, V.get_api_version),
        _vfio(V.VFIO_CHECK_EXTENSION, None, 0, V.check_extension_ioctl),
        _vfio(V.VFIO_SET_IOMMU, None, 0, V.set_iommu_ioctl),
        _vfio(V.VFIO_IOMMU_GET_INFO, "vfio_iommu_type1_info", V.INFO_MINSZ, V.get_info),
        _vfio(V.VFIO_IOMMU_MAP_DMA, "vfio_iommu_type1_dma_map", V.MAP_MINSZ, V.map_dma),
        _vfio(V.VFIO_IOMMU_UNMAP_DMA, "vfio_iommu_type1_dma_unmap", V.UNMAP_MINSZ,
              V.unmap_dma),
    ]
    return {op.cmd: op for op in ops}


VFIO_TABLE: dict[int, Op] = _build_vfio_table()


def table() -> dict[int, Op]:
    return IOCTL_TABLE


def ioctl(ctx: Context, cmd: int, arg: int, caller, prefetch: bytes | None = None,
          files=None) -> int:
    """Run one iommufd ioctl for ``caller`` (spec §2.2).

    ``prefetch``: bytes already read from the caller at ``arg`` (the FUSE
    adapter reads up to 128 in C); used when it covers the kernel struct.
    ``files``: the installer of new fds (`UCmd.new_file`), None when new fds
    cannot be installed."""
    nr = cmd & 0xFF
    end = TABLE_END_TEST if ctx.test_kernel else TABLE_END
    if nr < CMD_BASE or nr > end:
        vop = VFIO_TABLE.get(cmd)
        if vop is None:       # iommufd_vfio_ioctl: -ENOIOCTLCMD
            raise err(errno.ENOTTY, f"unknown ioctl {cmd:#x}")
        return vop.handler(ctx, arg, caller)
    op = IOCTL_TABLE.get(nr)
    known = op is not None and op.cmd == cmd
    ksize = op.size if known else 4
    # Fast path: one read of the whole kernel struct. If that faults (the
    # user's struct may be shorter, at the end of a mapping), take the
    # kernel's exact steps below so the errno stays the kernel's.
    if prefetch is not None and len(prefetch) >= ksize:
        first = prefetch[:ksize]
    else:
        try:
            first = caller.read(arg, ksize)
        except OSError:
            first = None
    if first is None:
        raw = caller.read(arg, 4)                   # EFAULT propagates
    else:
        raw = first
    user_size = int.from_bytes(raw[:4], "little")
    if not known:
        raise err(errno.ENOTTY, f"unknown iommufd ioctl {cmd:#x}")
    if user_size < op.min_size:
        raise err(errno.EINVAL, f"size {user_size} < minimum {op.min_size}")
    if user_size > ksize:
        # Kernel copy_struct_from_user: the unknown tail must be zero.
        tail = caller.read(arg + ksize, user_size - ksize)
        if any(tail):
            raise err(errno.E2BIG, "non-zero bytes beyond the kernel struct")
    n = min(user_size, ksize)
    if first is not None:
        buf = bytearray(first)
        if n < ksize:
            buf[n:] = bytes(ksize - n)
    else:
        buf = bytearray(ksize)
        buf[:n] = caller.read(arg, n)
    cdata = _FFI.from_buffer(op.ptr, buf)
    ucmd = UCmd(ctx, caller, arg, user_size, buf, op, files)
    ctx.begin()
    try:
        ret = op.handler(ctx, cdata, ucmd)
    except BaseException:
        ctx.rollback()
        raise
    ctx.commit()
    return int(ret or 0)
