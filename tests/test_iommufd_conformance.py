"""The rules the kernel's iommufd selftest checks, in-process (issue 16).

Each test names the kernel rule it checks and the kernel source it comes
from (docs/IOMMUFD_KERNEL_NOTES.md): drivers/iommu/iommufd/vfio_compat.c,
viommu.c, eventq.c, device.c, hw_pagetable.c, selftest.c, main.c.
"""

import errno

import pytest
from hypothesis import given, settings, strategies as st

import ioctl_abi as A
from iommufd_emu import dispatch
from fakes import FakeFileRef, IommufdHarness, errno_of as E, hwpt_alloc

PS = 4096
U64 = (1 << 64) - 1
BUF = 0x40000000
BUFSZ = 0x400000
AP = A.MOCK_APERTURE_START
RW = A.VFIO_DMA_MAP_FLAG_READ | A.VFIO_DMA_MAP_FLAG_WRITE


@pytest.fixture
def h():
    with IommufdHarness(regions=[(BUF, BUFSZ)]) as hh:
        yield hh


def u32(v):
    return v.to_bytes(4, "little")


def u64(v):
    return v.to_bytes(8, "little")


def sdata(iotlb=A.IOMMU_TEST_IOTLB_DEFAULT, ptype=0):
    return u32(iotlb) + u32(ptype)


# ======================================================================
# VFIO type1 compatibility (vfio_compat.c)

def vfio(h, cmd, data=b"", arg=None):
    if arg is not None:
        return dispatch.ioctl(h.ctx, cmd, arg, h.caller)
    return h.raw(cmd, data)


def map_dma(h, vaddr, size, iova, flags=RW, argsz=32):
    return vfio(h, A.VFIO_IOMMU_MAP_DMA, u32(argsz) + u32(flags) + u64(vaddr) + u64(iova) + u64(size))


def unmap_dma(h, iova, size, flags=0, argsz=24):
    vfio(h, A.VFIO_IOMMU_UNMAP_DMA, u32(argsz) + u32(flags) + u64(iova) + u64(size))
    return int.from_bytes(h.caller.read(h.ARG + 16, 8), "little")


def compat(h, version=A.VFIO_TYPE1v2_IOMMU):
    i = h.ioas_alloc()
    st_, hw, idev = h.mock_domain(i)
    h.ioctl("IOMMU_VFIO_IOAS", "iommu_vfio_ioas", op=A.IOMMU_VFIO_IOAS_SET, ioas_id=i)
    vfio(h, A.VFIO_SET_IOMMU, arg=version)
    return i


def test_vfio_check_order_argsz_then_flags_then_compat_ioas_vfio_compat_c(h):
    """map/unmap/get_info: argsz below the minimum EINVAL, unknown flags
    EINVAL, and only then the compat IOAS lookup (ENODEV)."""
    assert E(map_dma, h, BUF, PS, AP, argsz=1) == errno.EINVAL
    assert E(map_dma, h, BUF, PS, AP, flags=1 << 31) == errno.EINVAL
    assert E(map_dma, h, BUF, PS, AP) == errno.ENODEV
    assert E(unmap_dma, h, AP, PS, argsz=1) == errno.EINVAL
    assert E(unmap_dma, h, AP, PS, flags=1 << 31) == errno.EINVAL
    assert E(unmap_dma, h, AP, PS) == errno.ENODEV
    assert E(vfio, h, A.VFIO_IOMMU_GET_INFO, u32(1) + bytes(20)) == errno.EINVAL
    assert E(vfio, h, A.VFIO_IOMMU_GET_INFO, u32(24) + bytes(20)) == errno.ENODEV


def test_vfio_set_iommu_types_and_ENODEV_without_group_vfio_compat_c(h):
    """SET_IOMMU: types other than TYPE1/TYPE1v2 EINVAL before the compat
    IOAS lookup (ENODEV: "VFIO fails the set_iommu if there is no group")."""
    assert E(vfio, h, A.VFIO_SET_IOMMU, arg=A.VFIO_SPAPR_TCE_IOMMU) == errno.EINVAL
    assert E(vfio, h, A.VFIO_SET_IOMMU, arg=A.VFIO_TYPE1v2_IOMMU) == errno.ENODEV
    assert E(vfio, h, A.VFIO_SET_IOMMU, arg=A.VFIO_TYPE1_IOMMU) == errno.ENODEV


def test_vfio_noiommu_rules_vfio_compat_c(h):
    """NOIOMMU in no-iommu mode needs CAP_SYS_RAWIO (EPERM) and does nothing;
    no-iommu mode refuses TYPE1/TYPE1v2 (EINVAL)."""
    h.ctx.no_iommu_mode = True
    assert E(vfio, h, A.VFIO_SET_IOMMU, arg=A.VFIO_NOIOMMU_IOMMU) == errno.EPERM
    h.caller.caps.add("CAP_SYS_RAWIO")
    assert vfio(h, A.VFIO_SET_IOMMU, arg=A.VFIO_NOIOMMU_IOMMU) == 0
    assert E(vfio, h, A.VFIO_SET_IOMMU, arg=A.VFIO_TYPE1v2_IOMMU) == errno.EINVAL
    h.ctx.no_iommu_mode = False
    assert E(vfio, h, A.VFIO_SET_IOMMU, arg=A.VFIO_NOIOMMU_IOMMU) == errno.EINVAL


def test_vfio_check_extension_vfio_compat_c(h):
    """TYPE1, TYPE1v2, UNMAP_ALL, NOIOMMU (CONFIG_VFIO_NOIOMMU) are 1; the
    nesting type and UPDATE_VADDR 0; DMA_CC_IOMMU asks the compat IOAS."""
    for ext, want in ((A.VFIO_TYPE1_IOMMU, 1), (A.VFIO_TYPE1v2_IOMMU, 1), (A.VFIO_UNMAP_ALL, 1),
                      (A.VFIO_NOIOMMU_IOMMU, 1), (A.VFIO_TYPE1_NESTING_IOMMU, 0),
                      (A.VFIO_UPDATE_VADDR, 0), (77, 0)):
        assert vfio(h, A.VFIO_CHECK_EXTENSION, arg=ext) == want, ext
    assert E(vfio, h, A.VFIO_CHECK_EXTENSION, arg=A.VFIO_DMA_CC_IOMMU) == errno.ENODEV
    compat(h)
    assert vfio(h, A.VFIO_CHECK_EXTENSION, arg=A.VFIO_DMA_CC_IOMMU) == 1


def test_vfio_dirty_tracking_is_not_offered_vfio_compat_c(h):
    """VFIO_IOMMU_DIRTY_PAGES is not served (ENOTTY); the unmap flag
    GET_DIRTY_BITMAP is an unsupported flag (EINVAL)."""
    compat(h)
    assert E(vfio, h, A.VFIO_IOMMU_DIRTY_PAGES, bytes(16)) == errno.ENOTTY
    assert E(unmap_dma, h, AP, PS, flags=A.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) == errno.EINVAL
    for cmd in (A.VFIO_IOMMU_ENABLE, A.VFIO_IOMMU_DISABLE):
        assert E(vfio, h, cmd, bytes(8)) == errno.ENOTTY


def info(h, argsz, fill=0xAA):
    h.caller.write(h.SCRATCH, bytes([fill]) * 256)
    h.caller.write(h.SCRATCH, u32(argsz) + bytes(12))
    vfio(h, A.VFIO_IOMMU_GET_INFO, arg=h.SCRATCH)
    return h.caller.read(h.SCRATCH, 256)


def test_vfio_get_info_cap_chain_vfio_compat_c(h):
    """GET_INFO: flags PGSIZES|CAPS; argsz <- the full size (24 + DMA_AVAIL
    12 + IOVA_RANGE 16 + 16n); caps written only as far as argsz goes, next
    of DMA_AVAIL = offset of IOVA_RANGE; cap_offset 24 only when it all fits;
    nothing written beyond argsz (ioctl_check_buf)."""
    compat(h)
    full = 24 + 12 + 16 + 16
    for argsz in range(16, full + 8):
        b = info(h, argsz)
        assert b[argsz:256] == b"\xaa" * (256 - argsz), argsz
        assert int.from_bytes(b[0:4], "little") == full
        assert int.from_bytes(b[4:8], "little") == A.VFIO_IOMMU_INFO_PGSIZES | A.VFIO_IOMMU_INFO_CAPS
        assert int.from_bytes(b[8:16], "little") & PS
        if argsz >= 24:
            assert int.from_bytes(b[16:20], "little") == (24 if argsz >= full else 0)
    b = info(h, full)
    assert b[24:36] == (u32(A.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL | 1 << 16) + u32(36) + u32(0xFFFFFFFF))
    assert b[36:52] == u32(A.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE | 1 << 16) + u32(0) + u32(1) + u32(0)
    assert b[52:68] == u64(AP) + u64(A.MOCK_APERTURE_LAST)


def test_vfio_type1v2_never_cuts_type1_cuts_areas_vfio_compat_c():
    """TYPE1v2: unmapping part of an area ENOENT (size 0 copied back);
    TYPE1 disables huge pages on the compat IOAS (OPTION_HUGE_PAGES reads 0)
    and unmap cuts areas at both ends first; the pins stay balanced."""
    for version in (A.VFIO_TYPE1v2_IOMMU, A.VFIO_TYPE1_IOMMU):
        with IommufdHarness(regions=[(BUF, BUFSZ)]) as h:
            i = compat(h, version)
            opt = h.ioctl("IOMMU_OPTION", "iommu_option", option_id=A.IOMMU_OPTION_HUGE_PAGES,
                          op=A.IOMMU_OPTION_OP_GET, object_id=i)
            assert opt.val64 == (0 if version == A.VFIO_TYPE1_IOMMU else 1)
            map_dma(h, BUF, 16 * PS, AP)
            if version == A.VFIO_TYPE1v2_IOMMU:
                assert E(unmap_dma, h, AP + 4 * PS, PS) == errno.ENOENT
                assert int.from_bytes(h.caller.read(h.ARG + 16, 8), "little") == 0
                assert unmap_dma(h, AP, 16 * PS) == 16 * PS
            else:
                for k in (4, 0, 15, 7, 8):
                    assert unmap_dma(h, AP + k * PS, PS) == PS
                assert unmap_dma(h, 0, 0, flags=A.VFIO_DMA_UNMAP_FLAG_ALL) == 11 * PS
            assert h.system.pins == {}
            assert unmap_dma(h, AP, PS) == 0          # an empty unmap succeeds


def test_vfio_unmap_all_needs_zero_iova_and_size_vfio_compat_c(h):
    compat(h)
    map_dma(h, BUF, 4 * PS, AP)
    assert E(unmap_dma, h, AP, 4 * PS, flags=A.VFIO_DMA_UNMAP_FLAG_ALL) == errno.EINVAL
    assert unmap_dma(h, 0, 0, flags=A.VFIO_DMA_UNMAP_FLAG_ALL) == 4 * PS


def test_vfio_set_iommu_type1_with_mappings_is_EINVAL_iopt_disable_large_pages(h):
    """iopt_disable_large_pages refuses while a domain holds mappings."""
    i = compat(h)
    map_dma(h, BUF, PS, AP)
    assert E(vfio, h, A.VFIO_SET_IOMMU, arg=A.VFIO_TYPE1_IOMMU) == errno.EINVAL


def test_vfio_map_dma_without_read_or_write_is_accepted_vfio_compat_c(h):
    """The compat MAP_DMA does not require READ or WRITE (IOAS_MAP does)."""
    compat(h)
    map_dma(h, BUF, PS, AP, flags=0)
    assert unmap_dma(h, AP, PS) == PS


# reference model for the property test: areas as [start, end) with the kernel's rules
@settings(max_examples=60, deadline=None)
@given(st.booleans(), st.lists(st.tuples(st.booleans(), st.integers(0, 31), st.integers(1, 8)),
                               min_size=1, max_size=25))
def test_vfio_unmap_matches_reference_model_property(type1, ops):
    """Random MAP_DMA / UNMAP_DMA of pages in a 32-page window: TYPE1 unmaps
    exactly the requested pages that are mapped (cuts), TYPE1v2 only whole
    areas, stopping at the first straddling one with ENOENT; the returned size
    and the pins always match the model."""
    with IommufdHarness(regions=[(BUF, BUFSZ)]) as h:
        compat(h, A.VFIO_TYPE1_IOMMU if type1 else A.VFIO_TYPE1v2_IOMMU)
        areas = []                                   # sorted [s, e) page ranges
        for is_map, p, n in ops:
            s, e = p, min(32, p + n)
            if is_map:
                if any(a < e and s < b for a, b in areas):
                    assert E(map_dma, h, BUF + s * PS, (e - s) * PS, AP + s * PS) == errno.EEXIST
                    continue
                map_dma(h, BUF + s * PS, (e - s) * PS, AP + s * PS)
                areas = sorted(areas + [(s, e)])
                continue
            if type1:
                want = sum(max(0, min(b, e) - max(a, s)) for a, b in areas)
                cut = []
                for a, b in areas:
                    cut += [(x, y) for x, y in ((a, min(b, s)), (max(a, e), b)) if x < y]
                areas = sorted(cut)
                assert unmap_dma(h, AP + s * PS, (e - s) * PS) == want * PS
            else:
                removed, keep, failed = 0, [], False
                for a, b in areas:
                    if failed or b <= s or a >= e:
                        keep.append((a, b))
                    elif a < s or b > e:
                        failed = True
                        keep.append((a, b))
                    else:
                        removed += b - a
                areas = keep
                if failed:
                    assert E(unmap_dma, h, AP + s * PS, (e - s) * PS) == errno.ENOENT
                    assert int.from_bytes(h.caller.read(h.ARG + 16, 8), "little") == removed * PS
                else:
                    assert unmap_dma(h, AP + s * PS, (e - s) * PS) == removed * PS
        ioas = h.ctx.vfio_ioas
        assert [(a.iova, a.last + 1) for a in ioas.areas.values()] == \
            [(AP + a * PS, AP + b * PS) for a, b in areas]
        pinned = sum(b - a for a, b in areas)
        key = ("mm", h.caller.pid)
        assert sum(h.system.pin_count(key, BUF // PS + k) for k in range(32)) == pinned


# ======================================================================
# vIOMMU / vDEVICE / HW queue (viommu.c, eventq.c, device.c, selftest.c)

@pytest.fixture
def vi(h):
    """The iommufd_viommu fixture: a mock device, a nesting parent, a vIOMMU,
    a nested HWPT on it."""
    i = h.ioas_alloc()
    stdev, _, idev = h.mock_domain(i)
    parent = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_NEST_PARENT)
    v = viommu_alloc(h, idev, parent)
    nested = hwpt_alloc(h, idev, v, data=sdata())
    return dict(ioas=i, stdev=stdev, idev=idev, parent=parent, viommu=v, nested=nested)


def viommu_alloc(h, dev, hwpt, vtype=A.IOMMU_VIOMMU_TYPE_SELFTEST, data=None, **kw):
    if data is not None:
        h.caller.write(h.SCRATCH + 0x4000, data)
        kw.update(data_uptr=h.SCRATCH + 0x4000, data_len=len(data))
    return h.ioctl("IOMMU_VIOMMU_ALLOC", "iommu_viommu_alloc", dev_id=dev, hwpt_id=hwpt,
                   type=vtype, **kw).out_viommu_id


def vdevice_alloc(h, v, dev, virt_id):
    return h.ioctl("IOMMU_VDEVICE_ALLOC", "iommu_vdevice_alloc", viommu_id=v, dev_id=dev,
                   virt_id=virt_id).out_vdevice_id


def hw_queue(h, v, index, iova, length, qtype=A.IOMMU_HW_QUEUE_TYPE_SELFTEST, **kw):
    return h.ioctl("IOMMU_HW_QUEUE_ALLOC", "iommu_hw_queue_alloc", viommu_id=v, type=qtype,
                   index=index, nesting_parent_iova=iova, length=length, **kw).out_hw_queue_id


def replace(h, stdev, pt):
    return h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", stdev,
                      mock_domain_replace={"pt_id": pt}).mock_domain_replace.pt_id


def test_viommu_alloc_order_ENOENT_for_unknown_device_viommu_c(h):
    """flags or the DEFAULT type EOPNOTSUPP first; then an unknown dev_id is
    ENOENT (before the type is asked of the driver), the driver's type
    EOPNOTSUPP, the HWPT ENOENT, a non-NEST_PARENT EINVAL."""
    assert E(viommu_alloc, h, 0, 0, vtype=0) == errno.EOPNOTSUPP
    assert E(viommu_alloc, h, 0, 0, flags=1) == errno.EOPNOTSUPP
    assert E(viommu_alloc, h, 0, 0) == errno.ENOENT
    assert E(viommu_alloc, h, 0, 0, vtype=0xDEAD) == errno.ENOENT
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    assert E(viommu_alloc, h, idev, 0, vtype=0xDEAD) == errno.EOPNOTSUPP
    assert E(viommu_alloc, h, idev, 0) == errno.ENOENT
    assert E(viommu_alloc, h, idev, i) == errno.ENOENT          # an IOAS is no HWPT
    plain = hwpt_alloc(h, idev, i)
    assert E(viommu_alloc, h, idev, plain) == errno.EINVAL


def test_viommu_holds_parent_and_nested_holds_viommu_EBUSY_viommu_c(h, vi):
    assert E(h.destroy, vi["parent"]) == errno.EBUSY
    assert E(h.destroy, vi["viommu"]) == errno.EBUSY
    h.destroy(vi["nested"])
    h.destroy(vi["viommu"])
    h.destroy(vi["parent"])


def test_viommu_selftest_data_loopback_and_mmap_region_selftest_c(h, vi):
    """mock_viommu_init: out_data = in_data, a two-page region for mmap() at
    an offset of the context's mmap space; data longer than the kernel's or
    shorter than out_data EINVAL (iommu_copy_struct_from_user)."""
    blob = u32(0xBEEF) + bytes(20)
    v = viommu_alloc(h, vi["idev"], vi["parent"], data=blob)
    back = h.caller.read(h.SCRATCH + 0x4000, 24)
    assert back[4:8] == u32(0xBEEF)
    off, ln = int.from_bytes(back[8:16], "little"), int.from_bytes(back[16:24], "little")
    assert ln == 2 * PS and off >= PS and off % PS == 0
    assert h.ctx.mmap_regions[off][1] == ln
    assert h.ctx.lookup(v).mmap_page[:4] == u32(0xBEEF)
    assert E(viommu_alloc, h, vi["idev"], vi["parent"], data=blob + b"\0") == errno.EINVAL
    assert E(viommu_alloc, h, vi["idev"], vi["parent"], data=blob[:7]) == errno.EINVAL
    h.destroy(v)
    assert off not in h.ctx.mmap_regions


def test_vdevice_alloc_rules_viommu_c(h, vi):
    """ENOENT for an unknown vIOMMU, then for an unknown device; one vDEVICE
    per device (EEXIST), one device per virtual ID in a vIOMMU (EEXIST)."""
    assert E(vdevice_alloc, h, 99, vi["idev"], 0x99) == errno.ENOENT
    assert E(vdevice_alloc, h, vi["viommu"], 99, 0x99) == errno.ENOENT
    assert E(vdevice_alloc, h, vi["ioas"], vi["idev"], 0x99) == errno.ENOENT   # wrong type
    vd = vdevice_alloc(h, vi["viommu"], vi["idev"], 0x99)
    assert E(vdevice_alloc, h, vi["viommu"], vi["idev"], 0x88) == errno.EEXIST
    _, _, idev2 = h.mock_domain(vi["ioas"])
    assert E(vdevice_alloc, h, vi["viommu"], idev2, 0x99) == errno.EEXIST
    vdevice_alloc(h, vi["viommu"], idev2, 0x88)
    assert E(h.destroy, vi["viommu"]) == errno.EBUSY
    h.destroy(vd)
    vdevice_alloc(h, vi["viommu"], vi["idev"], 0x99)


def test_attach_to_viommu_nested_needs_vdevice_ENOENT_selftest_c(h, vi):
    """mock_domain_nop_attach: iommufd_viommu_get_vdev_id fails (ENOENT)
    until the device has a vDEVICE on the nested HWPT's vIOMMU."""
    assert E(replace, h, vi["stdev"], vi["nested"]) == errno.ENOENT
    vdevice_alloc(h, vi["viommu"], vi["idev"], 0x99)
    assert replace(h, vi["stdev"], vi["nested"]) == vi["nested"]
    assert E(h.destroy, vi["nested"]) == errno.EBUSY
    # TRIGGER_VEVENT: the device is attached through the vIOMMU, which has no vEVENTQ
    assert E(h.test_cmd, "IOMMU_TEST_OP_TRIGGER_VEVENT",
             trigger_vevent={"dev_id": vi["idev"]}) == errno.EOPNOTSUPP
    replace(h, vi["stdev"], vi["ioas"])
    assert E(h.test_cmd, "IOMMU_TEST_OP_TRIGGER_VEVENT",
             trigger_vevent={"dev_id": vi["idev"]}) == errno.ENOENT


def test_vdevice_tombstone_when_device_goes_first_device_c(h, vi):
    """iommufd_device_remove_vdev: unbinding the device destroys its vDEVICE
    and keeps the ID reserved: IOMMU_DESTROY of it ENOENT, no new object gets
    it, the vIOMMU is free again."""
    vd = vdevice_alloc(h, vi["viommu"], vi["idev"], 0x99)
    h.destroy(vi["stdev"])
    assert E(h.destroy, vd) == errno.ENOENT
    ids = {h.ioas_alloc() for _ in range(3)}
    assert vd not in ids
    h.destroy(vi["nested"])
    h.destroy(vi["viommu"])
    h.ctx.close()
    assert len(h.ctx) == 0


def inv(h, v, entries, entry_len=12, data_type=A.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, num=None):
    blob = b"".join(e.ljust(entry_len, b"\0")[:entry_len] for e in entries)
    h.caller.write(h.SCRATCH, blob)
    try:
        h.ioctl("IOMMU_HWPT_INVALIDATE", "iommu_hwpt_invalidate", hwpt_id=v, data_uptr=h.SCRATCH,
                data_type=data_type, entry_len=entry_len,
                entry_num=len(entries) if num is None else num)
    finally:
        h.done = int.from_bytes(h.caller.read(h.ARG + 24, 4), "little")


def ent(flags=0, vdev=0x99, cache=0):
    return u32(flags) + u32(vdev) + u32(cache)


def cache(h, dev, slot, val):
    h.test_cmd("IOMMU_TEST_OP_DEV_CHECK_CACHE", dev, check_dev_cache={"id": slot, "cache": val})


def test_viommu_invalidate_and_dev_check_cache_selftest_c(h, vi):
    """mock_viommu_cache_invalidate: an empty array probes the type; the
    wrong type EINVAL; entries in order until the first error (unknown flags
    EOPNOTSUPP, cache_id > 3 EINVAL, a virtual ID without vDEVICE EINVAL),
    ``entry_num`` <- entries done; FLAG_ALL clears every slot."""
    dev = vi["idev"]
    vdevice_alloc(h, vi["viommu"], dev, 0x99)
    inv(h, vi["viommu"], [], num=0)
    assert E(inv, h, vi["viommu"], [ent()], data_type=A.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID) \
        == errno.EINVAL and h.done == 0
    assert E(inv, h, vi["viommu"], [ent(vdev=0x9)]) == errno.EINVAL and h.done == 0
    assert E(inv, h, vi["viommu"], [ent(cache=4)]) == errno.EINVAL and h.done == 0
    assert E(inv, h, vi["viommu"], [ent(0, 0x99, 0), ent(0xFFFFFFFF, 0x99, 1)]) == errno.EOPNOTSUPP
    assert h.done == 1
    cache(h, dev, 0, 0)
    cache(h, dev, 1, A.IOMMU_TEST_DEV_CACHE_DEFAULT)
    assert E(cache, h, dev, 1, 0) == errno.EINVAL
    assert E(cache, h, dev, 4, 0) == errno.EINVAL
    inv(h, vi["viommu"], [ent(flags=A.IOMMU_TEST_INVALIDATE_FLAG_ALL)])
    for s in range(4):
        cache(h, dev, s, 0)


def test_viommu_invalidate_entry_len_uses_copy_struct_from_user_iommu_h(h, vi):
    """The vIOMMU copies the whole array (iommu_copy_struct_from_full_user_array):
    a shorter entry reads as zeros (here: virtual ID 0, no vDEVICE: EINVAL),
    a longer one must be zero beyond 12 bytes (E2BIG)."""
    vdevice_alloc(h, vi["viommu"], vi["idev"], 0x99)
    assert E(inv, h, vi["viommu"], [ent()[:4]], entry_len=4) == errno.EINVAL
    inv(h, vi["viommu"], [ent(cache=2) + bytes(4)], entry_len=16)
    cache(h, vi["idev"], 2, 0)
    assert E(inv, h, vi["viommu"], [ent(cache=3) + u32(1)], entry_len=16) == errno.E2BIG
    assert h.done == 0


def test_hw_queue_rules_viommu_c_selftest_c(h, vi):
    """The HW queue sequence of the selftest: DEFAULT type EOPNOTSUPP, length
    0 EINVAL, overflow EOVERFLOW, an unmapped IOVA ENOENT; index 1 before 0
    EIO, index >= 2 EINVAL; a taken index EEXIST; the queue's area cannot be
    unmapped (EBUSY), another can; queue 0 cannot go before queue 1 (EBUSY)."""
    v, i = vi["viommu"], vi["ioas"]
    assert E(hw_queue, h, v, 0, AP, PS, qtype=0) == errno.EOPNOTSUPP
    assert E(hw_queue, h, v, 0, AP, 0) == errno.EINVAL
    assert E(hw_queue, h, v, 0, U64, PS) == errno.EOVERFLOW
    assert E(hw_queue, h, v, 0, AP, PS) == errno.ENOENT
    assert E(hw_queue, h, 999, 0, AP, PS) == errno.ENOENT
    iova = h.map(i, BUF, PS)
    iova2 = h.map(i, BUF + PS, PS)
    assert E(hw_queue, h, v, 1, iova, PS) == errno.EIO
    assert E(hw_queue, h, v, 2, iova, PS) == errno.EINVAL
    q0 = hw_queue(h, v, 0, iova, PS)
    assert E(hw_queue, h, v, 0, iova, PS) == errno.EEXIST
    assert E(h.unmap, i, iova, PS) == errno.EBUSY
    h.unmap(i, iova2, PS)
    q1 = hw_queue(h, v, 1, iova + PS // 2, PS // 2)
    assert E(h.destroy, q0) == errno.EBUSY
    assert E(h.destroy, v) == errno.EBUSY
    h.destroy(q1)
    h.destroy(q0)
    h.unmap(i, iova, PS)
    assert h.system.pins == {}


def test_hw_queue_multi_page_user_memory_is_EFAULT_not_contiguous_viommu_c(h, vi):
    """iommufd_hw_queue_alloc_phys: the queue's pages must be physically
    contiguous (EFAULT); the emulator only knows that of one page (or one
    huge page of a hugetlbfs file); the pins are dropped again."""
    iova = h.map(vi["ioas"], BUF, 4 * PS)
    assert E(hw_queue, h, vi["viommu"], 0, iova, 2 * PS) == errno.EFAULT
    assert h.ctx.vfio_ioas is None
    h.unmap(vi["ioas"], iova, 4 * PS)


def test_veventq_alloc_check_order_then_no_fd_eventq_c(h, vi):
    """flags / __reserved / DEFAULT type EOPNOTSUPP, depth 0 EINVAL, the
    vIOMMU ENOENT, then the fd: EOPNOTSUPP on a FUSE mount."""
    def q(**kw):
        kw.setdefault("type", A.IOMMU_VEVENTQ_TYPE_SELFTEST)
        kw.setdefault("veventq_depth", 2)
        kw.setdefault("viommu_id", vi["viommu"])
        return h.ioctl("IOMMU_VEVENTQ_ALLOC", "iommu_veventq_alloc", **kw)
    assert E(q, type=0) == errno.EOPNOTSUPP
    assert E(q, flags=1) == errno.EOPNOTSUPP
    assert E(q, __reserved=1) == errno.EOPNOTSUPP
    assert E(q, veventq_depth=0) == errno.EINVAL
    assert E(q, viommu_id=vi["nested"]) == errno.ENOENT
    assert E(q) == errno.EOPNOTSUPP


def test_trigger_iopf_unknown_device_ENOENT_else_0_selftest_c(h, vi):
    assert E(h.test_cmd, "IOMMU_TEST_OP_TRIGGER_IOPF", trigger_iopf={"dev_id": 99}) == errno.ENOENT
    h.test_cmd("IOMMU_TEST_OP_TRIGGER_IOPF", trigger_iopf={"dev_id": vi["idev"], "pasid": 1})


def test_viommu_of_another_context_is_ENOENT_main_c(vi, h):
    with IommufdHarness(caller=h.caller) as other:
        assert E(vdevice_alloc, other, vi["viommu"], vi["idev"], 1) == errno.ENOENT


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["viommu", "vdev", "nested", "replace", "destroy",
                                           "unbind", "queue", "mock"]),
                          st.integers(1, 24), st.integers(0, 3)), max_size=40))
def test_viommu_object_graph_random_ops_property(ops):
    """Random vIOMMU / vDEVICE / nested / HW queue / destroy / unbind
    sequences: every failure is a kernel errno, a referenced object is never
    destroyed, and closing the context returns every pin and ID."""
    with IommufdHarness(regions=[(BUF, BUFSZ)]) as h:
        i = h.ioas_alloc()
        st_, _, idev = h.mock_domain(i)
        parent = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_NEST_PARENT)
        iova = h.map(i, BUF, 8 * PS)
        for op, n, k in ops:
            try:
                if op == "viommu":
                    viommu_alloc(h, idev if k else n, parent if k < 3 else n)
                elif op == "vdev":
                    vdevice_alloc(h, n, idev if k < 2 else n, k)
                elif op == "nested":
                    hwpt_alloc(h, idev, n, data=sdata(), flags=A.IOMMU_HWPT_ALLOC_PASID * (k & 1))
                elif op == "replace":
                    replace(h, st_, n)
                elif op == "destroy":
                    h.destroy(n)
                elif op == "unbind":
                    h.destroy(n)
                elif op == "queue":
                    hw_queue(h, n, k, iova + k * PS, PS)
                else:
                    h.mock_domain(i if k else n)
            except OSError as e:
                assert e.errno in (errno.ENOENT, errno.EINVAL, errno.EBUSY, errno.EEXIST,
                                   errno.EOPNOTSUPP, errno.EIO, errno.EADDRINUSE), (op, e)
            for o in h.ctx.objects():
                assert o.users >= 0
        h.ctx.close()
        assert len(h.ctx) == 0 and h.system.pins == {}


# ======================================================================
# nested HWPT with ALLOC_PASID, PASID rules (hw_pagetable.c, device.c, selftest.c)

@pytest.fixture
def pas(h):
    i = h.ioas_alloc()
    stdev, _, idev = h.mock_domain(i, dev_flags=A.MOCK_FLAGS_DEVICE_PASID)
    parent = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_NEST_PARENT)
    s2 = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_PASID)
    n0 = hwpt_alloc(h, idev, parent, flags=A.IOMMU_HWPT_ALLOC_PASID, data=sdata())
    n1 = hwpt_alloc(h, idev, parent, flags=A.IOMMU_HWPT_ALLOC_PASID, data=sdata())
    return dict(ioas=i, stdev=stdev, idev=idev, parent=parent, s2=s2, n0=n0, n1=n1)


def pasid(h, st_, op, p, pt=0):
    name = {"attach": "PASID_ATTACH", "replace": "PASID_REPLACE", "detach": "PASID_DETACH",
            "check": "PASID_CHECK_HWPT"}[op]
    field = {"attach": "pasid_attach", "replace": "pasid_replace", "detach": "pasid_detach",
             "check": "pasid_check"}[op]
    args = {"pasid": p}
    if op in ("attach", "replace"):
        args["pt_id"] = pt
    elif op == "check":
        args["hwpt_id"] = pt
    return h.test_cmd("IOMMU_TEST_OP_" + name, st_, **{field: args})


def test_nested_alloc_pasid_and_fault_id_checked_after_allocation_hw_pagetable_c(h, pas):
    """Nested allocation accepts ALLOC_PASID (and FAULT_ID_VALID with it):
    the fault object is looked up after the HWPT is made (ENOENT, the HWPT
    and its ID dropped again); other flags EOPNOTSUPP."""
    before = h.ioas_alloc()
    h.destroy(before)
    assert E(hwpt_alloc, h, pas["idev"], pas["parent"], data=sdata(), fault_id=77,
             flags=A.IOMMU_HWPT_FAULT_ID_VALID | A.IOMMU_HWPT_ALLOC_PASID) == errno.ENOENT
    assert h.ioas_alloc() == before
    assert E(hwpt_alloc, h, pas["idev"], pas["parent"], data=sdata(),
             flags=A.IOMMU_HWPT_ALLOC_DIRTY_TRACKING) == errno.EOPNOTSUPP


def test_paging_nest_parent_with_fault_id_is_EOPNOTSUPP_before_fault_lookup_hw_pagetable_c(h, pas):
    """iommufd_hwpt_paging_alloc: NEST_PARENT | FAULT_ID_VALID EOPNOTSUPP,
    not the ENOENT of the (nonexistent) fault object; FAULT_ID_VALID alone
    reaches the fault lookup: ENOENT."""
    assert E(hwpt_alloc, h, pas["idev"], pas["ioas"], fault_id=0,
             flags=A.IOMMU_HWPT_ALLOC_NEST_PARENT | A.IOMMU_HWPT_FAULT_ID_VALID) == errno.EOPNOTSUPP
    assert E(hwpt_alloc, h, pas["idev"], pas["ioas"], fault_id=0,
             flags=A.IOMMU_HWPT_FAULT_ID_VALID) == errno.ENOENT


def test_pasid_compat_rules_device_c(h, pas):
    """iommufd_hwpt_pasid_compat: RID on a domain that is not PASID-compatible
    -> PASID attach EINVAL; once PASIDs are attached, the RID cannot move to
    such a domain (EINVAL); a PASID needs a PASID-compatible HWPT, never an
    IOAS (EINVAL); attach over an attached PASID EBUSY; replace of a detached
    one EINVAL; detach of a detached one is fine."""
    st_ = pas["stdev"]
    pasid(h, st_, "detach", 100)
    replace(h, st_, pas["parent"])
    assert E(pasid, h, st_, "attach", 100, pas["s2"]) == errno.EINVAL
    replace(h, st_, pas["s2"])
    pasid(h, st_, "attach", 100, pas["n0"])
    assert E(replace, h, st_, pas["parent"]) == errno.EINVAL
    assert E(pasid, h, st_, "attach", 100, pas["n1"]) == errno.EBUSY
    pasid(h, st_, "check", 100, pas["n0"])
    pasid(h, st_, "detach", 100)
    pasid(h, st_, "check", 100, 0)
    assert E(pasid, h, st_, "attach", 100, pas["parent"]) == errno.EINVAL
    assert E(pasid, h, st_, "attach", 100, pas["ioas"]) == errno.EINVAL
    assert E(pasid, h, st_, "replace", 200, pas["s2"]) == errno.EINVAL
    pasid(h, st_, "attach", 200, pas["s2"])
    assert E(pasid, h, st_, "replace", 200, pas["ioas"]) == errno.EINVAL
    pasid(h, st_, "replace", 200, pas["n1"])
    pasid(h, st_, "check", 200, pas["n1"])
    assert E(h.destroy, pas["n1"]) == errno.EBUSY
    pasid(h, st_, "detach", 200)
    h.destroy(pas["n1"])


def test_pasid_1024_replace_fails_once_with_ENOMEM_selftest_c(h, pas):
    """mock_domain_set_dev_pasid_nop: the second set_dev_pasid of PASID 1024
    (IOMMU_TEST_PASID_RESERVED) fails with ENOMEM and the old domain stays;
    detaching (the blocked domain) clears the flag."""
    st_ = pas["stdev"]
    replace(h, st_, pas["s2"])
    pasid(h, st_, "attach", 1024, pas["s2"])
    assert E(pasid, h, st_, "replace", 1024, pas["n0"]) == errno.ENOMEM
    pasid(h, st_, "check", 1024, pas["s2"])
    pasid(h, st_, "replace", 1024, pas["n0"])
    pasid(h, st_, "detach", 1024)
    pasid(h, st_, "attach", 1024, pas["s2"])
    assert E(pasid, h, st_, "replace", 1024, pas["n0"]) == errno.ENOMEM


def test_pasid_on_device_without_pasid_is_EINVAL_device_c(h, pas):
    """A device without MOCK_FLAGS_DEVICE_PASID: no PASID attach (EINVAL);
    a PASID-compatible domain still serves its RID."""
    st2, _, _ = h.mock_domain(pas["ioas"])
    replace(h, st2, pas["n0"])
    replace(h, st2, pas["ioas"])
    assert E(pasid, h, st2, "attach", 100, pas["s2"]) == errno.EINVAL


# ======================================================================
# IOMMU_OPTION RLIMIT_MODE (ioas.c iommufd_option_rlimit_mode)

def rlimit(h, op, val=0, caller=None):
    return h.ioctl("IOMMU_OPTION", "iommu_option", option_id=A.IOMMU_OPTION_RLIMIT_MODE, op=op,
                   val64=val, caller=caller)


def test_rlimit_mode_set_needs_CAP_SYS_RESOURCE_first_ioas_c(h):
    """SET without CAP_SYS_RESOURCE (the thread's effective set) is EPERM
    before the EBUSY of a busy context and the EINVAL of a bad value; GET
    needs nothing."""
    h.ioas_alloc()
    assert E(rlimit, h, A.IOMMU_OPTION_OP_SET, 2) == errno.EPERM
    assert rlimit(h, A.IOMMU_OPTION_OP_GET).val64 == 0
    h.caller.caps.add("CAP_SYS_RESOURCE")
    assert E(rlimit, h, A.IOMMU_OPTION_OP_SET, 1) == errno.EBUSY
    with IommufdHarness(caller=h.caller) as h2:
        assert E(rlimit, h2, A.IOMMU_OPTION_OP_SET, 2) == errno.EINVAL
        rlimit(h2, A.IOMMU_OPTION_OP_SET, 1)
        assert rlimit(h2, A.IOMMU_OPTION_OP_GET).val64 == 1


def test_cap_ipc_lock_decides_accounting_pages_c(h):
    """A mapping task without CAP_IPC_LOCK is charged (user mode); with it not."""
    i = h.ioas_alloc()
    h.mock_domain(i)
    h.map(i, BUF, 2 * PS)
    assert h.system.locked == {("user", h.caller.uid): 2}
    h.caller.caps.add("CAP_IPC_LOCK")
    h.map(i, BUF + 2 * PS, 2 * PS)
    assert h.system.locked == {("user", h.caller.uid): 2}


# ======================================================================
# MD_CHECK_MAP / MD_CHECK_REFS over MAP_FILE (selftest.c md_check_pa / check_refs)

def test_md_check_map_over_map_file_by_file_identity_selftest_c(h):
    """The user pointer of the selftest is its own mmap of the memfd: the
    domain's translation (file, offset) must be what the caller maps at uptr
    (file identity and offset), else EINVAL; an unmapped uptr EFAULT; the
    pins are counted through that mapping (MD_CHECK_REFS)."""
    f = FakeFileRef("shmem", size=16 * PS)
    fd = h.caller.add_fd(f)
    MAPPED = 0x50000000
    h.caller.mmap(MAPPED, 16 * PS, file=(f, 0))
    other = FakeFileRef("shmem", size=16 * PS)
    h.caller.mmap(0x60000000, 16 * PS, file=(other, 0))
    i = h.ioas_alloc()
    _, hw, _ = h.mock_domain(i)
    iova = h.map_file(i, fd, 2 * PS, 4 * PS)

    def check(uptr, length=4 * PS, at=iova):
        h.test_cmd("IOMMU_TEST_OP_MD_CHECK_MAP", hw,
                   check_map={"iova": at, "length": length, "uptr": uptr})

    check(MAPPED + 2 * PS)
    check(MAPPED + 3 * PS, length=PS, at=iova + PS)
    assert E(check, MAPPED) == errno.EINVAL                 # another offset
    assert E(check, 0x60000000 + 2 * PS) == errno.EINVAL    # another file
    assert E(check, 0x70000000) == errno.EFAULT             # nothing mapped there
    assert E(check, BUF) == errno.EINVAL                    # process memory

    def refs(uptr, length, n):
        h.test_cmd("IOMMU_TEST_OP_MD_CHECK_REFS", check_refs={"length": length, "uptr": uptr,
                                                             "refs": n})
    refs(MAPPED + 2 * PS, 4 * PS, 1)
    refs(MAPPED, 2 * PS, 0)
    assert E(refs, MAPPED, 4 * PS, 1) == errno.EIO
    h.unmap(i, iova, 4 * PS)
    refs(MAPPED, 16 * PS, 0)


# ======================================================================
# domain kinds (selftest.c mock_domain_alloc_pgtable)

def test_domain_kinds_aperture_alignment_and_dirty_per_hwpt_selftest_c(h):
    """The default mock domain: aperture [MOCK_APERTURE_START,
    MOCK_APERTURE_LAST], alignment 2 KiB; the huge one: the page table's
    56-bit aperture, smallest page PAGE_SIZE (MOCK_HUGE_PAGE_SIZE |
    PAGE_SIZE); dirty bits belong to each HWPT, not to the IOAS."""
    i = h.ioas_alloc()
    _, auto, idev = h.mock_domain(i)
    io = h.ctx.lookup(i)
    assert io.iova_alignment == A.MOCK_PAGE_SIZE
    huge = hwpt_alloc(h, idev, i, data=sdata(ptype=A.MOCK_IOMMUPT_HUGE),
                      flags=A.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
    assert io.iova_alignment == PS
    hw = h.ctx.lookup(huge)
    assert hw.aperture == (0, (1 << 56) - 1) and hw.granule == A.MOCK_HUGE_PAGE_SIZE
    small = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
    iova = h.map(i, BUF, 0x200000, iova=AP)
    for x in (huge, small):
        h.ioctl("IOMMU_HWPT_SET_DIRTY_TRACKING", "iommu_hwpt_set_dirty_tracking",
                hwpt_id=x, flags=A.IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
    h.caller.write(h.SCRATCH, b"\x01" + bytes(63))
    h.test_cmd("IOMMU_TEST_OP_DIRTY", small, dirty={"iova": iova, "length": 0x200000,
                                                    "page_size": A.MOCK_PAGE_SIZE,
                                                    "uptr": h.SCRATCH})
    assert list(h.ctx.lookup(small).dirty) == [(iova, iova + A.MOCK_PAGE_SIZE)]
    assert list(h.ctx.lookup(huge).dirty) == []
    assert list(h.ctx.lookup(auto).dirty) == []
    assert E(hwpt_alloc, h, idev, i, data=sdata(ptype=A.MOCK_IOMMUPT_AMDV1)) == errno.EOPNOTSUPP


def test_vfio_table_rows_have_struct_and_argsz_minimum_vfio_compat_c():
    """The VFIO rows of the one dispatch table: argsz minimum =
    offsetofend(last mandatory member) of the struct (iova_pgsizes of the
    info, size of map and unmap); the integer-argument commands have none."""
    ffi, t = A.ffi, dispatch.VFIO_TABLE

    def end(struct, member):
        return ffi.offsetof(f"struct {struct}", member) + ffi.sizeof(
            ffi.typeof(f"struct {struct}").fields[[f[0] for f in ffi.typeof(
                f"struct {struct}").fields].index(member)][1].type)

    assert t[A.VFIO_IOMMU_GET_INFO].min_size == end("vfio_iommu_type1_info", "iova_pgsizes")
    assert t[A.VFIO_IOMMU_MAP_DMA].min_size == end("vfio_iommu_type1_dma_map", "size")
    assert t[A.VFIO_IOMMU_UNMAP_DMA].min_size == end("vfio_iommu_type1_dma_unmap", "size")
    for cmd in (A.VFIO_GET_API_VERSION, A.VFIO_CHECK_EXTENSION, A.VFIO_SET_IOMMU):
        assert t[cmd].min_size == 0 and t[cmd].struct == ""
    assert set(t) == {A.VFIO_GET_API_VERSION, A.VFIO_CHECK_EXTENSION, A.VFIO_SET_IOMMU,
                      A.VFIO_IOMMU_GET_INFO, A.VFIO_IOMMU_MAP_DMA, A.VFIO_IOMMU_UNMAP_DMA}
