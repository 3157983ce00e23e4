"""HWPT and device objects (spec §6) with selftest mock-domain semantics (§10.4).

* ``HwptPaging``: a paging domain of some ``domains.DomainKind`` (aperture,
  page sizes, dirty granule), joined to its IOAS's domain list at creation
  (``Ioas.attach_domain``: alignment, aperture reservations, pins). Its
  translation *is* the IOAS's area table (every non-revoked area of the IOAS
  is mapped in every domain of it), limited to the aperture. Its IOPTE state
  is its own: dirty bits live in an ``IntervalSet`` of IOVA ranges rounded out
  to the domain's dirty granule, so two domains of one IOAS differ like the
  kernel's do.
* ``HwptNested``: mock nested HWPT over a NEST_PARENT paging parent, or on a
  vIOMMU (viommu.py); four IOTLB slots; DMA through it uses the parent's
  translation (stage 1 is identity: there is no guest page table to walk).
* ``Device``: a bound device (driver-held: IOMMU_DESTROY -> EBUSY) of an
  ``domains.IommuModel``; RID and PASID attachments with the core's rules
  (device.c) and the mock driver's (selftest.c), its vDEVICE.

Kernel sources: drivers/iommu/iommufd/hw_pagetable.c (HWPT_ALLOC check order,
HWPT_INVALIDATE), device.c (attach/replace, PASID compatibility, vDEVICE
tombstone), selftest.c (mock domains, nested allocation, cache invalidation);
docs/IOMMUFD_KERNEL_NOTES.md.
"""

from __future__ import annotations

import errno

from intervals import IntervalSet

from . import context as C
from .context import IommufdObject
from .domains import (DomainKind, MOCK_DEFAULT, MOCK_IOMMU, MOCK_APERTURE_START,
                      MOCK_APERTURE_LAST, MOCK_PAGE_SIZE, MOCK_HUGE_PAGE_SIZE,
                      MOCK_IOMMUPT_DEFAULT, MOCK_IOMMUPT_HUGE)
from .errors import err
from .eventq import leave_hwpt
from .pages import ULONG_MAX

MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0
MOCK_FLAGS_DEVICE_PASID = 1 << 2
MOCK_DEV_FLAGS = MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_PASID
MOCK_PASID_WIDTH = 20
IOMMU_TEST_PASID_RESERVED = 1024

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
    """The extensible-struct rule (copy_struct_from_user): shorter than
    ``min_size`` -> EINVAL; a longer user struct must be zero beyond ``ksize``
    (E2BIG); the missing tail of a shorter one reads as zero; EFAULT."""
    if usize < min_size:
        raise err(errno.EINVAL, f"user data size {usize} < {min_size}")
    if usize > ksize:
        tail = caller.read(uptr + ksize, usize - ksize)
        if any(tail):
            raise err(errno.E2BIG, "non-zero bytes beyond the kernel data struct")
    n = min(usize, ksize)
    return caller.read(uptr, n) + bytes(ksize - n)


def iommu_copy_struct_from_user(caller, uptr: int, usize: int, ksize: int,
                                min_size: int) -> bytes:
    """Driver data (include/linux/iommu.h __iommu_copy_struct_from_user):
    shorter than the first version of the struct or *longer than the
    kernel's* -> EINVAL (not E2BIG); EFAULT."""
    if usize < min_size or usize > ksize:
        raise err(errno.EINVAL, f"driver data length {usize} not in [{min_size}, {ksize}]")
    return caller.read(uptr, usize) + bytes(ksize - usize)


class HwptPaging(IommufdObject):
    kind = C.HWPT_PAGING

    def __init__(self, ioas, *, auto: bool, flags: int = 0,
                 domain: DomainKind = MOCK_DEFAULT, iommu=MOCK_IOMMU) -> None:
        super().__init__()
        self.ioas = ioas
        self.auto = auto
        self.flags = flags
        self.domain = domain
        self.iommu = iommu                  # the driver that owns the domain
        self.nest_parent = bool(flags & IOMMU_HWPT_ALLOC_NEST_PARENT)
        self.dirty_supported = bool(flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
        self.pasid_compat = bool(flags & IOMMU_HWPT_ALLOC_PASID)
        self.dirty_enabled = False
        self.fault = None                   # eventq.Fault of IOMMU_HWPT_FAULT_ID_VALID
        self.dirty = IntervalSet()          # this domain's dirty IOPTEs (IOVA ranges)
        self.devices: set = set()
        self.attached_to_ioas = False

    # The IOAS sees a domain through its kind (Ioas.attach_domain).
    @property
    def aperture(self):
        return self.domain.aperture

    @property
    def min_page(self) -> int:
        return self.domain.min_page

    @property
    def granule(self) -> int:
        return self.domain.dirty_granule

    @property
    def domain_kind(self) -> str:
        """The domain kind's name ("mock", "mock-huge", "x86")."""
        return self.domain.name

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
        if self.fault is not None:
            self.fault.put()


class HwptNested(IommufdObject):
    """A mock nested domain: over a NEST_PARENT paging parent, or allocated on
    a vIOMMU (then it holds the vIOMMU, which holds the parent)."""

    kind = C.HWPT_NESTED

    def __init__(self, parent: HwptPaging, iotlb: int, *, flags: int = 0,
                 viommu=None) -> None:
        super().__init__()
        self.viommu = viommu.get() if viommu is not None else None
        self.parent = parent if viommu is not None else parent.get()
        self.iommu = parent.iommu
        self.pasid_compat = bool(flags & IOMMU_HWPT_ALLOC_PASID)
        self.fault = None
        self.iotlb = [iotlb] * MOCK_NESTED_DOMAIN_IOTLB_NUM
        self.devices: set = set()

    @property
    def dirty_supported(self):
        return False

    def translate(self, iova: int):
        return self.parent.translate(iova)

    def destroy(self) -> None:
        if self.viommu is not None:
            self.viommu.put()
        else:
            self.parent.put()
        if self.fault is not None:
            self.fault.put()


def paging_of(hwpt):
    """The paging domain behind an attachment (a nested HWPT's parent)."""
    return hwpt if hwpt.kind == C.HWPT_PAGING else hwpt.parent


class Device(IommufdObject):
    """A bound device (an iommufd_device). Driver-held: IOMMU_DESTROY is
    EBUSY; it goes when its driver unbinds it (SELFTEST object destroy)."""

    kind = C.DEVICE

    def __init__(self, dev_flags: int, iommu=MOCK_IOMMU) -> None:
        super().__init__()
        self.dev_flags = dev_flags
        self.iommu = iommu
        self.hwpt = None
        self.cache = [IOMMU_TEST_DEV_CACHE_DEFAULT] * MOCK_DEV_CACHE_NUM
        self.pasids: dict[int, object] = {}
        self.vdevice = None               # its vDEVICE (viommu.Vdevice), at most one
        self.viommu = None                # vIOMMU of the nested HWPT it is attached to
        self.vdev_id = 0                  # ... and its virtual ID there (TRIGGER_VEVENT)
        self.destroying = False
        self.pasid_1024_fake_error = False
        self.resv_in: dict = {}           # Ioas -> attachments reserving our regions there
        self.users = 1                    # the driver's (selftest object's)

    def hw_info(self):
        """(IOMMU_HW_INFO_TYPE_*, vendor data) of the device's IOMMU."""
        return self.iommu.hw_info(self)

    @property
    def dirty_capable(self) -> bool:
        return not self.dev_flags & MOCK_FLAGS_DEVICE_NO_DIRTY

    @property
    def pasid_capable(self) -> bool:
        return bool(self.dev_flags & MOCK_FLAGS_DEVICE_PASID)

    # ---------------------------------------------------------- attachment
    def _check_driver(self, hwpt) -> None:
        """mock_domain_nop_attach: a domain of another driver cannot be
        attached; a dirty-tracking domain needs a dirty-capable device; a
        nested domain of a vIOMMU needs the device's vDEVICE on that vIOMMU
        (iommufd_viommu_get_vdev_id: ENOENT)."""
        if hwpt.iommu is not self.iommu:
            raise err(errno.EINVAL, "domain of another IOMMU driver")
        if getattr(hwpt, "dirty_supported", False) and not self.dirty_capable:
            raise err(errno.EINVAL, "device without dirty tracking cannot "
                      "attach to a dirty-tracking domain")
        v = getattr(hwpt, "viommu", None)
        if v is not None and (self.vdevice is None or self.vdevice.viommu is not v):
            raise err(errno.ENOENT, "no vDEVICE of this device on the HWPT's vIOMMU")

    def _check_pasid_compat(self, hwpt, pasid: int) -> None:
        """iommufd_hwpt_pasid_compat (device.c): a RID domain that is not
        PASID-compatible excludes PASID attachments, and a PASID attachment
        needs a PASID-compatible domain (IOMMU_HWPT_ALLOC_PASID)."""
        if pasid == 0:
            if not hwpt.pasid_compat and self.pasids:
                raise err(errno.EINVAL, "PASIDs are attached: the RID domain "
                          "must be PASID-compatible")
            return
        if not hwpt.pasid_compat:
            raise err(errno.EINVAL, "HWPT was not allocated with IOMMU_HWPT_ALLOC_PASID")
        if self.hwpt is not None and not self.hwpt.pasid_compat:
            raise err(errno.EINVAL, "the RID is attached to a domain that is not "
                      "PASID-compatible")

    def resolve_pt(self, ctx, pt_id: int, pasid: int = 0):
        """IOAS -> reuse or create an auto HWPT; HWPT -> itself."""
        obj = ctx.lookup(pt_id, C.IOAS, C.HWPT_PAGING, C.HWPT_NESTED)
        if obj.kind != C.IOAS:
            self._check_driver(obj)
            self._check_pasid_compat(obj, pasid)
            return obj
        if pasid:
            raise err(errno.EINVAL, "PASID attach to an IOAS: automatic domains "
                      "are not PASID-compatible")
        for d in obj.domains:
            if getattr(d, "auto", False) and not d.dead:
                try:
                    self._check_driver(d)
                    self._check_pasid_compat(d, pasid)
                except OSError:
                    continue
                return d
        hw = HwptPaging(obj, auto=True, domain=self.iommu.auto_kind(self),
                        iommu=self.iommu)
        self._check_pasid_compat(hw, pasid)
        hw.join_ioas()
        ctx.add(hw)
        return hw

    def _reserve_regions(self, hwpt) -> None:
        """iopt_table_enforce_dev_resv_regions: the device's reserved regions
        (MSI windows; none for a mock device) in the IOAS of a paging domain
        it attaches to, owned by the device, until it leaves that IOAS."""
        regions = self.iommu.reserved_regions(self)
        if not regions:
            return
        ioas = paging_of(hwpt).ioas
        n = self.resv_in.get(ioas, 0)
        if n == 0:
            try:
                for first, last in regions:
                    ioas.add_reserved(first, last, self)
            except BaseException:
                ioas.remove_reserved(self)
                raise
        self.resv_in[ioas] = n + 1

    def _unreserve_regions(self, hwpt) -> None:
        if not self.resv_in:
            return
        ioas = paging_of(hwpt).ioas
        n = self.resv_in.get(ioas, 0) - 1
        if n <= 0:
            self.resv_in.pop(ioas, None)
            ioas.remove_reserved(self)
        else:
            self.resv_in[ioas] = n

    def _take(self, ctx, hwpt) -> None:
        """Hold ``hwpt`` for an attachment, its IOAS reserving our regions
        (EADDRINUSE over an area or an allowed range); an automatic domain
        made for this attachment goes again when that fails
        (iommufd_device_auto_get_domain)."""
        try:
            self._reserve_regions(hwpt)
        except BaseException:
            if getattr(hwpt, "auto", False) and hwpt.users == 0 and not hwpt.dead:
                ctx.remove(hwpt)
            raise
        hwpt.get()
        hwpt.devices.add(self)

    def attach(self, ctx, pt_id: int):
        """Attach (or replace) the RID: iommufd_device_attach/replace."""
        hwpt = self.resolve_pt(ctx, pt_id)
        old = self.hwpt
        if old is hwpt:
            return hwpt
        self._take(ctx, hwpt)
        self.hwpt = hwpt
        v = getattr(hwpt, "viommu", None)
        self.viommu, self.vdev_id = (v, self.vdevice.virt_id) if v is not None else (None, 0)
        if old is not None:
            self._release(ctx, old)
        return hwpt

    def _release(self, ctx, hwpt, pasid: int = 0) -> None:
        leave_hwpt(hwpt, self, pasid)         # its pending page requests: INVALID
        hwpt.devices.discard(self)
        hwpt.put()
        self._unreserve_regions(hwpt)
        if getattr(hwpt, "auto", False) and hwpt.users == 0 and not hwpt.dead:
            ctx.remove(hwpt)

    # ---------------------------------------------------------------- PASID
    def pasid_attach(self, ctx, pasid: int, pt_id: int, replace: bool):
        """iommufd_device_attach/replace with a PASID, then the mock driver's
        set_dev_pasid (whose PASID 1024 fails its second call with ENOMEM, to
        test the core's roll back: IOMMU_TEST_PASID_RESERVED)."""
        if not self.pasid_capable or pasid >= 1 << MOCK_PASID_WIDTH:
            raise err(errno.EINVAL, "the device cannot attach this PASID")
        old = self.pasids.get(pasid)
        if replace and old is None:
            raise err(errno.EINVAL, "PASID not attached")
        if not replace and old is not None:
            raise err(errno.EBUSY, "PASID already attached")
        hwpt = self.resolve_pt(ctx, pt_id, pasid)
        if old is hwpt:
            return hwpt
        if pasid == IOMMU_TEST_PASID_RESERVED:
            if self.pasid_1024_fake_error:
                self.pasid_1024_fake_error = False
                raise err(errno.ENOMEM, "mock driver: the second set_dev_pasid of "
                          "PASID 1024 fails (IOMMU_TEST_PASID_RESERVED)")
            self.pasid_1024_fake_error = True
        self._take(ctx, hwpt)
        self.pasids[pasid] = hwpt
        if old is not None:
            self._release(ctx, old, pasid)
        return hwpt

    def pasid_detach(self, ctx, pasid: int) -> None:
        old = self.pasids.pop(pasid, None)
        if pasid == IOMMU_TEST_PASID_RESERVED:
            self.pasid_1024_fake_error = False      # set_dev_pasid(blocked)
        if old is not None:
            self._release(ctx, old, pasid)

    def detach(self, ctx) -> None:
        for pasid in list(self.pasids):
            self.pasid_detach(ctx, pasid)
        if self.hwpt is not None:
            old, self.hwpt = self.hwpt, None
            self.viommu, self.vdev_id = None, 0
            self._release(ctx, old)

    def unbind(self, ctx) -> None:
        """iommufd_device_unbind: a vDEVICE still pointing at us is destroyed
        by the kernel and leaves a tombstone ID (device.c
        iommufd_device_remove_vdev); then every attachment is dropped."""
        self.destroying = True
        if self.vdevice is not None and not self.vdevice.dead:
            ctx.tombstone(self.vdevice)
        self.detach(ctx)

    def destroy(self) -> None:
        if self.hwpt is not None or self.pasids or self.vdevice is not None:
            self.unbind(self.ctx)


# ===========================================================================
# ioctl handlers
# ===========================================================================

def h_hwpt_alloc(ctx, cmd, ucmd):
    """iommufd_hwpt_alloc (hw_pagetable.c), in the kernel's order: reserved,
    data_type/data_len, device (ENOENT), pt_id of any type (EINVAL), then per
    pt_id type the allocation with its own checks, and only then the fault
    object of FAULT_ID_VALID (ENOENT), the new HWPT being discarded."""
    if getattr(cmd, "__reserved"):
        raise err(errno.EOPNOTSUPP, "HWPT_ALLOC: __reserved must be 0")
    if (cmd.data_type == IOMMU_HWPT_DATA_NONE) == bool(cmd.data_len):
        raise err(errno.EINVAL, "data_type/data_len mismatch")
    idev = ctx.lookup(cmd.dev_id, C.DEVICE)
    pt = ctx.find(cmd.pt_id)
    if pt is None:
        raise err(errno.EINVAL, f"pt_id {cmd.pt_id} is no object")
    flags = cmd.flags
    if pt.kind == C.IOAS:
        hw = _alloc_paging(ctx, idev, pt, flags, cmd, ucmd)
    elif pt.kind == C.HWPT_PAGING:
        hw = _alloc_nested(ctx, idev, pt, flags, cmd, ucmd)
    elif pt.kind == C.VIOMMU:
        hw = pt.alloc_hwpt_nested(ctx, idev, flags, cmd, ucmd)   # viommu.py
    else:
        raise err(errno.EINVAL, f"pt_id {cmd.pt_id} is a {pt.kind}, not an IOAS, "
                  "a paging HWPT or a vIOMMU")
    cmd.out_hwpt_id = ctx.add(hw)
    if flags & IOMMU_HWPT_FAULT_ID_VALID:
        hw.fault = ctx.lookup(cmd.fault_id, C.FAULT).get()
    ucmd.respond()
    return 0


def _driver_data(ucmd, cmd) -> bytes | None:
    """The iommu_hwpt_selftest blob (min: iotlb, kernel size 8), or None."""
    if not cmd.data_len:
        return None
    return iommu_copy_struct_from_user(ucmd.caller, cmd.data_uptr, cmd.data_len, 8, 4)


def _alloc_paging(ctx, idev, ioas, flags, cmd, ucmd) -> HwptPaging:
    """iommufd_hwpt_paging_alloc, then the driver's domain_alloc_paging_flags."""
    valid = (IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING
             | IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID)
    if flags & ~valid:
        raise err(errno.EOPNOTSUPP, "HWPT_ALLOC: unsupported flags")
    if flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING and not idev.dirty_capable:
        raise err(errno.EOPNOTSUPP, "device cannot track dirty pages")
    if flags & IOMMU_HWPT_FAULT_ID_VALID and flags & IOMMU_HWPT_ALLOC_NEST_PARENT:
        raise err(errno.EOPNOTSUPP, "a nesting parent cannot have a fault queue")
    blob = None
    if cmd.data_type != IOMMU_HWPT_DATA_NONE:
        if cmd.data_type != IOMMU_HWPT_DATA_SELFTEST:
            raise err(errno.EOPNOTSUPP, "unsupported HWPT data type")
        blob = _driver_data(ucmd, cmd)
    kind = idev.iommu.paging_kind(idev, cmd.data_type, blob)
    hw = HwptPaging(ioas, auto=False, flags=flags, domain=kind, iommu=idev.iommu)
    hw.join_ioas()
    return hw


def _nested_data(ucmd, cmd, flags) -> int:
    """The mock driver's nested allocation (mock_domain_alloc_nested /
    __mock_domain_alloc_nested): flags other than PASID -> EOPNOTSUPP, data
    type -> EOPNOTSUPP, the data (min iotlb) -> EINVAL/EFAULT. The iotlb."""
    if flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID):
        raise err(errno.EOPNOTSUPP, "nested HWPT: only FAULT_ID_VALID and ALLOC_PASID")
    if cmd.data_type != IOMMU_HWPT_DATA_SELFTEST:
        raise err(errno.EOPNOTSUPP, "unsupported nested data type")
    blob = _driver_data(ucmd, cmd)
    return int.from_bytes(blob[0:4], "little")


def _alloc_nested(ctx, idev, parent, flags, cmd, ucmd) -> HwptNested:
    """iommufd_hwpt_nested_alloc: flags (EOPNOTSUPP), parent a user-allocated
    NEST_PARENT domain of the device's driver (EINVAL), then the driver."""
    if flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID):
        raise err(errno.EOPNOTSUPP, "nested HWPT: only FAULT_ID_VALID and ALLOC_PASID")
    if parent.auto or not parent.nest_parent or parent.iommu is not idev.iommu:
        raise err(errno.EINVAL, "parent HWPT is not a NEST_PARENT of this driver")
    iotlb = _nested_data(ucmd, cmd, flags)
    return HwptNested(parent, iotlb, flags=flags)


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
    """iommufd_hwpt_invalidate: reserved, entries without pointer/length
    (EINVAL), the object (ENOENT), a nested HWPT or a vIOMMU (else EINVAL);
    ``entry_num`` <- entries handled, written back whatever happened."""
    done = 0
    try:
        if getattr(cmd, "__reserved"):
            raise err(errno.EOPNOTSUPP, "HWPT_INVALIDATE: __reserved must be 0")
        if cmd.entry_num and (not cmd.data_uptr or not cmd.entry_len):
            raise err(errno.EINVAL, "entries without data pointer/length")
        obj = ctx.lookup(cmd.hwpt_id)
        if obj.kind == C.HWPT_NESTED:
            done, e = _nested_invalidate(ucmd.caller, obj, cmd)
        elif obj.kind == C.VIOMMU:
            done, e = obj.cache_invalidate(ucmd.caller, cmd)
        else:
            raise err(errno.EINVAL, "HWPT_INVALIDATE needs a nested HWPT or a vIOMMU")
        if e is not None:
            raise e
    finally:
        cmd.entry_num = done
        ucmd.respond()
    return 0


def _nested_invalidate(caller, hw, cmd):
    """mock_domain_cache_invalidate_user: (entries handled, error or None)."""
    if cmd.data_type != IOMMU_HWPT_INVALIDATE_DATA_SELFTEST:
        return 0, err(errno.EINVAL, "mock nested HWPT: unsupported data_type")
    done = 0
    try:
        for i in range(cmd.entry_num):
            blob = iommu_copy_struct_from_user(
                caller, cmd.data_uptr + i * cmd.entry_len, cmd.entry_len, 8, 8)
            flags = int.from_bytes(blob[0:4], "little")
            slot = int.from_bytes(blob[4:8], "little")
            if flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL:
                raise err(errno.EOPNOTSUPP, "unknown invalidate flags")
            if slot >= MOCK_NESTED_DOMAIN_IOTLB_NUM:
                raise err(errno.EINVAL, "iotlb_id out of range")
            if flags & IOMMU_TEST_INVALIDATE_FLAG_ALL:
                hw.iotlb = [0] * MOCK_NESTED_DOMAIN_IOTLB_NUM
            else:
                hw.iotlb[slot] = 0
            done += 1
    except OSError as e:
        return done, e
    return done, None
