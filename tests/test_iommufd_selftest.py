"""HWPT / device ioctls and IOMMU_TEST_CMD ops (spec §6, §10)."""

import errno

import pytest

import ioctl_abi as A
from fakes import FakeCaller, FakeFileRef, IommufdHarness, errno_of as E, hwpt_alloc

PS = 4096
U64 = (1 << 64) - 1
RW = A.IOMMU_IOAS_MAP_READABLE | A.IOMMU_IOAS_MAP_WRITEABLE
BUF = 0x40000000
BUFSZ = 0x400000
AP = 0x1000000


@pytest.fixture
def h():
    with IommufdHarness(regions=[(BUF, BUFSZ)]) as hh:
        yield hh


def selftest_data(iotlb=A.IOMMU_TEST_IOTLB_DEFAULT, ptype=0):
    return iotlb.to_bytes(4, "little") + ptype.to_bytes(4, "little")


# ================================================================= §10.5 ops

def test_unknown_test_op_is_EOPNOTSUPP_spec_10_1(h):
    assert E(h.test_cmd, 999) == errno.EOPNOTSUPP


def test_mock_domain_ids_in_order_selftest_device_hwpt_spec_1_2(h):
    i = h.ioas_alloc()
    assert h.mock_domain(i) == (2, 4, 3)


def test_mock_domain_unknown_ioas_is_ENOENT_and_ids_released_spec_10_5(h):
    assert E(h.mock_domain, 77) == errno.ENOENT
    assert h.ioas_alloc() == 1


def test_mock_domain_second_device_reuses_auto_hwpt_spec_10_4(h):
    i = h.ioas_alloc()
    _, hw1, _ = h.mock_domain(i)
    _, hw2, _ = h.mock_domain(i)
    assert hw1 == hw2


def test_mock_domain_flags_unknown_is_EINVAL_spec_10_5(h):
    i = h.ioas_alloc()
    assert E(h.mock_domain, i, dev_flags=2) == errno.EINVAL


def test_mock_domain_misaligned_area_is_EADDRINUSE_spec_10_4(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x800, iova=AP + 0x400)
    assert E(h.mock_domain, i) == errno.EADDRINUSE


def test_mock_domain_area_outside_aperture_is_EADDRINUSE_spec_10_4(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x1000, iova=0x100000)
    assert E(h.mock_domain, i) == errno.EADDRINUSE
    assert h.ctx.lookup(i).reserved == [] and h.ctx.lookup(i).iova_alignment == 1


def test_mock_domain_allowed_range_below_aperture_is_EADDRINUSE_spec_4_3(h):
    i = h.ioas_alloc()
    h.caller.write(h.SCRATCH, (0x1000).to_bytes(8, "little") + (0x1fff).to_bytes(8, "little"))
    h.ioctl("IOMMU_IOAS_ALLOW_IOVAS", "iommu_ioas_allow_iovas", ioas_id=i, num_iovas=1,
            allowed_iovas=h.SCRATCH)
    assert E(h.mock_domain, i) == errno.EADDRINUSE


def test_destroy_device_is_EBUSY_spec_1_3(h):
    i = h.ioas_alloc()
    _, hw, idev = h.mock_domain(i)
    assert E(h.destroy, idev) == errno.EBUSY
    assert E(h.destroy, hw) == errno.EBUSY


def test_destroy_selftest_obj_removes_device_and_auto_hwpt_spec_10_5(h):
    i = h.ioas_alloc()
    st, hw, idev = h.mock_domain(i)
    h.destroy(st)
    assert E(h.destroy, idev) == errno.ENOENT
    assert E(h.destroy, hw) == errno.ENOENT
    r = h.ctx.lookup(i)
    assert r.reserved == [] and r.iova_alignment == 1
    h.destroy(i)


def test_mock_domain_replace_to_ioas_and_hwpt_spec_10_5(h):
    i1 = h.ioas_alloc()
    i2 = h.ioas_alloc()
    st, hw1, idev = h.mock_domain(i1)
    r = h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", st, mock_domain_replace={"pt_id": i2})
    hw2 = r.mock_domain_replace.pt_id
    assert hw2 != hw1
    assert E(h.destroy, hw1) == errno.ENOENT          # old auto HWPT went away
    h.destroy(i1)
    hw3 = hwpt_alloc(h, idev, i2)
    r = h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", st, mock_domain_replace={"pt_id": hw3})
    assert r.mock_domain_replace.pt_id == hw3
    assert E(h.destroy, hw2) == errno.ENOENT


def test_mock_domain_replace_unknown_stdev_is_ENOENT_spec_10_5(h):
    assert E(h.test_cmd, "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", 9,
             mock_domain_replace={"pt_id": 1}) == errno.ENOENT


def test_add_reserved_unknown_ioas_is_ENOENT_spec_10_5(h):
    assert E(h.test_cmd, "IOMMU_TEST_OP_ADD_RESERVED", 5,
             add_reserved={"start": 0x1000, "length": 0x1000}) == errno.ENOENT


def test_add_reserved_over_area_is_EADDRINUSE_spec_10_5(h):
    i = h.ioas_alloc()
    h.map(i, BUF, PS, iova=0x100000)
    assert E(h.test_cmd, "IOMMU_TEST_OP_ADD_RESERVED", i,
             add_reserved={"start": 0x100fff, "length": 0x10}) == errno.EADDRINUSE


def test_set_temp_memory_limit_spec_10_5(h):
    assert E(h.test_cmd, "IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT", memory_limit={"limit": 11}) == errno.EINVAL
    h.test_cmd("IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT", memory_limit={"limit": 12})
    assert h.system.temp_memory_limit == 12


def test_fd_returning_ops_are_EOPNOTSUPP_without_an_installer(h):
    """A plain mount cannot install fds: after their own checks (in the
    kernel's order) these answer EOPNOTSUPP; tests/test_iommufd_eventq.py and
    test_iommufd_access.py drive them with an installer."""
    i = h.ioas_alloc()
    assert E(h.test_cmd, "IOMMU_TEST_OP_CREATE_ACCESS", i) == errno.EOPNOTSUPP
    assert E(h.test_cmd, "IOMMU_TEST_OP_DMABUF_GET", dmabuf_get={"length": PS}) == errno.EOPNOTSUPP
    assert E(h.ioctl, "IOMMU_FAULT_QUEUE_ALLOC", "iommu_fault_alloc") == errno.EOPNOTSUPP
    # eventq.c checks depth and the vIOMMU before the fd: EINVAL, ENOENT first
    assert E(h.ioctl, "IOMMU_VEVENTQ_ALLOC", "iommu_veventq_alloc", type=1) == errno.EINVAL
    assert E(h.ioctl, "IOMMU_VEVENTQ_ALLOC", "iommu_veventq_alloc", type=1,
             veventq_depth=2, viommu_id=i) == errno.ENOENT
    assert E(h.test_cmd, "IOMMU_TEST_OP_ACCESS_RW", 5) == errno.EBADFD


def check_map(h, hwpt, iova, length, uptr):
    h.test_cmd("IOMMU_TEST_OP_MD_CHECK_MAP", hwpt,
               check_map={"iova": iova, "length": length, "uptr": uptr})


def test_md_check_map_matches_backing_identity_spec_10_5(h):
    i = h.ioas_alloc()
    _, hw, _ = h.mock_domain(i)
    iova = h.map(i, BUF + 0x2000, 0x4000)
    check_map(h, hw, iova, 0x4000, BUF + 0x2000)
    assert E(check_map, h, hw, iova, 0x4000, BUF) == errno.EINVAL
    assert E(check_map, h, hw, iova + 0x4000, 0x800, BUF) == errno.EINVAL


def test_md_check_map_unaligned_is_EINVAL_spec_10_5(h):
    i = h.ioas_alloc()
    _, hw, _ = h.mock_domain(i)
    iova = h.map(i, BUF, 0x4000)
    assert E(check_map, h, hw, iova + 1, 0x800, BUF + 1) == errno.EINVAL


def test_md_check_map_not_paging_is_ENOENT_spec_10_5(h):
    i = h.ioas_alloc()
    assert E(check_map, h, i, AP, 0x800, BUF) == errno.ENOENT


def test_md_check_map_other_process_is_EINVAL_spec_10_5(h):
    i = h.ioas_alloc()
    _, hw, _ = h.mock_domain(i)
    iova = h.map(i, BUF, 0x1000)
    other = FakeCaller(space=h.caller.space)
    with pytest.raises(OSError) as ei:
        h.test_cmd("IOMMU_TEST_OP_MD_CHECK_MAP", hw, caller=other,
                   check_map={"iova": iova, "length": 0x800, "uptr": BUF})
    assert ei.value.errno == errno.EINVAL


# =============================================================== §6.2 HWPT_ALLOC

def test_hwpt_alloc_reserved_is_EOPNOTSUPP_spec_6_2(h):
    assert E(hwpt_alloc, h, 1, 1, __reserved=1) == errno.EOPNOTSUPP


def test_hwpt_alloc_data_len_without_type_is_EINVAL_spec_6_2(h):
    assert E(hwpt_alloc, h, 1, 1, data_len=8) == errno.EINVAL
    assert E(hwpt_alloc, h, 1, 1, data_type=A.IOMMU_HWPT_DATA_SELFTEST) == errno.EINVAL


def test_hwpt_alloc_unknown_device_is_ENOENT_spec_6_2(h):
    i = h.ioas_alloc()
    assert E(hwpt_alloc, h, 9, i) == errno.ENOENT


def test_hwpt_alloc_unknown_pt_is_EINVAL_spec_6_2(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    assert E(hwpt_alloc, h, idev, 99) == errno.EINVAL
    assert E(hwpt_alloc, h, idev, idev) == errno.EINVAL


def test_hwpt_alloc_unknown_flag_is_EOPNOTSUPP_spec_6_2(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    assert E(hwpt_alloc, h, idev, i, flags=0x10) == errno.EOPNOTSUPP


def test_hwpt_alloc_dirty_on_no_dirty_device_is_EOPNOTSUPP_spec_6_2(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i, dev_flags=A.MOCK_FLAGS_DEVICE_NO_DIRTY)
    assert E(hwpt_alloc, h, idev, i, flags=A.IOMMU_HWPT_ALLOC_DIRTY_TRACKING) == errno.EOPNOTSUPP


def test_hwpt_alloc_fault_id_unknown_is_ENOENT_spec_6_2(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    assert E(hwpt_alloc, h, idev, i, flags=A.IOMMU_HWPT_FAULT_ID_VALID, fault_id=5) == errno.ENOENT


def test_hwpt_alloc_24_byte_caller_accepted_spec_6_2(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    r = h.ioctl("IOMMU_HWPT_ALLOC", "iommu_hwpt_alloc", size=24, dev_id=idev, pt_id=i)
    assert r.out_hwpt_id == 5


def test_hwpt_alloc_paging_holds_ioas_spec_1_3(h):
    i = h.ioas_alloc()
    st, _, idev = h.mock_domain(i)
    hw = hwpt_alloc(h, idev, i)
    h.destroy(st)
    assert E(h.destroy, i) == errno.EBUSY
    h.destroy(hw)
    h.destroy(i)


def test_hwpt_alloc_mock_data_unknown_pagetable_type_is_EOPNOTSUPP_spec_10_4(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    assert E(hwpt_alloc, h, idev, i, data=selftest_data(ptype=7)) == errno.EOPNOTSUPP


def test_hwpt_alloc_driver_data_longer_than_kernel_is_EINVAL_iommu_copy_struct_from_user(h):
    """include/linux/iommu.h __iommu_copy_struct_from_user: driver data longer
    than the kernel's struct is EINVAL (not the E2BIG of the ioctl structs),
    shorter than its first version (offsetofend(iotlb) = 4) EINVAL too."""
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    assert E(hwpt_alloc, h, idev, i, data=selftest_data() + b"\1") == errno.EINVAL
    assert E(hwpt_alloc, h, idev, i, data=selftest_data() + b"\0") == errno.EINVAL
    assert E(hwpt_alloc, h, idev, i, data=selftest_data()[:3]) == errno.EINVAL
    hwpt_alloc(h, idev, i, data=selftest_data()[:4])


def test_nested_requires_nest_parent_spec_6_2(h):
    i = h.ioas_alloc()
    _, auto, idev = h.mock_domain(i)
    plain = hwpt_alloc(h, idev, i)
    assert E(hwpt_alloc, h, idev, plain, data=selftest_data()) == errno.EINVAL
    assert E(hwpt_alloc, h, idev, auto, data=selftest_data()) == errno.EINVAL
    parent = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_NEST_PARENT)
    assert E(hwpt_alloc, h, idev, parent, flags=A.IOMMU_HWPT_ALLOC_NEST_PARENT,
             data=selftest_data()) == errno.EOPNOTSUPP
    nested = hwpt_alloc(h, idev, parent, data=selftest_data())
    assert E(h.destroy, parent) == errno.EBUSY
    h.destroy(nested)
    h.destroy(parent)


def invalidate(h, hwpt, entries, entry_len=8, data_type=A.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, **kw):
    blob = b"".join(e.ljust(entry_len, b"\0") for e in entries)
    if blob:
        h.caller.write(h.SCRATCH, blob)
    fields = dict(hwpt_id=hwpt, data_uptr=h.SCRATCH if entries else 0, data_type=data_type,
                  entry_len=entry_len, entry_num=len(entries))
    fields.update(kw)
    return h.ioctl("IOMMU_HWPT_INVALIDATE", "iommu_hwpt_invalidate", **fields)


def inv_entry(flags=0, iotlb_id=0):
    return flags.to_bytes(4, "little") + iotlb_id.to_bytes(4, "little")


def check_iotlb(h, hwpt, slot, val):
    h.test_cmd("IOMMU_TEST_OP_MD_CHECK_IOTLB", hwpt, check_iotlb={"id": slot, "iotlb": val})


@pytest.fixture
def nested(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    parent = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_NEST_PARENT)
    return hwpt_alloc(h, idev, parent, data=selftest_data())


def test_invalidate_zeroes_slots_and_check_iotlb_spec_10_4(h, nested):
    for s in range(4):
        check_iotlb(h, nested, s, A.IOMMU_TEST_IOTLB_DEFAULT)
    r = invalidate(h, nested, [inv_entry(0, 1), inv_entry(0, 3)])
    assert r.entry_num == 2
    check_iotlb(h, nested, 1, 0)
    check_iotlb(h, nested, 0, A.IOMMU_TEST_IOTLB_DEFAULT)
    assert E(check_iotlb, h, nested, 0, 0) == errno.EINVAL
    assert E(check_iotlb, h, nested, 4, 0) == errno.EINVAL
    invalidate(h, nested, [inv_entry(A.IOMMU_TEST_INVALIDATE_FLAG_ALL, 0)])
    check_iotlb(h, nested, 0, 0)


def test_invalidate_failure_still_writes_entry_num_spec_2_4(h, nested):
    with pytest.raises(OSError) as ei:
        invalidate(h, nested, [inv_entry(0, 1), inv_entry(0, 4), inv_entry(0, 2)])
    assert ei.value.errno == errno.EINVAL
    back = A.from_bytes("iommu_hwpt_invalidate", h.caller.read(h.ARG, 32))
    assert back.entry_num == 1
    check_iotlb(h, nested, 2, A.IOMMU_TEST_IOTLB_DEFAULT)


def test_invalidate_unknown_entry_flags_is_EOPNOTSUPP_spec_10_4(h, nested):
    assert E(invalidate, h, nested, [inv_entry(2, 0)]) == errno.EOPNOTSUPP


def test_invalidate_bad_data_type_is_EINVAL_spec_10_4(h, nested):
    assert E(invalidate, h, nested, [], data_type=1) == errno.EINVAL
    invalidate(h, nested, [])                          # probe succeeds


def test_invalidate_entries_without_pointer_is_EINVAL_spec_6_6(h, nested):
    assert E(invalidate, h, nested, [], entry_num=1) == errno.EINVAL


def test_invalidate_reserved_is_EOPNOTSUPP_spec_6_6(h, nested):
    assert E(invalidate, h, nested, [], __reserved=1) == errno.EOPNOTSUPP


def test_invalidate_paging_hwpt_is_EINVAL_and_unknown_ENOENT_spec_6_6(h, nested):
    assert E(invalidate, h, 4, []) == errno.EINVAL
    assert E(invalidate, h, 99, []) == errno.ENOENT


def test_nested_invalidate_entry_len_other_than_8_is_EINVAL_iommu_copy_struct_from_user_array(h, nested):
    """mock_domain_cache_invalidate_user copies each entry with
    iommu_copy_struct_from_user_array (min and max = 8 bytes): a shorter or a
    longer entry_len is EINVAL, whatever the extra bytes hold."""
    assert E(invalidate, h, nested, [inv_entry()[:4]], entry_len=4) == errno.EINVAL
    assert E(invalidate, h, nested, [inv_entry() + b"\0\0\0\1"], entry_len=12) == errno.EINVAL
    assert E(invalidate, h, nested, [inv_entry(0, 2) + b"\0\0\0\0"], entry_len=12) == errno.EINVAL
    invalidate(h, nested, [inv_entry(0, 2)], entry_len=8)
    check_iotlb(h, nested, 2, 0)


# ============================================================ §6.3 GET_HW_INFO

def hw_info(h, dev, data_len=8, **kw):
    h.caller.write(h.SCRATCH, b"\xff" * 16)
    return h.ioctl("IOMMU_GET_HW_INFO", "iommu_hw_info", dev_id=dev, data_len=data_len,
                   data_uptr=h.SCRATCH, **kw)


def test_get_hw_info_mock_device_spec_10_4(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    r = hw_info(h, idev, data_len=16)
    assert r.data_len == 8 and r.out_data_type == A.IOMMU_HW_INFO_TYPE_SELFTEST
    assert r.out_capabilities == A.IOMMU_HW_CAP_DIRTY_TRACKING and r.out_max_pasid_log2 == 0
    raw = h.caller.read(h.SCRATCH, 16)
    assert raw == bytes(4) + (0xdeadbeef).to_bytes(4, "little") + bytes(8)


def test_get_hw_info_short_buffer_and_flags_spec_6_3(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i, dev_flags=A.MOCK_FLAGS_DEVICE_NO_DIRTY | A.MOCK_FLAGS_DEVICE_PASID)
    r = hw_info(h, idev, data_len=4)
    assert h.caller.read(h.SCRATCH, 8) == bytes(4) + b"\xff" * 4
    assert r.data_len == 8 and r.out_capabilities == 0 and r.out_max_pasid_log2 == 20


def test_get_hw_info_errors_spec_6_3(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    assert E(hw_info, h, idev, flags=2) == errno.EOPNOTSUPP
    assert E(hw_info, h, idev, __reserved=[0, 1, 0]) == errno.EOPNOTSUPP
    assert E(hw_info, h, 99) == errno.ENOENT
    assert E(hw_info, h, idev, flags=1, in_data_type=1) == errno.EOPNOTSUPP
    hw_info(h, idev, flags=1, in_data_type=A.IOMMU_HW_INFO_TYPE_SELFTEST)


def test_get_hw_info_32_byte_caller_gets_no_capabilities_spec_6_3(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    h.caller.write(h.ARG + 32, b"\xee" * 8)
    p = A.new("iommu_hw_info", size=32, dev_id=idev, data_len=8, data_uptr=h.SCRATCH)
    h.raw(A.IOMMU_GET_HW_INFO, A.to_bytes(p)[:32])
    assert h.caller.read(h.ARG + 32, 8) == b"\xee" * 8
    r = A.from_bytes("iommu_hw_info", h.caller.read(h.ARG, 32))
    assert r.out_data_type == A.IOMMU_HW_INFO_TYPE_SELFTEST and r.data_len == 8


# ================================================================ dirty tracking

@pytest.fixture
def dirty_env(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    hw = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
    iova = h.map(i, BUF, 0x10000)
    return i, idev, hw, iova


def set_dirty(h, hw, enable=True, **kw):
    h.ioctl("IOMMU_HWPT_SET_DIRTY_TRACKING", "iommu_hwpt_set_dirty_tracking",
            hwpt_id=hw, flags=1 if enable else 0, **kw)


def test_dirty(h, hw, iova, length, page_size, bitmap):
    h.caller.write(h.SCRATCH, bitmap)
    return h.test_cmd("IOMMU_TEST_OP_DIRTY", hw, dirty={
        "iova": iova, "length": length, "page_size": page_size, "uptr": h.SCRATCH}).dirty.out_nr_dirty


test_dirty.__test__ = False


def get_bitmap(h, hw, iova, length, page_size, flags=0, nwords=4, **kw):
    h.caller.write(h.SCRATCH + 0x1000, bytes(8 * nwords))
    h.ioctl("IOMMU_HWPT_GET_DIRTY_BITMAP", "iommu_hwpt_get_dirty_bitmap", hwpt_id=hw,
            iova=iova, length=length, page_size=page_size, flags=flags,
            data=h.SCRATCH + 0x1000, **kw)
    raw = h.caller.read(h.SCRATCH + 0x1000, 8 * nwords)
    return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]


def test_set_dirty_tracking_errors_spec_6_4(h, dirty_env):
    i, idev, hw, _ = dirty_env
    with pytest.raises(OSError) as ei:
        h.ioctl("IOMMU_HWPT_SET_DIRTY_TRACKING", "iommu_hwpt_set_dirty_tracking", hwpt_id=hw, flags=2)
    assert ei.value.errno == errno.EOPNOTSUPP
    assert E(set_dirty, h, 99) == errno.ENOENT
    assert E(set_dirty, h, 4) == errno.EOPNOTSUPP          # auto hwpt: no dirty support


def test_dirty_op_requires_enabled_tracking_spec_10_5(h, dirty_env):
    i, idev, hw, iova = dirty_env
    assert E(test_dirty, h, hw, iova, 0x10000, 2048, b"\xff") == errno.EINVAL
    set_dirty(h, hw)
    assert test_dirty(h, hw, iova, 0x10000, 2048, b"\x05") == 2


def test_dirty_op_bad_args_is_EINVAL_spec_10_5(h, dirty_env):
    i, idev, hw, iova = dirty_env
    set_dirty(h, hw)
    assert E(test_dirty, h, hw, iova, 0, 2048, b"\1") == errno.EINVAL
    assert E(test_dirty, h, hw, iova + 1, 2048, 2048, b"\1") == errno.EINVAL
    assert E(test_dirty, h, hw, iova, 2048, 0, b"\1") == errno.EINVAL


def test_dirty_roundtrip_and_clear_spec_6_5(h, dirty_env):
    i, idev, hw, iova = dirty_env
    set_dirty(h, hw)
    # mark chunks 0, 2 and 9 of 2048 bytes, plus an unmapped one (bit 40)
    bm = bytearray(8)
    for b in (0, 2, 9, 40):
        bm[b // 8] |= 1 << (b % 8)
    assert test_dirty(h, hw, iova, 64 * 2048, 2048, bytes(bm)) == 3
    words = get_bitmap(h, hw, iova, 0x10000, 4096, flags=1)
    assert words[0] == (1 << 0) | (1 << 1) | (1 << 4)
    words = get_bitmap(h, hw, iova, 0x10000, 4096)            # read and clear
    assert words[0] == (1 << 0) | (1 << 1) | (1 << 4)
    assert get_bitmap(h, hw, iova, 0x10000, 4096)[0] == 0


def test_enable_dirty_clears_bits_spec_6_4(h, dirty_env):
    i, idev, hw, iova = dirty_env
    set_dirty(h, hw)
    test_dirty(h, hw, iova, 2048, 2048, b"\1")
    set_dirty(h, hw)
    assert get_bitmap(h, hw, iova, 0x10000, 4096)[0] == 0


def test_get_dirty_bitmap_errors_spec_6_5(h, dirty_env):
    i, idev, hw, iova = dirty_env
    assert E(get_bitmap, h, hw, iova, 0x1000, 4096, flags=2) == errno.EOPNOTSUPP
    assert E(get_bitmap, h, hw, iova, 0x1000, 4096, __reserved=1) == errno.EOPNOTSUPP
    assert E(get_bitmap, h, 99, iova, 0x1000, 4096) == errno.ENOENT
    assert E(get_bitmap, h, hw, U64 - 0xfff, 0x2000, 4096) == errno.EOVERFLOW
    assert E(get_bitmap, h, hw, iova + 1024, 0x1000, 4096) == errno.EINVAL   # not G
    assert E(get_bitmap, h, hw, iova + 2048, 0x1000, 4096) == errno.EINVAL   # not page_size
    assert E(get_bitmap, h, hw, iova, 0x1000, 0) == errno.EINVAL
    assert E(get_bitmap, h, 4, iova, 0x1000, 4096) == errno.EOPNOTSUPP       # no dirty ops


def test_no_dirty_device_cannot_attach_dirty_hwpt(h, dirty_env):
    i, idev, hw, iova = dirty_env
    assert E(h.mock_domain, hw, dev_flags=A.MOCK_FLAGS_DEVICE_NO_DIRTY) == errno.EINVAL


# ======================================================================= PASID

def test_pasid_attach_check_detach_spec_10_5(h):
    i = h.ioas_alloc()
    st, _, idev = h.mock_domain(i, dev_flags=A.MOCK_FLAGS_DEVICE_PASID)
    hw = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_PASID)
    plain = hwpt_alloc(h, idev, i)
    # the RID sits on the auto domain, which is not PASID-compatible
    assert E(h.test_cmd, "IOMMU_TEST_OP_PASID_ATTACH", st,
             pasid_attach={"pasid": 5, "pt_id": hw}) == errno.EINVAL
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", st, mock_domain_replace={"pt_id": hw})
    assert E(h.test_cmd, "IOMMU_TEST_OP_PASID_ATTACH", st,
             pasid_attach={"pasid": 5, "pt_id": plain}) == errno.EINVAL
    r = h.test_cmd("IOMMU_TEST_OP_PASID_ATTACH", st, pasid_attach={"pasid": 5, "pt_id": hw})
    assert r.pasid_attach.pt_id == hw
    h.test_cmd("IOMMU_TEST_OP_PASID_CHECK_HWPT", st, pasid_check={"pasid": 5, "hwpt_id": hw})
    assert E(h.test_cmd, "IOMMU_TEST_OP_PASID_CHECK_HWPT", st,
             pasid_check={"pasid": 5, "hwpt_id": 0}) == errno.EINVAL
    assert E(h.destroy, hw) == errno.EBUSY
    h.test_cmd("IOMMU_TEST_OP_PASID_DETACH", st, pasid_detach={"pasid": 5})
    h.test_cmd("IOMMU_TEST_OP_PASID_CHECK_HWPT", st, pasid_check={"pasid": 5, "hwpt_id": 0})
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", st, mock_domain_replace={"pt_id": i})
    h.destroy(hw)


def test_dev_check_cache_spec_10_5(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    h.test_cmd("IOMMU_TEST_OP_DEV_CHECK_CACHE", idev,
               check_dev_cache={"id": 3, "cache": A.IOMMU_TEST_DEV_CACHE_DEFAULT})
    assert E(h.test_cmd, "IOMMU_TEST_OP_DEV_CHECK_CACHE", idev,
             check_dev_cache={"id": 4, "cache": A.IOMMU_TEST_DEV_CACHE_DEFAULT}) == errno.EINVAL
    assert E(h.test_cmd, "IOMMU_TEST_OP_DEV_CHECK_CACHE", 99,
             check_dev_cache={"id": 0, "cache": 0}) == errno.ENOENT


def test_close_with_devices_and_hwpts_tears_down_spec_1_4(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    parent = hwpt_alloc(h, idev, i, flags=A.IOMMU_HWPT_ALLOC_NEST_PARENT)
    hwpt_alloc(h, idev, parent, data=selftest_data())
    h.map(i, BUF, 0x10000)
    h.ctx.close()
    assert len(h.ctx) == 0 and h.system.pins == {} and h.system.locked == {}
