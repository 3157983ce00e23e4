"""Emulated device DMA (gmemfs extension of IOMMU_TEST_CMD).

Extension op (layout and constants in ioctl_abi/uapi.h, block
block meant to be appended to ioctl_abi/uapi.h; until then dma_ffi() parses
it privately): ``GMEMFS_TEST_OP_DMA = 0x1000`` with ``struct gmemfs_test_dma`` (the
72-byte iommu_test_cmd buffer; ``id`` = mock device ID, ``flags``
``GMEMFS_DMA_WRITE``, ``pasid``, ``iova``, ``length``, ``uptr``; outputs
``out_fault_iova``, ``out_fault_reason``, ``out_fault_dev_id``). Returns 0
when all bytes moved, 1 when the device faulted (fault record written).

The DMA walks the device's HWPT translation (for a nested HWPT: its parent;
stage 1 is identity) area by area and moves bytes to/from the real backing:
the mapping process's memory (ProcessMemory), a host file (FileRef
pread/pwrite) or a guest_memfd model (gmem.read/write). A write marks the
range dirty when dirty tracking is enabled on the paging HWPT.

Policy hook (for the later platform / invalidation-policy layer): every
access to one area is described by a ``DmaAccess`` and passed to the
context's ``dma_hook`` (``Context.options['dma_hook']`` or
``ctx.dma_hook``), a callable ``hook(access) -> None | reason``. Returning
``None`` allows the access; returning a string (or raising
``DmaDenied``) refuses it: the DMA stops there with fault
GMEMFS_DMA_FAULT_DENIED and the hook's reason is kept in
``DmaResult.detail``. The hook sees the area, the backing kind
('user' | 'file' | 'gmem'), the backing object (ProcessMemory, FileRef, or
GuestMemfd) and the absolute backing range, so it can e.g. check
``gmem.is_private(offset, length)``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from . import context as C
from . import policy as gmem_policy
from .errors import err

GMEMFS_TEST_OP_DMA = 0x1000
GMEMFS_DMA_WRITE = 0x1
GMEMFS_DMA_PRIVATE = 0x2
GMEMFS_DMA_MAX_LENGTH = 64 << 20

FAULT_NONE = 0
FAULT_UNMAPPED = 1
FAULT_PERM = 2
FAULT_REVOKED = 3
FAULT_DENIED = 4
FAULT_BACKING = 5
FAULT_RMP = 6
FAULT_GPT = 7
FAULT_SEPT = 8
FAULT_MACHINE_CHECK = 9
FAULT_INVALIDATED = 10

CHUNK = 1 << 20
U64_MAX = (1 << 64) - 1


class DmaDenied(Exception):
    """Raised by a dma_hook to refuse an access."""


@dataclass
class DmaAccess:
    """One DMA access to one area, as seen by the policy hook."""

    device: object           # hwpt.Device
    hwpt: object             # the HWPT translating it
    write: bool
    iova: int
    length: int
    area: object             # ioas.Area
    backing_kind: str        # 'user' | 'file' | 'gmem'
    backing: object          # ProcessMemory / FileRef / GuestMemfd
    backing_offset: int      # absolute VA / file offset of the first byte


@dataclass
class DmaResult:
    data: bytes | None = None
    transferred: int = 0
    fault_reason: int = FAULT_NONE
    fault_iova: int = 0
    fault_dev_id: int = 0
    detail: str = ""
    accesses: list = field(default_factory=list)
    events: int = 0          # events this DMA raised (MNT/.state/events)

    @property
    def faulted(self) -> bool:
        return self.fault_reason != FAULT_NONE


def _backing_of(pages):
    if pages.kind == "user":
        return "user", pages.mem
    if getattr(pages, "gmem", None) is not None:
        return "gmem", pages.gmem
    return "file", pages.ref


def _hook_of(ctx):
    return getattr(ctx, "dma_hook", None) or ctx.options.get("dma_hook")


def device_dma(ctx, idev, iova: int, length: int, write: bool = False,
               data: bytes | None = None, pasid: int = 0, sink=None,
               source=None, private: bool = False) -> DmaResult:
    """Perform one device DMA in-process.

    Read: bytes are returned in ``result.data`` (or passed chunk-wise to
    ``sink(offset, bytes)`` when given). Write: bytes come from ``data`` (or
    ``source(offset, n)``). ``private`` is the transaction's T bit
    (GMEMFS_DMA_PRIVATE). Accesses to guest_memfd areas are judged by the
    IOAS's policy and the platform model (policy.dma_plan): they may fault
    (RMP, GPT, SEPT, MACHINE_CHECK, INVALIDATED) or reach memory that left
    the file (read zeros, write dropped, event logged).
    """
    res = DmaResult()
    log = gmem_policy.events(ctx)
    seq0 = log.seq
    hwpt = idev.hwpt if pasid == 0 else idev.pasids.get(pasid)
    out = bytearray() if not write and sink is None else None
    hook = _hook_of(ctx)
    end = iova + length
    cur = iova

    def fault(reason, at, detail=""):
        res.fault_reason, res.fault_iova, res.fault_dev_id = reason, at, idev.id
        res.detail = detail

    while cur < end:
        if hwpt is None or hwpt.dead:
            fault(FAULT_UNMAPPED, cur, "device not attached")
            break
        t = hwpt.translate(cur)
        if t is None:
            paging = getattr(hwpt, "parent", hwpt)
            a = paging.ioas.area_at(cur)
            if a is not None and a.revoked:
                gmem_policy.revoked_access(ctx, idev, a, cur)
                fault(FAULT_REVOKED, cur)
            else:
                fault(FAULT_UNMAPPED, cur)
            break
        area, byte = t
        n = min(end, area.last + 1) - cur
        if (write and not area.writable) or (not write and not area.readable):
            fault(FAULT_PERM, cur)
            break
        pages = area.pages
        kind, backing = _backing_of(pages)
        acc = DmaAccess(idev, hwpt, write, cur, n, area, kind, backing,
                        pages.start + byte)
        res.accesses.append(acc)
        if hook is not None:
            try:
                verdict = hook(acc)
            except DmaDenied as e:
                verdict = str(e) or "denied"
            if verdict:
                fault(FAULT_DENIED, cur, str(verdict))
                break
        if kind == "gmem":
            segs = gmem_policy.dma_plan(ctx, idev, area, cur, n, write, private)
        else:
            segs = [(cur, cur + n, "ok", 0)]
        stop = False
        for s0, s1, action, reason in segs:
            if action == "fault":
                fault(reason, s0)
                stop = True
                break
            if not _move(res, hwpt, pages, byte + (s0 - cur), s0, s1 - s0, s0 - iova, write,
                         action == "void", data, source, sink, out, fault):
                stop = True
                break
        if stop:
            break
        cur += n
    if out is not None:
        res.data = bytes(out)
    res.events = log.seq - seq0
    return res


def _move(res, hwpt, pages, byte, at, n, off0, write, void, data, source, sink, out,
          fault) -> bool:
    """Move ``n`` bytes between the caller buffer (offset ``off0``) and the
    pages (byte ``byte``), IOVA ``at``. ``void``: the page left the file:
    reads give zeros, writes go nowhere. False after a backing fault."""
    done = 0
    berr = None
    while done < n:
        m = min(CHUNK, n - done)
        off = off0 + done
        if write:
            # Caller-buffer faults propagate (EFAULT); backing faults
            # become a device fault.
            chunk = source(off, m) if source is not None else data[off:off + m]
            if not void:
                try:
                    pages.write(byte + done, chunk)
                except OSError as e:
                    berr = e
                    break
        else:
            if void:
                chunk = bytes(m)
            else:
                try:
                    chunk = pages.read(byte + done, m)
                except OSError as e:
                    berr = e
                    break
            if sink is not None:
                sink(off, chunk)
            else:
                out += chunk
        done += m
    if write and done:
        _mark_dirty(hwpt, at, at + done)
    res.transferred += done
    if berr is not None:
        fault(FAULT_BACKING, at + done, berr.strerror or str(berr))
        return False
    return True


def _mark_dirty(hwpt, start, end):
    paging = getattr(hwpt, "parent", hwpt)
    if getattr(paging, "dirty_enabled", False):
        paging.mark_dirty(start, end)




def dma_ffi():
    """The FFI that knows ``struct gmemfs_test_dma`` (ioctl_abi/uapi.h)."""
    import ioctl_abi
    return ioctl_abi.ffi


def op_dma(ctx, cmd, ucmd):
    d = dma_ffi().from_buffer("struct gmemfs_test_dma *", ucmd.buf)
    idev = ctx.lookup(d.id, C.DEVICE)
    if d.flags & ~(GMEMFS_DMA_WRITE | GMEMFS_DMA_PRIVATE):
        raise err(errno.EOPNOTSUPP, "DMA: unknown flags")
    length, iova, uptr = d.length, d.iova, d.uptr
    if length == 0 or length > GMEMFS_DMA_MAX_LENGTH:
        raise err(errno.EINVAL, "DMA length must be in (0, 64 MiB]")
    if iova + length - 1 > U64_MAX:
        raise err(errno.EOVERFLOW, "iova + length overflows")
    caller = ucmd.caller
    write = bool(d.flags & GMEMFS_DMA_WRITE)
    private = bool(d.flags & GMEMFS_DMA_PRIVATE)
    if write:
        res = device_dma(ctx, idev, iova, length, True,
                         source=lambda off, n: caller.read(uptr + off, n),
                         pasid=d.pasid, private=private)
    else:
        res = device_dma(ctx, idev, iova, length, False,
                         sink=lambda off, b: caller.write(uptr + off, b),
                         pasid=d.pasid, private=private)
    d.out_fault_reason = res.fault_reason
    d.out_fault_iova = res.fault_iova if res.faulted else 0
    d.out_fault_dev_id = res.fault_dev_id if res.faulted else 0
    d.out_events = min(res.events, 0xFFFFFFFF)
    ucmd.respond()
    return 1 if res.faulted else 0


OPS = {GMEMFS_TEST_OP_DMA: op_dma}
