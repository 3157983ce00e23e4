"""IOMMU_TEST_CMD (0x3ba0), spec §10.

Implemented ops: ADD_RESERVED, MOCK_DOMAIN, MOCK_DOMAIN_FLAGS,
MOCK_DOMAIN_REPLACE, MD_CHECK_MAP, MD_CHECK_REFS, SET_TEMP_MEMORY_LIMIT,
DIRTY, MD_CHECK_IOTLB, DEV_CHECK_CACHE, TRIGGER_IOPF, TRIGGER_VEVENT,
PASID_ATTACH/REPLACE/DETACH/CHECK_HWPT, plus the gmemfs DMA extension ops
(>= 0x1000, see dma.py).

CREATE_ACCESS and the ops on access fds (DESTROY_ACCESS_PAGES, ACCESS_PAGES,
ACCESS_RW, ACCESS_REPLACE_IOAS) are in access.py, TRIGGER_IOPF in eventq.py.
CREATE_ACCESS needs a new fd in the caller: without the adapter's installer
(a plain FUSE mount) it answers EOPNOTSUPP, and the access ops answer EBADFD
for every fd (no access fd exists). DMABUF_GET, DMABUF_REVOKE and
MD_CHECK_DMABUF answer EOPNOTSUPP. TRIGGER_VEVENT reports to the vIOMMU's
vEVENTQ (Viommu.report_event: EOPNOTSUPP without one).

MD_CHECK_MAP compares *backing identity* where the kernel compares physical
addresses: the domain's translation of ``iova`` and the caller's memory at
``uptr`` must name the same bytes: the same process memory at the same
address, or the same file (device, inode) at the same offset. The caller's
side comes from /proc/PID/maps (+ map_files, pagemap for private file maps):
``ProcessMemory.backing``; an IOAS_MAP area's side from its mapping process's
maps when the direct comparison does not settle it. Runs, not pages.
"""

from __future__ import annotations

import errno

from . import access
from . import context as C
from . import dma
from .context import IommufdObject
from .domains import MOCK_IOMMU
from .errors import err
from .eventq import op_trigger_iopf
from .hwpt import (Device, MOCK_DEV_FLAGS, MOCK_NESTED_DOMAIN_IOTLB_NUM,
                   MOCK_DEV_CACHE_NUM)
from .pages import PAGE_SIZE, ULONG_MAX, runs_of, same_memory
from .viommu import IOMMU_VEVENTQ_TYPE_SELFTEST

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
        idev.unbind(ctx)
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
    """get_md_pagetable: a paging HWPT (ENOENT) of the mock driver (EINVAL)."""
    hw = ctx.lookup(hwpt_id, C.HWPT_PAGING)
    if hw.iommu is not MOCK_IOMMU:
        raise err(errno.EINVAL, f"HWPT {hwpt_id} is not a mock domain")
    return hw


def op_md_check_map(ctx, cmd, ucmd):
    """iommufd_test_md_check_pa: a mock paging HWPT (ENOENT / EINVAL); iova,
    length and uptr multiples of its smallest page, uptr + length no overflow
    (EINVAL); the caller's memory at uptr must be mapped (get_user_pages:
    EFAULT) and be what the domain maps at iova (EINVAL)."""
    hw = _get_md_pagetable(ctx, cmd.id)
    iova, length, uptr = cmd.check_map.iova, cmd.check_map.length, cmd.check_map.uptr
    g = hw.min_page
    if iova % g or length % g or uptr % g or uptr + length > ULONG_MAX:
        raise err(errno.EINVAL, "CHECK_MAP arguments not aligned")
    if not length:
        return 0
    caller = ucmd.caller
    mem = None                                     # the caller's memory, when needed
    try:
        pos = 0
        while pos < length:
            t = hw.translate(iova + pos)
            if t is None:
                raise err(errno.EINVAL, f"IOVA {iova + pos:#x} not mapped in the domain")
            area, byte = t
            n = min(length - pos, area.last + 1 - (iova + pos))
            key, addr = area.pages.backing(byte)
            if key == ("mm", caller.pid) and addr == uptr + pos:
                caller.read(uptr + pos, 1)         # get_user_pages: EFAULT
                pos += n
                continue
            if mem is None:
                mem = caller.memory()
            mine = mem.backing(uptr + pos, n)      # EFAULT: not mapped
            if not same_memory(runs_of(area.pages, byte, n), mine, uptr + pos):
                raise err(errno.EINVAL, f"IOVA {iova + pos:#x} maps other memory than "
                          f"{uptr + pos:#x}")
            pos += n
    finally:
        if mem is not None:
            mem.close()
    return 0


def op_md_check_refs(ctx, cmd, ucmd):
    """iommufd_test_md_check_refs: uptr and length page aligned, no overflow
    (EINVAL); every page at uptr must be mapped (get_user_pages: EFAULT) and
    carry ``refs`` long-term pins (EIO). A page's pins are those taken through
    a process address (IOAS_MAP of the caller) plus, for a page of a file
    mapping, those taken on the file page (MAP_FILE): the same physical page."""
    length, uptr, refs = cmd.check_refs.length, cmd.check_refs.uptr, cmd.check_refs.refs
    if length % PAGE_SIZE or uptr % PAGE_SIZE or uptr + length > ULONG_MAX:
        raise err(errno.EINVAL, "CHECK_REFS arguments not page aligned")
    if not length:
        return 0
    mm = ("mm", ucmd.caller.pid)
    sysm = ctx.system
    mem = ucmd.caller.memory()
    try:
        runs = mem.backing(uptr, length)           # EFAULT: not mapped
    finally:
        mem.close()
    for s, e, key, base in runs:
        first, n = s // PAGE_SIZE, (e - s) // PAGE_SIZE
        counters = [(mm, first)]
        if key != mm:
            counters.append((key, base // PAGE_SIZE))
        bad = sysm.first_pin_count_not(counters, n, refs)
        if bad is not None:
            i, got = bad
            raise err(errno.EIO, f"page {s + i * PAGE_SIZE:#x} has {got} pins, "
                      f"expected {refs}")
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



def op_trigger_vevent(ctx, cmd, ucmd):
    """iommufd_test_trigger_vevent: the device (ENOENT); it must be attached
    to a nested HWPT of a vIOMMU and have a virtual ID there (ENOENT); the
    event {virt_id} goes to the vIOMMU's selftest vEVENTQ."""
    idev = ctx.lookup(cmd.trigger_vevent.dev_id, C.DEVICE)
    if idev.viommu is None or not idev.vdev_id:
        raise err(errno.ENOENT, "device not attached through a vIOMMU")
    idev.viommu.report_event(IOMMU_VEVENTQ_TYPE_SELFTEST,
                             idev.vdev_id.to_bytes(4, "little"))
    return 0


# ---------------------------------------------------------------- PASID ops

def _pasid_attach(ctx, cmd, ucmd, replace: bool):
    """iommufd_test_pasid_attach / _replace: attach is undone when the
    copy-back fails, replace is not."""
    sobj = _get_stdev(ctx, cmd.id)
    idev = sobj.idev
    pasid = cmd.pasid_attach.pasid
    old = idev.pasids.get(pasid)
    hwpt = idev.pasid_attach(ctx, pasid, cmd.pasid_attach.pt_id, replace)
    cmd.pasid_attach.pt_id = hwpt.id
    try:
        ucmd.respond()
    except BaseException:
        if not replace and old is None:
            idev.pasid_detach(ctx, pasid)
        raise
    return 0


def op_pasid_detach(ctx, cmd, ucmd):
    sobj = _get_stdev(ctx, cmd.id)
    sobj.idev.pasid_detach(ctx, cmd.pasid_detach.pasid)
    return 0


def op_pasid_check_hwpt(ctx, cmd, ucmd):
    """iommufd_test_pasid_check_hwpt: hwpt_id 0 -> the PASID must be
    detached; else hwpt_id must be a HWPT (paging or nested; other objects
    EINVAL, unknown ENOENT) and the one attached (EINVAL)."""
    sobj = _get_stdev(ctx, cmd.id)
    cur = sobj.idev.pasids.get(cmd.pasid_check.pasid)
    want = cmd.pasid_check.hwpt_id
    if want == 0:
        if cur is not None:
            raise err(errno.EINVAL, "PASID is attached")
        return 0
    hw = ctx.lookup(want)
    if hw.kind not in (C.HWPT_PAGING, C.HWPT_NESTED):
        raise err(errno.EINVAL, f"{want} is not a HWPT")
    if cur is not hw:
        raise err(errno.EINVAL, "PASID attached elsewhere")
    return 0


def _unsupported(why):
    def f(ctx, cmd, ucmd):
        raise err(errno.EOPNOTSUPP, why)
    return f


OPS = {
    OP_ADD_RESERVED: op_add_reserved,
    OP_MOCK_DOMAIN: lambda c, m, u: op_mock_domain(c, m, u, False),
    OP_MOCK_DOMAIN_FLAGS: lambda c, m, u: op_mock_domain(c, m, u, True),
    OP_MOCK_DOMAIN_REPLACE: op_mock_domain_replace,
    OP_MD_CHECK_MAP: op_md_check_map,
    OP_MD_CHECK_REFS: op_md_check_refs,
    OP_CREATE_ACCESS: access.op_create_access,
    OP_DESTROY_ACCESS_PAGES: access.op_destroy_access_pages,
    OP_ACCESS_PAGES: access.op_access_pages,
    OP_ACCESS_RW: access.op_access_rw,
    OP_ACCESS_REPLACE_IOAS: access.op_access_replace_ioas,
    OP_SET_TEMP_MEMORY_LIMIT: op_set_temp_memory_limit,
    OP_DIRTY: op_dirty,
    OP_MD_CHECK_IOTLB: op_md_check_iotlb,
    OP_TRIGGER_IOPF: op_trigger_iopf,
    OP_DEV_CHECK_CACHE: op_dev_check_cache,
    OP_TRIGGER_VEVENT: op_trigger_vevent,
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
