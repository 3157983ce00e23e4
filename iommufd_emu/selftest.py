"""IOMMU_TEST_CMD (0x3ba0), spec §10.

Implemented ops: ADD_RESERVED, MOCK_DOMAIN, MOCK_DOMAIN_FLAGS,
MOCK_DOMAIN_REPLACE, MD_CHECK_MAP, MD_CHECK_REFS, SET_TEMP_MEMORY_LIMIT,
DIRTY, MD_CHECK_IOTLB, DEV_CHECK_CACHE, PASID_ATTACH/REPLACE/DETACH/CHECK_HWPT,
plus the gmemfs DMA extension ops (>= 0x1000, see dma.py).

Ops that need a new fd in the caller (CREATE_ACCESS, DMABUF_GET) answer
EOPNOTSUPP (FUSE cannot install an fd); the ops that take an access fd
(DESTROY_ACCESS_PAGES, ACCESS_PAGES, ACCESS_RW, ACCESS_REPLACE_IOAS) answer
EBADFD since no access fd can exist; the remaining ops (TRIGGER_IOPF,
TRIGGER_VEVENT, DMABUF_REVOKE, MD_CHECK_DMABUF) answer EOPNOTSUPP.

MD_CHECK_MAP compares *backing identity*: the domain's translation of each
2048-byte step must be a user-memory pages object of the calling process at
exactly ``uptr + step`` (spec §10.5 emulator note). File-backed areas never
match a user pointer (the emulator cannot see the caller's file mmaps).
"""

from __future__ import annotations

import errno

from . import context as C
from . import dma
from .context import IommufdObject
from .errors import err
from .hwpt import (Device, IOMMU_HWPT_ALLOC_PASID, MOCK_DEV_FLAGS,
                   MOCK_NESTED_DOMAIN_IOTLB_NUM, MOCK_DEV_CACHE_NUM)
from .pages import PAGE_SIZE, ULONG_MAX

OP_ADD_RESERVED = 1
OP_MOCK_DOMAIN = 2
OP_MD_CHECK_MAP = 3
OP_MD_CHECK_REFS = 4
OP_CREATE_ACCESS = 5
OP_DESTROY_ACCESS_PAGES = 6
OP_ACCESS_PAGES = 7
OP_ACCESS_RW = 8
OP_SET_TEMP_MEMORY_LIMIT = 9
OP_MOCK_DOMAIN_REPLACE = 10
OP_ACCESS_REPLACE_IOAS = 11
OP_MOCK_DOMAIN_FLAGS = 12
OP_DIRTY = 13
OP_MD_CHECK_IOTLB = 14
OP_TRIGGER_IOPF = 15
OP_DEV_CHECK_CACHE = 16
OP_TRIGGER_VEVENT = 17
OP_PASID_ATTACH = 18
OP_PASID_REPLACE = 19
OP_PASID_DETACH = 20
OP_PASID_CHECK_HWPT = 21
OP_DMABUF_GET = 22
OP_DMABUF_REVOKE = 23
OP_MD_CHECK_DMABUF = 24

MOCK_PAGE_SIZE = 2048


class SelftestObj(IommufdObject):
    """The SELFTEST object owning a mock device (spec §1.3)."""

    kind = C.SELFTEST

    def __init__(self) -> None:
        super().__init__()
        self.idev: Device | None = None

    def destroy(self) -> None:
        idev, self.idev = self.idev, None
        if idev is None:
            return
        ctx = self.ctx
        idev.detach(ctx)
        idev.put()                        # unbind: the driver reference
        if not idev.dead:
            ctx.remove(idev)


def _get_stdev(ctx, stdev_id) -> SelftestObj:
    return ctx.lookup(stdev_id, C.SELFTEST)


def op_add_reserved(ctx, cmd, ucmd):
    ioas = ctx.lookup(cmd.id, C.IOAS)
    start, length = cmd.add_reserved.start, cmd.add_reserved.length
    if length == 0 or start + length - 1 > ULONG_MAX:
        raise err(errno.EINVAL, "bad reserved range")
    ioas.add_reserved(start, start + length - 1, None)
    return 0


def op_mock_domain(ctx, cmd, ucmd, with_flags: bool):
    dev_flags = cmd.mock_domain_flags.dev_flags if with_flags else 0
    if dev_flags & ~MOCK_DEV_FLAGS:
        raise err(errno.EINVAL, "unknown mock device flags")
    sobj = SelftestObj()
    ctx.add(sobj)
    idev = Device(dev_flags)
    ctx.add(idev)
    sobj.idev = idev
    hwpt = idev.attach(ctx, cmd.id)
    m = cmd.mock_domain_flags if with_flags else cmd.mock_domain
    m.out_stdev_id = sobj.id
    m.out_hwpt_id = hwpt.id
    m.out_idev_id = idev.id
    ucmd.respond()
    return 0


def op_mock_domain_replace(ctx, cmd, ucmd):
    sobj = _get_stdev(ctx, cmd.id)
    hwpt = sobj.idev.attach(ctx, cmd.mock_domain_replace.pt_id)
    cmd.mock_domain_replace.pt_id = hwpt.id
    ucmd.respond()
    return 0


def _get_md_pagetable(ctx, hwpt_id):
    return ctx.lookup(hwpt_id, C.HWPT_PAGING)


def op_md_check_map(ctx, cmd, ucmd):
    hw = _get_md_pagetable(ctx, cmd.id)
    iova, length, uptr = cmd.check_map.iova, cmd.check_map.length, cmd.check_map.uptr
    g = hw.min_page
    if iova % g or length % g or uptr % g or uptr + length > ULONG_MAX:
        raise err(errno.EINVAL, "CHECK_MAP arguments not aligned")
    caller = ucmd.caller
    want_key = ("mm", caller.pid)
    for off in range(0, length, g):
        t = hw.translate(iova + off)
        if t is None:
            raise err(errno.EINVAL, f"IOVA {iova + off:#x} not mapped in the domain")
        area, byte = t
        if area.pages.backing(byte) != (want_key, uptr + off):
            raise err(errno.EINVAL, f"IOVA {iova + off:#x} maps other memory")
    return 0


def op_md_check_refs(ctx, cmd, ucmd):
    length, uptr, refs = cmd.check_refs.length, cmd.check_refs.uptr, cmd.check_refs.refs
    if length % PAGE_SIZE or uptr % PAGE_SIZE or uptr + length > ULONG_MAX:
        raise err(errno.EINVAL, "CHECK_REFS arguments not page aligned")
    caller = ucmd.caller
    key = ("mm", caller.pid)
    for addr in range(uptr, uptr + length, PAGE_SIZE):
        caller.read(addr, 1)                    # get_user_pages: EFAULT
        n = ctx.system.pin_count(key, addr // PAGE_SIZE)
        if n != refs:
            raise err(errno.EIO, f"page {addr:#x} has {n} pins, expected {refs}")
    return 0


def op_set_temp_memory_limit(ctx, cmd, ucmd):
    limit = cmd.memory_limit.limit
    if limit < 12:
        raise err(errno.EINVAL, "limit < 12")
    ctx.system.temp_memory_limit = limit
    return 0


def op_dirty(ctx, cmd, ucmd):
    d = cmd.dirty
    iova, length, psize, uptr = d.iova, d.length, d.page_size, d.uptr
    if not psize or not length or iova % psize or length % psize or not uptr:
        raise err(errno.EINVAL, "DIRTY: bad arguments")
    hw = _get_md_pagetable(ctx, cmd.id)
    if not hw.dirty_enabled:
        raise err(errno.EINVAL, "dirty tracking not enabled on the HWPT")
    nbits = length // psize
    bitmap = ucmd.caller.read(uptr, (nbits + 7) // 8)
    count = 0
    for byte_i, byte in enumerate(bitmap):
        if not byte:
            continue
        for bit in range(8):
            i = byte_i * 8 + bit
            if i >= nbits or not byte >> bit & 1:
                continue
            a = iova + i * psize
            if hw.translate(a) is not None:
                hw.mark_dirty(a, a + psize)
                count += 1
    d.out_nr_dirty = count
    ucmd.respond()
    return 0


def op_md_check_iotlb(ctx, cmd, ucmd):
    hw = ctx.lookup(cmd.id, C.HWPT_NESTED)
    c = cmd.check_iotlb
    if c.id >= MOCK_NESTED_DOMAIN_IOTLB_NUM or hw.iotlb[c.id] != c.iotlb:
        raise err(errno.EINVAL, "IOTLB slot mismatch")
    return 0


def op_dev_check_cache(ctx, cmd, ucmd):
    idev = ctx.lookup(cmd.id, C.DEVICE)
    c = cmd.check_dev_cache
    if c.id >= MOCK_DEV_CACHE_NUM or idev.cache[c.id] != c.cache:
        raise err(errno.EINVAL, "device cache slot mismatch")
    return 0


# ---------------------------------------------------------------- PASID ops

def _pasid_attach(ctx, cmd, ucmd, replace: bool):
    sobj = _get_stdev(ctx, cmd.id)
    idev = sobj.idev
    pasid = cmd.pasid_attach.pasid
    if not idev.pasid_capable or pasid == 0 or pasid >= 1 << 20:
        raise err(errno.EINVAL, "device/PASID cannot be attached")
    old = idev.pasids.get(pasid)
    if replace and old is None:
        raise err(errno.EINVAL, "PASID not attached")
    if not replace and old is not None:
        raise err(errno.EBUSY, "PASID already attached")
    obj = ctx.lookup(cmd.pasid_attach.pt_id, C.IOAS, C.HWPT_PAGING, C.HWPT_NESTED)
    if obj.kind == C.IOAS:
        raise err(errno.EINVAL, "PASID attach to an IOAS needs a PASID-capable "
                  "HWPT (auto domains are not)")
    if obj.kind == C.HWPT_PAGING and not obj.flags & IOMMU_HWPT_ALLOC_PASID:
        raise err(errno.EINVAL, "HWPT was not allocated with IOMMU_HWPT_ALLOC_PASID")
    if old is obj:
        cmd.pasid_attach.pt_id = obj.id
        ucmd.respond()
        return 0
    obj.get()
    idev.pasids[pasid] = obj
    try:
        cmd.pasid_attach.pt_id = obj.id
        ucmd.respond()
    except BaseException:
        if old is None:
            idev.pasids.pop(pasid)
        else:
            idev.pasids[pasid] = old
        obj.put()
        raise
    if old is not None:
        old.put()
    return 0


def op_pasid_detach(ctx, cmd, ucmd):
    sobj = _get_stdev(ctx, cmd.id)
    idev = sobj.idev
    old = idev.pasids.pop(cmd.pasid_detach.pasid, None)
    if old is not None:
        idev._release(ctx, old)
    return 0


def op_pasid_check_hwpt(ctx, cmd, ucmd):
    sobj = _get_stdev(ctx, cmd.id)
    cur = sobj.idev.pasids.get(cmd.pasid_check.pasid)
    want = cmd.pasid_check.hwpt_id
    if want == 0:
        if cur is not None:
            raise err(errno.EINVAL, "PASID is attached")
    elif cur is None or cur.id != want:
        raise err(errno.EINVAL, "PASID attached elsewhere")
    return 0


def _unsupported(why):
    def f(ctx, cmd, ucmd):
        raise err(errno.EOPNOTSUPP, why)
    return f


def _bad_access_fd(ctx, cmd, ucmd):
    raise err(errno.EBADFD, "not a selftest access fd (access fds cannot be "
              "created through FUSE)")


OPS = {
    OP_ADD_RESERVED: op_add_reserved,
    OP_MOCK_DOMAIN: lambda c, m, u: op_mock_domain(c, m, u, False),
    OP_MOCK_DOMAIN_FLAGS: lambda c, m, u: op_mock_domain(c, m, u, True),
    OP_MOCK_DOMAIN_REPLACE: op_mock_domain_replace,
    OP_MD_CHECK_MAP: op_md_check_map,
    OP_MD_CHECK_REFS: op_md_check_refs,
    OP_CREATE_ACCESS: _unsupported("CREATE_ACCESS returns a new fd; a FUSE "
                                   "server cannot install one in the caller"),
    OP_DESTROY_ACCESS_PAGES: _bad_access_fd,
    OP_ACCESS_PAGES: _bad_access_fd,
    OP_ACCESS_RW: _bad_access_fd,
    OP_ACCESS_REPLACE_IOAS: _bad_access_fd,
    OP_SET_TEMP_MEMORY_LIMIT: op_set_temp_memory_limit,
    OP_DIRTY: op_dirty,
    OP_MD_CHECK_IOTLB: op_md_check_iotlb,
    OP_TRIGGER_IOPF: _unsupported("fault queues are not modelled"),
    OP_DEV_CHECK_CACHE: op_dev_check_cache,
    OP_TRIGGER_VEVENT: _unsupported("vEVENTQs are not modelled"),
    OP_PASID_ATTACH: lambda c, m, u: _pasid_attach(c, m, u, False),
    OP_PASID_REPLACE: lambda c, m, u: _pasid_attach(c, m, u, True),
    OP_PASID_DETACH: op_pasid_detach,
    OP_PASID_CHECK_HWPT: op_pasid_check_hwpt,
    OP_DMABUF_GET: _unsupported("DMABUF_GET returns a new fd; a FUSE server "
                                "cannot install one in the caller"),
    OP_DMABUF_REVOKE: _unsupported("selftest dma-bufs are not modelled"),
    OP_MD_CHECK_DMABUF: _unsupported("selftest dma-bufs are not modelled"),
}


def h_test_cmd(ctx, cmd, ucmd):
    fn = OPS.get(cmd.op)
    if fn is None:
        fn = dma.OPS.get(cmd.op)
    if fn is None:
        raise err(errno.EOPNOTSUPP, f"unknown selftest op {cmd.op}")
    return fn(ctx, cmd, ucmd)
