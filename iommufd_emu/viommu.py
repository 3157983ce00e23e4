"""vIOMMU, vDEVICE and HW queue objects and their ioctls (spec §6.8, §6.9, §6.11).

Kernel sources: drivers/iommu/iommufd/viommu.c (the ioctls and their check
order), eventq.c (vEVENTQ allocation), device.c (the vDEVICE tombstone),
selftest.c (the mock vIOMMU: IOMMU_VIOMMU_TYPE_SELFTEST, its loopback data and
mmap region, cache invalidation, the HW queue rules); docs/IOMMUFD_KERNEL_NOTES.md.

* ``Viommu``: on a NEST_PARENT paging HWPT (holds it). Nested HWPTs allocated
  on it hold it. ``vdevs`` maps virtual IDs to vDEVICEs; ``hw_queues`` the
  driver's queue slots. Hooks for the fd-returning families (gmemfs exec):
  ``veventqs`` (type -> vEVENTQ object with ``report(payload)``) and
  ``report_event``; ``mmap_offset``/``mmap_length``/``mmap_page`` (the region
  the selftest vIOMMU exposes for mmap() on the iommufd fd, registered in
  ``ctx.mmap_regions``).
* ``Vdevice``: a device's virtual ID in one vIOMMU (holds the vIOMMU; the
  device is not held: unbinding the device destroys the vDEVICE and leaves a
  tombstone ID, Device.unbind).
* ``HwQueue``: guest queue memory at a nesting-parent IOVA, pinned through an
  internal access on the parent's IOAS (the areas are locked: UNMAP -> EBUSY);
  queue ``i > 0`` depends on queue ``i - 1`` (which cannot be destroyed first).
"""

from __future__ import annotations

import errno

from . import context as C
from .context import IommufdObject
from .errors import err
from .domains import (IOMMU_VIOMMU_TYPE_SELFTEST, IOMMU_HW_QUEUE_TYPE_SELFTEST,
                      IOMMU_VEVENTQ_TYPE_SELFTEST, PAGE_SIZE, ULONG_MAX)
from .hwpt import (HwptNested, MOCK_DEV_CACHE_NUM, IOMMU_TEST_INVALIDATE_FLAG_ALL,
                   copy_struct_from_user, iommu_copy_struct_from_user, _nested_data)

__all__ = ["Viommu", "Vdevice", "HwQueue", "IOMMU_VEVENTQ_TYPE_SELFTEST"]

IOMMU_VIOMMU_TYPE_DEFAULT = 0
IOMMU_HW_QUEUE_TYPE_DEFAULT = 0
IOMMU_VEVENTQ_TYPE_DEFAULT = 0
IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xDEADBEEF
IOMMU_HWPT_FAULT_ID_VALID = 1 << 2
IOMMU_HWPT_ALLOC_PASID = 1 << 3
VIOMMU_SELFTEST_DATA_SIZE = 24       # struct iommu_viommu_selftest
VIOMMU_SELFTEST_DATA_MIN = 8         # offsetofend(out_data)
VIOMMU_MMAP_LENGTH = 2 * PAGE_SIZE   # the mock vIOMMU's two pages


class Viommu(IommufdObject):
    kind = C.VIOMMU

    def __init__(self, idev, hwpt, vtype: int) -> None:
        super().__init__()
        self.iommu = idev.iommu
        self.hwpt = hwpt.get()
        self.type = vtype
        self.vdevs: dict[int, "Vdevice"] = {}
        self.hw_queues: list = [None] * idev.iommu.hw_queue_max
        self.veventqs: dict[int, object] = {}   # type -> vEVENTQ (gmemfs exec)
        self.mmap_offset = 0
        self.mmap_length = 0
        self.mmap_page = None

    def find_dev(self, virt_id: int):
        """iommufd_viommu_find_dev: the device behind a virtual ID, or None."""
        v = self.vdevs.get(virt_id)
        return v.idev if v is not None else None

    def alloc_hwpt_nested(self, ctx, idev, flags: int, cmd, ucmd) -> "HwptNested":
        """viommu->ops->alloc_domain_nested: HWPT_ALLOC with this vIOMMU as
        pt_id (hwpt.py calls it on the object, which keeps imports going down)."""
        return alloc_hwpt_nested(ctx, idev, self, flags, cmd, ucmd)

    def report_event(self, vtype: int, payload: bytes) -> None:
        """iommufd_viommu_report_event: to the vEVENTQ of that type
        (EOPNOTSUPP when there is none)."""
        q = self.veventqs.get(vtype)
        if q is None:
            raise err(errno.EOPNOTSUPP, f"vIOMMU {self.id} has no vEVENTQ of type {vtype:#x}")
        q.report(payload)

    def alloc_mmap(self, ctx, length: int) -> int:
        """iommufd_viommu_alloc_mmap: the lowest free page-aligned offset of
        the context's mmap space at or above PAGE_SIZE."""
        regions = ctx.mmap_regions
        off = PAGE_SIZE
        for o in sorted(regions):
            if off + length <= o:
                break
            off = max(off, o + regions[o][1])
        regions[off] = (self, length)
        return off

    def cache_invalidate(self, caller, cmd):
        """mock_viommu_cache_invalidate: (entries handled, error or None).

        An empty array of the selftest type probes it. Otherwise the whole
        array is copied first (iommu_copy_struct_from_full_user_array: wrong
        type or no entries EINVAL, each entry by the extensible-struct rule:
        E2BIG / EFAULT, nothing handled then); entries are handled in order
        until the first error: unknown flags EOPNOTSUPP, cache_id > 3 EINVAL,
        a vdev_id that is no vDEVICE of this vIOMMU EINVAL."""
        if cmd.entry_num == 0 and cmd.data_type == IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST:
            return 0, None
        try:
            if cmd.data_type != IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST:
                raise err(errno.EINVAL, "mock vIOMMU: unsupported data_type")
            if not cmd.entry_num:
                raise err(errno.EINVAL, "no entries")
            n, ln = cmd.entry_num, cmd.entry_len
            if ln == 12:
                blob = caller.read(cmd.data_uptr, 12 * n)
                entries = [blob[12 * i:12 * i + 12] for i in range(n)]
            else:
                entries = [copy_struct_from_user(caller, cmd.data_uptr + ln * i, ln, 12, 0)
                           for i in range(n)]
        except OSError as e:
            return 0, e
        done = 0
        for e in entries:
            flags, vdev_id, cache_id = (int.from_bytes(e[k:k + 4], "little") for k in (0, 4, 8))
            if flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL:
                return done, err(errno.EOPNOTSUPP, "unknown invalidate flags")
            if cache_id >= MOCK_DEV_CACHE_NUM:
                return done, err(errno.EINVAL, "cache_id out of range")
            dev = self.find_dev(vdev_id)
            if dev is None:
                return done, err(errno.EINVAL, f"no vDEVICE with virtual ID {vdev_id:#x}")
            if flags & IOMMU_TEST_INVALIDATE_FLAG_ALL:
                dev.cache = [0] * MOCK_DEV_CACHE_NUM
            else:
                dev.cache[cache_id] = 0
            done += 1
        return done, None

    def destroy(self) -> None:
        if self.mmap_length and self.ctx is not None:
            self.ctx.mmap_regions.pop(self.mmap_offset, None)
        self.hwpt.put()


class Vdevice(IommufdObject):
    kind = C.VDEVICE

    def __init__(self, viommu: Viommu, idev, virt_id: int) -> None:
        super().__init__()
        self.viommu = viommu.get()
        self.idev = idev
        self.virt_id = virt_id
        viommu.vdevs[virt_id] = self
        idev.vdevice = self

    def destroy(self) -> None:
        """iommufd_vdevice_destroy / abort: leave the vIOMMU's table and the
        device (the device is not held; Device.unbind tombstones us)."""
        if self.viommu.vdevs.get(self.virt_id) is self:
            del self.viommu.vdevs[self.virt_id]
        if self.idev.vdevice is self:
            self.idev.vdevice = None
        self.viommu.put()


class HwQueue(IommufdObject):
    kind = C.HW_QUEUE

    def __init__(self, viommu: Viommu, qtype: int, index: int, base: int,
                 length: int) -> None:
        super().__init__()
        self.viommu = viommu.get()
        self.type = qtype
        self.index = index
        self.base = base
        self.length = length
        self.pins = None                    # Ioas.access_pin token
        self.prev = None                    # the queue this one depends on
        self.installed = False

    def destroy(self) -> None:
        if self.installed and self.viommu.hw_queues[self.index] is self:
            self.viommu.hw_queues[self.index] = None
        if self.prev is not None:
            self.prev.put()                 # iommufd_hw_queue_undepend
        if self.pins is not None:
            self.viommu.hwpt.ioas.access_unpin(self.pins)
            self.pins = None
        self.viommu.put()


# ===========================================================================
# ioctl handlers
# ===========================================================================

def h_viommu_alloc(ctx, cmd, ucmd):
    """iommufd_viommu_alloc_ioctl: flags / DEFAULT type (EOPNOTSUPP), the
    device (ENOENT), the driver's vIOMMU types (EOPNOTSUPP), a paging HWPT
    (ENOENT) that is a NEST_PARENT (EINVAL), the driver's viommu_init (the
    selftest data: in_data looped to out_data and to the first word of a
    two-page mmap region whose offset/length it returns)."""
    if cmd.flags or cmd.type == IOMMU_VIOMMU_TYPE_DEFAULT:
        raise err(errno.EOPNOTSUPP, "VIOMMU_ALLOC: flags or the default type")
    idev = ctx.lookup(cmd.dev_id, C.DEVICE)
    if cmd.type not in idev.iommu.viommu_types:
        raise err(errno.EOPNOTSUPP, f"{idev.iommu.name}: no vIOMMU type {cmd.type:#x}")
    hwpt = ctx.lookup(cmd.hwpt_id, C.HWPT_PAGING)
    if not hwpt.nest_parent:
        raise err(errno.EINVAL, "the vIOMMU's HWPT must be a NEST_PARENT")
    v = Viommu(idev, hwpt, cmd.type)
    cmd.out_viommu_id = ctx.add(v)
    if cmd.data_len:
        caller = ucmd.caller
        blob = bytearray(iommu_copy_struct_from_user(
            caller, cmd.data_uptr, cmd.data_len, VIOMMU_SELFTEST_DATA_SIZE,
            VIOMMU_SELFTEST_DATA_MIN))
        in_data = blob[0:4]
        v.mmap_length = VIOMMU_MMAP_LENGTH
        v.mmap_offset = v.alloc_mmap(ctx, VIOMMU_MMAP_LENGTH)
        v.mmap_page = bytearray(VIOMMU_MMAP_LENGTH)
        v.mmap_page[0:4] = in_data
        blob[4:8] = in_data
        blob[8:16] = v.mmap_offset.to_bytes(8, "little")
        blob[16:24] = v.mmap_length.to_bytes(8, "little")
        caller.write(cmd.data_uptr, bytes(blob[:min(cmd.data_len, VIOMMU_SELFTEST_DATA_SIZE)]))
    ucmd.respond()
    return 0


def h_vdevice_alloc(ctx, cmd, ucmd):
    """iommufd_vdevice_alloc_ioctl: virt_id > ULONG_MAX (EINVAL, never on
    64 bits), the vIOMMU (ENOENT), the device (ENOENT), another physical
    IOMMU (EINVAL), a device being unbound (ENOENT), a device with a vDEVICE
    already (EEXIST), a virtual ID taken in this vIOMMU (EEXIST)."""
    if cmd.virt_id > ULONG_MAX:
        raise err(errno.EINVAL, "virt_id beyond ULONG_MAX")
    v = ctx.lookup(cmd.viommu_id, C.VIOMMU)
    idev = ctx.lookup(cmd.dev_id, C.DEVICE)
    if idev.iommu is not v.iommu:
        raise err(errno.EINVAL, "device behind another IOMMU than the vIOMMU's")
    if idev.destroying:
        raise err(errno.ENOENT, "device is being unbound")
    if idev.vdevice is not None:
        raise err(errno.EEXIST, f"device {idev.id} already has vDEVICE {idev.vdevice.id}")
    if cmd.virt_id in v.vdevs:
        raise err(errno.EEXIST, f"virtual ID {cmd.virt_id:#x} is taken in vIOMMU {v.id}")
    vd = Vdevice(v, idev, cmd.virt_id)
    cmd.out_vdevice_id = ctx.add(vd)
    ucmd.respond()
    return 0


def h_hw_queue_alloc(ctx, cmd, ucmd):
    """iommufd_hw_queue_alloc_ioctl: flags / DEFAULT type (EOPNOTSUPP),
    length 0 (EINVAL), end overflow (EOVERFLOW), the vIOMMU (ENOENT), the
    driver's queue types (EOPNOTSUPP); then the pin of the page-rounded range
    through an internal access on the parent IOAS (iommufd_hw_queue_alloc_phys:
    ERANGE, ENOENT for a hole, EINVAL misaligned, EPERM; physically
    contiguous pages or EFAULT), then mock_hw_queue_init_phys (index >= max
    EINVAL, index taken EEXIST, index - 1 missing EIO; depends on it)."""
    if cmd.flags or cmd.type == IOMMU_HW_QUEUE_TYPE_DEFAULT:
        raise err(errno.EOPNOTSUPP, "HW_QUEUE_ALLOC: flags or the default type")
    if not cmd.length:
        raise err(errno.EINVAL, "length is 0")
    if cmd.nesting_parent_iova + cmd.length - 1 > ULONG_MAX:
        raise err(errno.EOVERFLOW, "nesting_parent_iova + length overflows")
    v = ctx.lookup(cmd.viommu_id, C.VIOMMU)
    if cmd.type not in v.iommu.hw_queue_types:
        raise err(errno.EOPNOTSUPP, f"{v.iommu.name}: no HW queue type {cmd.type:#x}")
    q = HwQueue(v, cmd.type, cmd.index, cmd.nesting_parent_iova, cmd.length)
    cmd.out_hw_queue_id = ctx.add(q)
    aligned = cmd.nesting_parent_iova & ~(PAGE_SIZE - 1)
    span = cmd.nesting_parent_iova - aligned + cmd.length + PAGE_SIZE - 1
    if span > ULONG_MAX:
        raise err(errno.ERANGE, "queue range overflows")
    ioas = v.hwpt.ioas
    q.pins = ioas.access_pin(aligned, span // PAGE_SIZE * PAGE_SIZE, write=False, lock=True)
    if not ioas.pins_contiguous(q.pins):
        raise err(errno.EFAULT, "the queue's pages are not physically contiguous")
    # mock_hw_queue_init_phys
    i = cmd.index
    if i >= len(v.hw_queues):
        raise err(errno.EINVAL, f"queue index {i} >= {len(v.hw_queues)}")
    if v.hw_queues[i] is not None:
        raise err(errno.EEXIST, f"queue index {i} is taken")
    if i and v.hw_queues[i - 1] is None:
        raise err(errno.EIO, f"queue index {i - 1} must exist first")
    if i:
        q.prev = v.hw_queues[i - 1].get()       # iommufd_hw_queue_depend
    v.hw_queues[i] = q
    q.installed = True
    ucmd.respond()
    return 0



def alloc_hwpt_nested(ctx, idev, v: Viommu, flags: int, cmd, ucmd) -> HwptNested:
    """IOMMU_HWPT_ALLOC with a vIOMMU pt_id (iommufd_viommu_alloc_hwpt_nested):
    the device behind the vIOMMU's IOMMU (EINVAL), flags other than
    FAULT_ID_VALID / ALLOC_PASID (EOPNOTSUPP), then the mock driver's
    mock_viommu_alloc_domain_nested."""
    if idev.iommu is not v.iommu:
        raise err(errno.EINVAL, "device behind another IOMMU than the vIOMMU's")
    if flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID):
        raise err(errno.EOPNOTSUPP, "nested HWPT: only FAULT_ID_VALID and ALLOC_PASID")
    iotlb = _nested_data(ucmd, cmd, flags)
    return HwptNested(v.hwpt, iotlb, flags=flags, viommu=v)
