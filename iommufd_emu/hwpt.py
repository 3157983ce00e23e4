"""HWPT and device objects (spec §6) with selftest mock-domain semantics (§10.4).

* ``HwptPaging``: a mock paging domain joined to its IOAS's domain list at
  creation (``Ioas.attach_domain``: alignment 2048, aperture reservations,
  pins). Its translation *is* the IOAS's area table (every non-revoked area
  of the IOAS is mapped in every domain of it), limited to the aperture.
  Dirty bits live in an ``IntervalSet`` of IOVA ranges rounded out to the
  domain's dirty granule (2048, or MOCK_HUGE_PAGE_SIZE for the huge table).
* ``HwptNested``: mock nested HWPT over a NEST_PARENT paging parent; four
  IOTLB slots; DMA through it uses the parent's translation (stage 1 is
  identity: there is no guest page table to walk).
* ``Device``: a bound mock device (driver-held: IOMMU_DESTROY -> EBUSY).
"""

from __future__ import annotations

import errno

from intervals import IntervalSet

from . import context as C
from .context import IommufdObject
from .errors import err
from .pages import ULONG_MAX

MOCK_APERTURE_START = 1 << 24
MOCK_APERTURE_LAST = (1 << 31) - 1
MOCK_PAGE_SIZE = 2048
MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE
MOCK_IOMMUPT_DEFAULT = 0
MOCK_IOMMUPT_HUGE = 1

MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0
MOCK_FLAGS_DEVICE_PASID = 1 << 2
MOCK_DEV_FLAGS = MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_PASID
MOCK_PASID_WIDTH = 20

IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0
IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1
IOMMU_HWPT_FAULT_ID_VALID = 1 << 2
IOMMU_HWPT_ALLOC_PASID = 1 << 3
IOMMU_HWPT_DATA_NONE = 0
IOMMU_HWPT_DATA_SELFTEST = 0xDEAD
IOMMU_TEST_IOTLB_DEFAULT = 0xBADBEEF
IOMMU_TEST_DEV_CACHE_DEFAULT = 0xBADDAD
MOCK_NESTED_DOMAIN_IOTLB_NUM = 4
MOCK_DEV_CACHE_NUM = 4

IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0
IOMMU_HW_INFO_TYPE_DEFAULT = 0
IOMMU_HW_INFO_TYPE_SELFTEST = 0xFEEDBEEF
IOMMU_HW_INFO_SELFTEST_REGVAL = 0xDEADBEEF
IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0

IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1
IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1
IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xDEADBEEF
IOMMU_TEST_INVALIDATE_FLAG_ALL = 1

M64 = (1 << 64) - 1


def _nz(x) -> bool:
    """Non-zero test for an int or a cffi array field."""
    try:
        return any(x)
    except TypeError:
        return bool(x)


def copy_struct_from_user(caller, uptr: int, usize: int, ksize: int,
                          min_size: int) -> bytes:
    """The extensible-struct rule for nested user data (EINVAL/E2BIG/EFAULT)."""
    if usize < min_size:
        raise err(errno.EINVAL, f"user data size {usize} < {min_size}")
    if usize > ksize:
        tail = caller.read(uptr + ksize, usize - ksize)
        if any(tail):
            raise err(errno.E2BIG, "non-zero bytes beyond the kernel data struct")
    n = min(usize, ksize)
    return caller.read(uptr, n) + bytes(ksize - n)


# Domain kinds: which IOMMU a paging domain belongs to, which sets its
# aperture and smallest page. 'mock' is the selftest's mock IOMMU (aperture
# [2^24, 2^31), 2 KiB pages; its huge page-table type: the whole space);
# 'x86' is what a real x86 IOMMU gives a device domain: the whole IOVA space,
# 4 KiB pages (the interrupt window is a reserved region of the *device*,
# see VFIO devices' ``resv_regions``). A device attaches only to domains of
# its own kind (another kind is EINVAL, "incompatible domain").
DOMAIN_MOCK = "mock"
DOMAIN_X86 = "x86"
X86_PAGE_SIZE = 4096


class HwptPaging(IommufdObject):
    kind = C.HWPT_PAGING

    def __init__(self, ioas, *, auto: bool, flags: int = 0,
                 pagetable_type: int = MOCK_IOMMUPT_DEFAULT,
                 domain_kind: str = DOMAIN_MOCK) -> None:
        super().__init__()
        self.ioas = ioas
        self.auto = auto
        self.flags = flags
        self.nest_parent = bool(flags & IOMMU_HWPT_ALLOC_NEST_PARENT)
        self.dirty_supported = bool(flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
        self.dirty_enabled = False
        self.pagetable_type = pagetable_type
        self.domain_kind = domain_kind
        self.min_page = MOCK_PAGE_SIZE
        if domain_kind == DOMAIN_X86:
            self.min_page = X86_PAGE_SIZE
            self.aperture = (0, ULONG_MAX)
            self.granule = X86_PAGE_SIZE
        elif pagetable_type == MOCK_IOMMUPT_HUGE:
            self.aperture = (0, ULONG_MAX)
            self.granule = MOCK_HUGE_PAGE_SIZE
        else:
            self.aperture = (MOCK_APERTURE_START, MOCK_APERTURE_LAST)
            self.granule = MOCK_PAGE_SIZE
        self.dirty = IntervalSet()
        self.devices: set = set()
        self.attached_to_ioas = False

    def join_ioas(self) -> None:
        self.ioas.attach_domain(self)     # may raise; nothing changed then
        self.attached_to_ioas = True
        self.ioas.get()

    # Domain callbacks from the IOAS.
    def on_map(self, areas) -> None:
        pass

    def on_unmap(self, area) -> None:
        self.dirty.remove(area.iova, area.last + 1)

    def translate(self, iova: int):
        s, l = self.aperture
        if not s <= iova <= l:
            return None
        return self.ioas.translate(iova)

    def mark_dirty(self, start: int, end: int) -> None:
        g = self.granule
        self.dirty.add(start // g * g, -(-end // g) * g)

    def destroy(self) -> None:
        if self.attached_to_ioas:
            self.attached_to_ioas = False
            self.ioas.detach_domain(self)
            self.ioas.put()


class HwptNested(IommufdObject):
    kind = C.HWPT_NESTED

    def __init__(self, parent: HwptPaging, iotlb: int) -> None:
        super().__init__()
        self.parent = parent.get()
        self.iotlb = [iotlb] * MOCK_NESTED_DOMAIN_IOTLB_NUM
        self.devices: set = set()

    @property
    def dirty_supported(self):
        return False

    def translate(self, iova: int):
        return self.parent.translate(iova)

    def destroy(self) -> None:
        self.parent.put()


class Device(IommufdObject):
    kind = C.DEVICE
    domain_kind = DOMAIN_MOCK
    # [(start, last)] IOVA ranges the device can never use for DMA (the
    # kernel's iommu_get_resv_regions): reserved in the IOAS while attached
    resv_regions: tuple = ()

    def __init__(self, dev_flags: int) -> None:
        super().__init__()
        self.dev_flags = dev_flags
        self.hwpt = None
        self.cache = [IOMMU_TEST_DEV_CACHE_DEFAULT] * MOCK_DEV_CACHE_NUM
        self.pasids: dict[int, object] = {}
        self.users = 1                    # the driver's (selftest object's)

    def hw_info(self):
        """(IOMMU_HW_INFO_TYPE_*, vendor data) of the device's IOMMU."""
        return IOMMU_HW_INFO_TYPE_SELFTEST, (
            (0).to_bytes(4, "little") + IOMMU_HW_INFO_SELFTEST_REGVAL.to_bytes(4, "little"))

    @property
    def dirty_capable(self) -> bool:
        return not self.dev_flags & MOCK_FLAGS_DEVICE_NO_DIRTY

    @property
    def pasid_capable(self) -> bool:
        return bool(self.dev_flags & MOCK_FLAGS_DEVICE_PASID)

    # ---------------------------------------------------------- attachment
    def _check_compat(self, hwpt) -> None:
        paging = getattr(hwpt, "parent", hwpt)
        if paging.domain_kind != self.domain_kind:
            raise err(errno.EINVAL, f"a {self.domain_kind} device cannot attach to a "
                      f"{paging.domain_kind} domain")
        if getattr(hwpt, "dirty_supported", False) and not self.dirty_capable:
            raise err(errno.EINVAL, "device without dirty tracking cannot "
                      "attach to a dirty-tracking domain")

    def resolve_pt(self, ctx, pt_id: int):
        """IOAS -> reuse or create an auto HWPT; HWPT -> itself."""
        obj = ctx.lookup(pt_id, C.IOAS, C.HWPT_PAGING, C.HWPT_NESTED)
        if obj.kind != C.IOAS:
            self._check_compat(obj)
            return obj
        for d in obj.domains:
            if d.auto and not d.dead:
                try:
                    self._check_compat(d)
                except OSError:
                    continue
                return d
        hw = HwptPaging(obj, auto=True, domain_kind=self.domain_kind)
        hw.join_ioas()
        ctx.add(hw)
        return hw

    @staticmethod
    def _ioas_of(hwpt):
        return getattr(hwpt, "parent", hwpt).ioas

    def _reserve_in(self, ioas) -> None:
        """iopt_table_enforce_dev_resv_regions: EADDRINUSE over an area."""
        for s, l in self.resv_regions:
            if ioas.intersects_area(s, l) or ioas.intersects_allowed(s, l):
                raise err(errno.EADDRINUSE, f"reserved region [{s:#x}, {l:#x}] of the "
                          "device is mapped or allowed in the IOAS")
        for s, l in self.resv_regions:
            ioas.add_reserved(s, l, self)

    def attach(self, ctx, pt_id: int):
        if self.resv_regions:
            target = ctx.lookup(pt_id, C.IOAS, C.HWPT_PAGING, C.HWPT_NESTED)
            new_ioas = target if target.kind == C.IOAS else self._ioas_of(target)
            old_ioas = self._ioas_of(self.hwpt) if self.hwpt is not None else None
            if new_ioas is not old_ioas:
                self._reserve_in(new_ioas)
                try:
                    return self._attach(ctx, pt_id)
                except BaseException:
                    new_ioas.remove_reserved(self)
                    raise
        return self._attach(ctx, pt_id)

    def _attach(self, ctx, pt_id: int):
        hwpt = self.resolve_pt(ctx, pt_id)
        old = self.hwpt
        if old is hwpt:
            return hwpt
        hwpt.get()
        hwpt.devices.add(self)
        self.hwpt = hwpt
        if old is not None:
            self._release(ctx, old)
        return hwpt

    def _release(self, ctx, hwpt) -> None:
        if self.resv_regions and all(
                self._ioas_of(h) is not self._ioas_of(hwpt)
                for h in [self.hwpt, *self.pasids.values()] if h is not None):
            self._ioas_of(hwpt).remove_reserved(self)
        hwpt.devices.discard(self)
        hwpt.put()
        if getattr(hwpt, "auto", False) and hwpt.users == 0 and not hwpt.dead:
            ctx.remove(hwpt)

    def detach(self, ctx) -> None:
        for pasid in list(self.pasids):
            self._release(ctx, self.pasids.pop(pasid))
        if self.hwpt is not None:
            old, self.hwpt = self.hwpt, None
            self._release(ctx, old)

    def destroy(self) -> None:
        if self.hwpt is not None or self.pasids:
            self.detach(self.ctx)


# ===========================================================================
# ioctl handlers
# ===========================================================================

def h_hwpt_alloc(ctx, cmd, ucmd):
    if getattr(cmd, "__reserved"):
        raise err(errno.EOPNOTSUPP, "HWPT_ALLOC: __reserved must be 0")
    if (cmd.data_type == IOMMU_HWPT_DATA_NONE) == bool(cmd.data_len):
        raise err(errno.EINVAL, "data_type/data_len mismatch")
    idev = ctx.lookup(cmd.dev_id, C.DEVICE)
    pt = ctx.find(cmd.pt_id)
    if pt is None or pt.kind not in (C.IOAS, C.HWPT_PAGING):
        raise err(errno.EINVAL, f"pt_id {cmd.pt_id} is not an IOAS or a "
                  "paging HWPT")
    flags = cmd.flags
    if pt.kind == C.IOAS:
        valid = (IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING
                 | IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID)
        if flags & ~valid:
            raise err(errno.EOPNOTSUPP, "HWPT_ALLOC: unsupported flags")
        ptype = MOCK_IOMMUPT_DEFAULT
        if cmd.data_type != IOMMU_HWPT_DATA_NONE:
            if cmd.data_type != IOMMU_HWPT_DATA_SELFTEST or idev.domain_kind != DOMAIN_MOCK:
                raise err(errno.EOPNOTSUPP, "unsupported HWPT data type")
            blob = copy_struct_from_user(ucmd.caller, cmd.data_uptr,
                                         cmd.data_len, 8, 4)
            ptype = int.from_bytes(blob[4:8], "little")
            if ptype not in (MOCK_IOMMUPT_DEFAULT, MOCK_IOMMUPT_HUGE):
                raise err(errno.EOPNOTSUPP, "unknown mock pagetable_type")
        if flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING and not idev.dirty_capable:
            raise err(errno.EOPNOTSUPP, "device cannot track dirty pages")
        if flags & IOMMU_HWPT_FAULT_ID_VALID:
            ctx.lookup(cmd.fault_id, C.FAULT)
        hw = HwptPaging(pt, auto=False, flags=flags, pagetable_type=ptype,
                        domain_kind=idev.domain_kind)
        hw.join_ioas()
        cmd.out_hwpt_id = ctx.add(hw)
    else:
        if flags & ~IOMMU_HWPT_FAULT_ID_VALID:
            raise err(errno.EOPNOTSUPP, "nested HWPT: only FAULT_ID_VALID")
        if not pt.nest_parent or pt.auto:
            raise err(errno.EINVAL, "parent HWPT is not a NEST_PARENT")
        if cmd.data_type != IOMMU_HWPT_DATA_SELFTEST or idev.domain_kind != DOMAIN_MOCK:
            raise err(errno.EOPNOTSUPP, "unsupported nested data type")
        blob = copy_struct_from_user(ucmd.caller, cmd.data_uptr,
                                     cmd.data_len, 8, 4)
        if flags & IOMMU_HWPT_FAULT_ID_VALID:
            ctx.lookup(cmd.fault_id, C.FAULT)
        hw = HwptNested(pt, int.from_bytes(blob[0:4], "little"))
        cmd.out_hwpt_id = ctx.add(hw)
    ucmd.respond()
    return 0


def h_get_hw_info(ctx, cmd, ucmd):
    if cmd.flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE or _nz(getattr(cmd, "__reserved")):
        raise err(errno.EOPNOTSUPP, "GET_HW_INFO: unknown flags or __reserved")
    idev = ctx.lookup(cmd.dev_id, C.DEVICE)
    want = cmd.in_data_type if cmd.flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE \
        else IOMMU_HW_INFO_TYPE_DEFAULT
    dtype, blob = idev.hw_info()
    if want not in (IOMMU_HW_INFO_TYPE_DEFAULT, dtype):
        raise err(errno.EOPNOTSUPP, f"the device only reports hw info type {dtype:#x}")
    ulen = cmd.data_len
    n = min(ulen, len(blob))
    if n:
        ucmd.caller.write(cmd.data_uptr, blob[:n])
    if n < ulen:
        ucmd.caller.write(cmd.data_uptr + n, bytes(ulen - n))
    cmd.data_len = len(blob)
    cmd.out_data_type = dtype
    cmd.out_capabilities = IOMMU_HW_CAP_DIRTY_TRACKING if idev.dirty_capable else 0
    cmd.out_max_pasid_log2 = MOCK_PASID_WIDTH if idev.pasid_capable else 0
    ucmd.respond()
    return 0


def h_set_dirty_tracking(ctx, cmd, ucmd):
    if cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE:
        raise err(errno.EOPNOTSUPP, "SET_DIRTY_TRACKING: unknown flags")
    hw = ctx.lookup(cmd.hwpt_id, C.HWPT_PAGING)
    if not hw.dirty_supported:
        raise err(errno.EOPNOTSUPP, "HWPT was not allocated with DIRTY_TRACKING")
    enable = bool(cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
    if enable:
        hw.dirty.clear()
    hw.dirty_enabled = enable
    return 0


def _or_bits(caller, base: int, bits) -> None:
    """OR a set of bit numbers into the user u64 bitmap at ``base``."""
    words: dict[int, int] = {}
    for b in bits:
        words[b // 64] = words.get(b // 64, 0) | (1 << (b % 64))
    for w, v in sorted(words.items()):
        addr = base + w * 8
        cur = int.from_bytes(caller.read(addr, 8), "little")
        caller.write(addr, (cur | v).to_bytes(8, "little"))


def h_get_dirty_bitmap(ctx, cmd, ucmd):
    if cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR or getattr(cmd, "__reserved"):
        raise err(errno.EOPNOTSUPP, "GET_DIRTY_BITMAP: unknown flags/__reserved")
    hw = ctx.lookup(cmd.hwpt_id, C.HWPT_PAGING)
    if not hw.dirty_supported:
        raise err(errno.EOPNOTSUPP, "domain has no dirty tracking ops")
    iova, length, psize = cmd.iova, cmd.length, cmd.page_size
    last = iova + ((length - 1) & M64)
    if last > M64:
        raise err(errno.EOVERFLOW, "iova + length overflows")
    g = hw.ioas.iova_alignment
    end = (last + 1) & M64
    if iova & (g - 1) or end & (g - 1):
        raise err(errno.EINVAL, "range not aligned to the IOVA alignment")
    if not psize:
        raise err(errno.EINVAL, "page_size is 0")
    if iova & (psize - 1) or end & (psize - 1):
        raise err(errno.EINVAL, "range not aligned to page_size")
    bits = set()
    for area in hw.ioas.areas_in(iova, last):
        if area.revoked:
            continue
        s = max(area.iova, iova)
        e = min(area.last, last) + 1
        for ds, de in hw.dirty.overlaps(s, e):
            first = (ds - iova) // psize
            lastb = (de - 1 - iova) // psize
            bits.update(range(first, lastb + 1))
    _or_bits(ucmd.caller, cmd.data, bits)
    if not cmd.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR:
        gr = hw.granule
        hw.dirty.remove(iova // gr * gr, -(-(last + 1) // gr) * gr)
    return 0


def h_invalidate(ctx, cmd, ucmd):
    done = 0
    try:
        if getattr(cmd, "__reserved"):
            raise err(errno.EOPNOTSUPP, "HWPT_INVALIDATE: __reserved must be 0")
        if cmd.entry_num and (not cmd.data_uptr or not cmd.entry_len):
            raise err(errno.EINVAL, "entries without data pointer/length")
        obj = ctx.lookup(cmd.hwpt_id)
        if obj.kind != C.HWPT_NESTED:
            raise err(errno.EINVAL, "HWPT_INVALIDATE needs a nested HWPT")
        if cmd.data_type != IOMMU_HWPT_INVALIDATE_DATA_SELFTEST:
            raise err(errno.EINVAL, "mock nested HWPT: unsupported data_type")
        for i in range(cmd.entry_num):
            blob = copy_struct_from_user(
                ucmd.caller, cmd.data_uptr + i * cmd.entry_len, cmd.entry_len, 8, 8)
            flags = int.from_bytes(blob[0:4], "little")
            slot = int.from_bytes(blob[4:8], "little")
            if flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL:
                raise err(errno.EOPNOTSUPP, "unknown invalidate flags")
            if slot >= MOCK_NESTED_DOMAIN_IOTLB_NUM:
                raise err(errno.EINVAL, "iotlb_id out of range")
            if flags & IOMMU_TEST_INVALIDATE_FLAG_ALL:
                obj.iotlb = [0] * MOCK_NESTED_DOMAIN_IOTLB_NUM
            else:
                obj.iotlb[slot] = 0
            done += 1
    finally:
        cmd.entry_num = done
        ucmd.respond()
    return 0
