"""IOAS family ioctls through dispatch.ioctl (spec §3, §4, §5), one test per
errno rule, plus allocator choices and pin accounting."""

import errno

import pytest

import ioctl_abi as A
from fakes import FakeCaller, FakeFileRef, IommufdHarness, errno_of as E

PS = 4096
U64 = (1 << 64) - 1
RW = A.IOMMU_IOAS_MAP_READABLE | A.IOMMU_IOAS_MAP_WRITEABLE
FIXED = A.IOMMU_IOAS_MAP_FIXED_IOVA
BUF = 0x40000000          # 1 GiB aligned user buffer
BUFSZ = 0x400000          # 4 MiB


@pytest.fixture
def h():
    with IommufdHarness(regions=[(BUF, BUFSZ)]) as hh:
        yield hh


def ioas_obj(h, i):
    return h.ctx.lookup(i)


def areas(h, i):
    return [(a.iova, a.length) for a in ioas_obj(h, i).areas.values()]


def set_huge_pages(h, ioas, val):
    return h.ioctl("IOMMU_OPTION", "iommu_option", option_id=A.IOMMU_OPTION_HUGE_PAGES,
                   op=A.IOMMU_OPTION_OP_SET, object_id=ioas, val64=val)


def add_reserved(h, ioas, start, length):
    h.test_cmd("IOMMU_TEST_OP_ADD_RESERVED", ioas, add_reserved={"start": start, "length": length})


def write_ranges(h, ranges, addr=None):
    addr = addr or h.SCRATCH
    blob = b"".join(s.to_bytes(8, "little") + l.to_bytes(8, "little") for s, l in ranges)
    if blob:
        h.caller.write(addr, blob)
    return addr


def allow(h, ioas, ranges, **kw):
    p = write_ranges(h, ranges)
    fields = dict(ioas_id=ioas, num_iovas=len(ranges), allowed_iovas=p)
    fields.update(kw)
    return h.ioctl("IOMMU_IOAS_ALLOW_IOVAS", "iommu_ioas_allow_iovas", **fields)


def iova_ranges(h, ioas, cap=16):
    r = h.ioctl("IOMMU_IOAS_IOVA_RANGES", "iommu_ioas_iova_ranges", ioas_id=ioas,
                num_iovas=cap, allowed_iovas=h.SCRATCH)
    raw = h.caller.read(h.SCRATCH, 16 * min(cap, r.num_iovas))
    out = [(int.from_bytes(raw[i:i + 8], "little"), int.from_bytes(raw[i + 8:i + 16], "little"))
           for i in range(0, len(raw), 16)]
    return r, out


# =========================================================== §4.3 ALLOW_IOVAS

def test_allow_iovas_reserved_field_is_EOPNOTSUPP_spec_4_3_1(h):
    i = h.ioas_alloc()
    assert E(allow, h, i, [(0x1000, 0x1fff)], __reserved=1) == errno.EOPNOTSUPP


def test_allow_iovas_reserved_checked_before_lookup_spec_4_3_1(h):
    assert E(allow, h, 99, [(0x1000, 0x1fff)], __reserved=1) == errno.EOPNOTSUPP


def test_allow_iovas_unknown_ioas_is_ENOENT_spec_4_3_2(h):
    assert E(allow, h, 99, [(0x1000, 0x1fff)]) == errno.ENOENT


def test_allow_iovas_unreadable_array_is_EFAULT_spec_4_3_3(h):
    i = h.ioas_alloc()
    assert E(h.ioctl, "IOMMU_IOAS_ALLOW_IOVAS", "iommu_ioas_allow_iovas", ioas_id=i,
             num_iovas=2, allowed_iovas=0xdead0000) == errno.EFAULT


def test_allow_iovas_one_byte_range_is_EINVAL_spec_4_3_3(h):
    i = h.ioas_alloc()
    assert E(allow, h, i, [(0x1000, 0x1000)]) == errno.EINVAL


def test_allow_iovas_overlapping_entries_is_EINVAL_spec_4_3_3(h):
    i = h.ioas_alloc()
    assert E(allow, h, i, [(0x1000, 0x2fff), (0x2000, 0x3fff)]) == errno.EINVAL


def test_allow_iovas_intersecting_reserved_is_EADDRINUSE_and_keeps_old_spec_4_3_4(h):
    i = h.ioas_alloc()
    allow(h, i, [(0x100000, 0x1fffff)])
    add_reserved(h, i, 0x400000, 0x1000)
    assert E(allow, h, i, [(0x300000, 0x4fffff)]) == errno.EADDRINUSE
    assert ioas_obj(h, i).allowed == [(0x100000, 0x1fffff)]


def test_allow_iovas_restricts_allocation_and_zero_clears_spec_4_3(h):
    i = h.ioas_alloc()
    allow(h, i, [(0x800000, 0x8fffff)])
    assert h.map(i, BUF, 0x1000) == 0x800000
    allow(h, i, [])
    assert h.map(i, BUF, 0x1000) == 0x1000


def test_allow_iovas_not_enforced_for_fixed_spec_4_3(h):
    i = h.ioas_alloc()
    allow(h, i, [(0x800000, 0x8fffff)])
    assert h.map(i, BUF, 0x1000, iova=0x10000) == 0x10000


def test_reservation_inside_allowed_is_EADDRINUSE_spec_3(h):
    i = h.ioas_alloc()
    allow(h, i, [(0x800000, 0x8fffff)])
    assert E(add_reserved, h, i, 0x880000, 0x1000) == errno.EADDRINUSE


# =========================================================== §4.4 IOVA_RANGES

def test_iova_ranges_fresh_is_whole_space_alignment_1_spec_4_4(h):
    i = h.ioas_alloc()
    r, out = iova_ranges(h, i)
    assert out == [(0, U64)] and r.num_iovas == 1 and r.out_iova_alignment == 1


def test_iova_ranges_capacity_zero_is_EMSGSIZE_with_count_copied_back_spec_4_4(h):
    i = h.ioas_alloc()
    with pytest.raises(OSError) as ei:
        h.ioctl("IOMMU_IOAS_IOVA_RANGES", "iommu_ioas_iova_ranges", ioas_id=i,
                num_iovas=0, allowed_iovas=0)
    assert ei.value.errno == errno.EMSGSIZE
    back = A.from_bytes("iommu_ioas_iova_ranges", h.caller.read(h.ARG, 32))
    assert back.num_iovas == 1 and back.out_iova_alignment == 1


def test_iova_ranges_partial_capacity_writes_first_ranges_then_EMSGSIZE_spec_4_4(h):
    i = h.ioas_alloc()
    add_reserved(h, i, 0x10000, 0x10000)
    add_reserved(h, i, 0x100000, 0x10000)
    h.caller.write(h.SCRATCH, bytes(64))
    with pytest.raises(OSError) as ei:
        h.ioctl("IOMMU_IOAS_IOVA_RANGES", "iommu_ioas_iova_ranges", ioas_id=i,
                num_iovas=1, allowed_iovas=h.SCRATCH)
    assert ei.value.errno == errno.EMSGSIZE
    raw = h.caller.read(h.SCRATCH, 32)
    assert raw[:16] == (0).to_bytes(8, "little") + (0xffff).to_bytes(8, "little")
    assert raw[16:] == bytes(16)
    assert A.from_bytes("iommu_ioas_iova_ranges", h.caller.read(h.ARG, 32)).num_iovas == 3
    r, out = iova_ranges(h, i)
    assert out == [(0, 0xffff), (0x20000, 0xfffff), (0x110000, U64)]


def test_iova_ranges_reserved_field_is_EOPNOTSUPP_spec_4_4_1(h):
    i = h.ioas_alloc()
    assert E(h.ioctl, "IOMMU_IOAS_IOVA_RANGES", "iommu_ioas_iova_ranges", ioas_id=i,
             __reserved=1) == errno.EOPNOTSUPP


def test_iova_ranges_unknown_ioas_is_ENOENT_spec_4_4_1(h):
    assert E(h.ioctl, "IOMMU_IOAS_IOVA_RANGES", "iommu_ioas_iova_ranges",
             ioas_id=5) == errno.ENOENT


def test_iova_ranges_write_fault_is_EFAULT_spec_4_4_3(h):
    i = h.ioas_alloc()
    assert E(h.ioctl, "IOMMU_IOAS_IOVA_RANGES", "iommu_ioas_iova_ranges", ioas_id=i,
             num_iovas=4, allowed_iovas=0xdead0000) == errno.EFAULT


def test_iova_ranges_ignores_allowed_list_and_areas_spec_4_4_2(h):
    i = h.ioas_alloc()
    allow(h, i, [(0x800000, 0x8fffff)])
    h.map(i, BUF, 0x1000)
    assert iova_ranges(h, i)[1] == [(0, U64)]


def test_iova_ranges_with_mock_domain_spec_4_4_2(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    r, out = iova_ranges(h, i)
    assert out == [(0x1000000, 0x7fffffff)] and r.out_iova_alignment == 2048


# ================================================================== §4.6 MAP

def test_map_unknown_flag_is_EOPNOTSUPP_spec_4_6_1(h):
    assert E(h.map, 99, BUF, PS, flags=RW | 0x8) == errno.EOPNOTSUPP


def test_map_reserved_field_is_EOPNOTSUPP_spec_4_6_1(h):
    i = h.ioas_alloc()
    assert E(h.ioctl, "IOMMU_IOAS_MAP", "iommu_ioas_map", flags=RW, ioas_id=i,
             user_va=BUF, length=PS, __reserved=1) == errno.EOPNOTSUPP


def test_map_iova_u64max_is_EOVERFLOW_spec_4_6_2(h):
    assert E(h.map, 99, BUF, PS, iova=U64, flags=RW | FIXED) == errno.EOVERFLOW


def test_map_length_u64max_is_EOVERFLOW_spec_4_6_2(h):
    assert E(h.map, 99, BUF, U64, flags=RW) == errno.EOVERFLOW


def test_map_without_read_or_write_is_EINVAL_spec_4_6_3(h):
    assert E(h.map, 99, BUF, PS, flags=0) == errno.EINVAL


def test_map_unknown_ioas_is_ENOENT_spec_4_6_4(h):
    assert E(h.map, 99, BUF, PS) == errno.ENOENT


def test_map_user_va_plus_length_overflow_is_EOVERFLOW_spec_4_6_5(h):
    i = h.ioas_alloc()
    assert E(h.map, i, U64 - PS + 1, 2 * PS) == errno.EOVERFLOW


def test_map_length_zero_is_EINVAL_spec_4_6_5(h):
    i = h.ioas_alloc()
    assert E(h.map, i, BUF, 0) == errno.EINVAL


def test_map_length_above_size_max_minus_page_is_EINVAL_spec_4_6_5(h):
    i = h.ioas_alloc()
    assert E(h.map, i, 0, U64 - 10) == errno.EINVAL


def test_map_length_not_multiple_of_G_is_EINVAL_spec_4_6_6(h):
    i = h.ioas_alloc()
    set_huge_pages(h, i, 0)                     # G = PAGE_SIZE
    assert E(h.map, i, BUF, PS + 512) == errno.EINVAL


def test_map_fixed_iova_not_multiple_of_G_is_EINVAL_spec_4_6_7(h):
    i = h.ioas_alloc()
    set_huge_pages(h, i, 0)
    assert E(h.map, i, BUF, PS, iova=0x10800) == errno.EINVAL


def test_map_fixed_iova_end_overflow_is_EOVERFLOW_spec_4_6_7(h):
    i = h.ioas_alloc()
    assert E(h.map, i, BUF, 2 * PS, iova=U64 - PS) == errno.EOVERFLOW


def test_map_fixed_iova_in_reserved_is_EINVAL_spec_4_6_7(h):
    i = h.ioas_alloc()
    add_reserved(h, i, 0x100000, 0x10000)
    assert E(h.map, i, BUF, 2 * PS, iova=0x10f000) == errno.EINVAL


def test_map_fixed_iova_overlapping_area_is_EEXIST_spec_4_6_7(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 4 * PS, iova=0x100000)
    assert E(h.map, i, BUF, 2 * PS, iova=0x103000) == errno.EEXIST
    assert E(h.map, i, BUF, 2 * PS, iova=0x0ff000) == errno.EEXIST


def test_map_reserved_checked_before_areas_spec_4_6_7(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 4 * PS, iova=0x100000)
    add_reserved(h, i, 0x104000, PS)
    assert E(h.map, i, BUF, 8 * PS, iova=0x100000) == errno.EINVAL


def test_map_user_va_offset_not_multiple_of_G_is_EINVAL_spec_4_6_8(h):
    i = h.ioas_alloc()
    set_huge_pages(h, i, 0)
    assert E(h.map, i, BUF + 0x800, PS, iova=0x100000) == errno.EINVAL


def test_map_G1_accepts_byte_alignment_spec_4_6_10(h):
    i = h.ioas_alloc()
    assert h.map(i, BUF + 3, 5, iova=0x100007) == 0x100007
    assert areas(h, i) == [(0x100007, 5)]


def test_map_without_domain_does_not_touch_memory_spec_3(h):
    i = h.ioas_alloc()
    assert h.map(i, 0x7000000000, 0x10000, iova=0x100000) == 0x100000


def test_map_with_domain_unmapped_memory_is_EFAULT_and_nothing_mapped_spec_4_6_9(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    assert E(h.map, i, 0x7000000000, 0x10000, iova=0x1000000) == errno.EFAULT
    assert areas(h, i) == []


def test_map_writeable_readonly_memory_with_domain_is_EFAULT_spec_4_6_9(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    h.caller.mmap(0x50000000, 0x10000, readonly=True)
    assert E(h.map, i, 0x50000000, 0x10000, iova=0x1000000) == errno.EFAULT
    assert h.map(i, 0x50000000, 0x10000, iova=0x1000000,
                 flags=A.IOMMU_IOAS_MAP_READABLE | FIXED) == 0x1000000


def test_map_memlock_limit_is_ENOMEM_spec_4_11(h):
    h.system.memlock_limit = 4 * PS
    i = h.ioas_alloc()
    h.mock_domain(i)
    h.map(i, BUF, 4 * PS, iova=0x1000000)
    assert E(h.map, i, BUF + 4 * PS, PS, iova=0x2000000) == errno.ENOMEM
    assert h.system.locked == {("user", 1000): 4}


# ============================================================ §4.5 allocator

def test_alloc_first_fit_from_page_size_spec_4_5(h):
    i = h.ioas_alloc()
    assert h.map(i, BUF, PS) == 0x1000
    assert h.map(i, BUF, PS) == 0x2000
    assert h.map(i, BUF, 3 * PS) == 0x4000          # a = 0x4000


def test_alloc_keeps_sub_page_offset_spec_4_5_step2(h):
    i = h.ioas_alloc()
    got = h.map(i, BUF + 0x123, 0x10)
    assert got == 0x1123


def test_alloc_alignment_from_lowest_set_bit_of_source_spec_4_5_step3(h):
    i = h.ioas_alloc()
    h.map(i, BUF, PS)                                  # occupies 0x1000
    # source aligned to 0x2000 only: a = min(0x10000, 0x2000)
    assert h.map(i, BUF + 0x2000, 0x10000) == 0x2000


def test_alloc_source_zero_uses_roundup_pow2_spec_4_5_step3(h):
    i = h.ioas_alloc()
    # A = 0 (user_va 0): a = roundup_pow2(0x3000) = 0x4000
    assert h.map(i, 0, 0x3000) == 0x4000


def test_alloc_caps_alignment_at_huge_page_spec_4_5_step4(h):
    i = h.ioas_alloc()
    assert h.map(i, BUF, 0x800000) == 0x200000


def test_alloc_alignment_below_G_is_EINVAL_spec_4_5_step5(h):
    i = h.ioas_alloc()
    set_huge_pages(h, i, 0)
    assert E(h.map, i, BUF + 0x800, PS) == errno.EINVAL


def test_alloc_huge_length_is_EOVERFLOW_spec_4_5_step1(h):
    i = h.ioas_alloc()
    assert E(h.map, i, 0, 1 << 63) == errno.EOVERFLOW


def test_alloc_skips_reserved_and_areas_spec_4_5_step7(h):
    i = h.ioas_alloc()
    add_reserved(h, i, 0x1000, 0xff000)                 # [0x1000, 0xfffff]
    h.map(i, BUF, 0x10000, iova=0x100000)
    assert h.map(i, BUF, 0x10000) == 0x110000


def test_alloc_never_returns_last_page_spec_4_5_step6(h):
    i = h.ioas_alloc()
    allow(h, i, [(U64 - 0x3fff, U64)])
    # window [2^64-0x4000, 2^64-0x1001]: 3 pages usable
    assert h.map(i, BUF, 0x1000) == U64 - 0x3fff
    assert h.map(i, BUF, 0x1000) == U64 - 0x2fff
    assert h.map(i, BUF, 0x1000) == U64 - 0x1fff
    assert E(h.map, i, BUF, 0x1000) == errno.ENOSPC


def test_alloc_one_byte_at_window_end_is_ENOSPC_c_ge_wl_rule_spec_4_5_step7(h):
    i = h.ioas_alloc()
    allow(h, i, [(0x1000, 0x1001)])
    assert E(h.map, i, BUF + 1, 1) == errno.ENOSPC


def test_alloc_one_byte_hole_is_rejected_c_lt_hl_rule_spec_4_5_step7(h):
    i = h.ioas_alloc()
    allow(h, i, [(0x1000, 0x1002)])
    h.map(i, BUF, 1, iova=0x1002)
    # window [0x1000, 0x1002], c = 0x1001, only hole [0x1001, 0x1001]: c' < hl fails
    assert E(h.map, i, BUF + 1, 1) == errno.ENOSPC
    allow(h, i, [(0x1000, 0x1003)])
    h.unmap(i, 0x1002, 1)
    assert h.map(i, BUF + 1, 1) == 0x1001


def test_alloc_no_room_is_ENOSPC_spec_4_5_step8(h):
    i = h.ioas_alloc()
    allow(h, i, [(0x100000, 0x10ffff)])
    h.map(i, BUF, 0x8000)
    assert E(h.map, i, BUF, 0x10000) == errno.ENOSPC


def test_alloc_with_mock_domain_starts_at_aperture_spec_10_4(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    assert h.map(i, BUF, PS) == 0x1000000


# ================================================================ §4.9 UNMAP

def test_unmap_unknown_ioas_is_ENOENT_spec_4_9_1(h):
    assert E(h.unmap, 9, 0, U64) == errno.ENOENT


def test_unmap_all_on_empty_succeeds_with_zero_spec_4_9_2(h):
    i = h.ioas_alloc()
    assert h.unmap(i, 0, U64) == 0


def test_unmap_all_returns_total_spec_4_9_2(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x3000)
    h.map(i, BUF, 0x1000, iova=0x900000)
    assert h.unmap(i, 0, U64) == 0x4000
    assert areas(h, i) == []


def test_unmap_iova_u64max_is_EOVERFLOW_spec_4_9_3(h):
    i = h.ioas_alloc()
    assert E(h.unmap, i, U64, 1) == errno.EOVERFLOW


def test_unmap_length_u64max_nonzero_iova_is_EOVERFLOW_spec_4_9_3(h):
    i = h.ioas_alloc()
    assert E(h.unmap, i, 1, U64) == errno.EOVERFLOW


def test_unmap_length_zero_is_EINVAL_spec_4_9_3(h):
    i = h.ioas_alloc()
    assert E(h.unmap, i, 0x1000, 0) == errno.EINVAL


def test_unmap_end_overflow_is_EOVERFLOW_spec_4_9_3(h):
    i = h.ioas_alloc()
    assert E(h.unmap, i, U64 - 0x10, 0x100) == errno.EOVERFLOW


def test_unmap_area_straddling_start_is_ENOENT_nothing_removed_spec_4_9_4(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x2000, iova=0x100000)
    h.map(i, BUF, 0x2000, iova=0x200000)
    assert E(h.unmap, i, 0x101000, 0x200000) == errno.ENOENT
    assert areas(h, i) == [(0x100000, 0x2000), (0x200000, 0x2000)]


def test_unmap_area_straddling_end_removes_earlier_then_ENOENT_spec_4_9_partial(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x2000, iova=0x100000)
    h.map(i, BUF, 0x2000, iova=0x200000)
    with pytest.raises(OSError) as ei:
        h.ioctl("IOMMU_IOAS_UNMAP", "iommu_ioas_unmap", ioas_id=i, iova=0x100000,
                length=0x101000)
    assert ei.value.errno == errno.ENOENT
    assert areas(h, i) == [(0x200000, 0x2000)]
    back = A.from_bytes("iommu_ioas_unmap", h.caller.read(h.ARG, 24))
    assert back.length == 0x101000                   # nothing written back


def test_unmap_range_with_holes_returns_bytes_removed_spec_4_9_6(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x2000, iova=0x100000)
    h.map(i, BUF, 0x3000, iova=0x200000)
    assert h.unmap(i, 0x100000, 0x200000) == 0x5000


def test_unmap_nothing_in_range_is_ENOENT_spec_4_9_5(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x2000, iova=0x100000)
    assert E(h.unmap, i, 0x300000, 0x1000) == errno.ENOENT


def test_unmap_never_splits_spec_3(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x4000, iova=0x100000)
    assert E(h.unmap, i, 0x100000, 0x2000) == errno.ENOENT
    assert areas(h, i) == [(0x100000, 0x4000)]


# ================================================================= §4.8 COPY

def copy(h, dst, src, src_iova, length, dst_iova=0, flags=None):
    if flags is None:
        flags = RW | (FIXED if dst_iova else 0)
    return h.ioctl("IOMMU_IOAS_COPY", "iommu_ioas_copy", flags=flags, dst_ioas_id=dst,
                   src_ioas_id=src, length=length, dst_iova=dst_iova,
                   src_iova=src_iova).dst_iova


def test_copy_unknown_flags_is_EOPNOTSUPP_spec_4_8_2(h):
    assert E(copy, h, 1, 1, 0x1000, 0x1000, flags=RW | 0x100) == errno.EOPNOTSUPP


def test_copy_u64max_is_EOVERFLOW_spec_4_8_2(h):
    assert E(copy, h, 1, 1, U64, 0x1000) == errno.EOVERFLOW


def test_copy_no_rw_is_EINVAL_spec_4_8_2(h):
    assert E(copy, h, 1, 1, 0x1000, 0x1000, flags=0) == errno.EINVAL


def test_copy_unknown_source_is_ENOENT_spec_4_8_3(h):
    assert E(copy, h, 1, 1, 0x1000, 0x1000) == errno.ENOENT


def test_copy_length_zero_is_EINVAL_spec_4_8_3(h):
    s = h.ioas_alloc()
    assert E(copy, h, s, s, 0x1000, 0) == errno.EINVAL


def test_copy_hole_in_source_is_ENOENT_spec_4_8_3(h):
    s = h.ioas_alloc()
    h.map(s, BUF, 0x2000, iova=0x100000)
    h.map(s, BUF, 0x2000, iova=0x103000)
    assert E(copy, h, s, s, 0x100000, 0x5000) == errno.ENOENT


def test_copy_unknown_destination_is_ENOENT_spec_4_8_4(h):
    s = h.ioas_alloc()
    h.map(s, BUF, 0x2000, iova=0x100000)
    assert E(copy, h, 77, s, 0x100000, 0x1000) == errno.ENOENT


def test_copy_subrange_over_two_areas_makes_two_areas_spec_4_8_6(h):
    s = h.ioas_alloc()
    d = h.ioas_alloc()
    h.map(s, BUF, 0x2000, iova=0x100000)
    h.map(s, BUF + 0x10000, 0x2000, iova=0x102000)
    got = copy(h, d, s, 0x101000, 0x2000, dst_iova=0x500000)
    assert got == 0x500000
    assert areas(h, d) == [(0x500000, 0x1000), (0x501000, 0x1000)]
    a0, a1 = ioas_obj(h, d).areas.values()
    sa = list(ioas_obj(h, s).areas.values())
    assert a0.pages is sa[0].pages and a1.pages is sa[1].pages
    assert a0.start_byte == 0x1000 and a1.start_byte == 0


def test_copy_auto_iova_hint_is_source_address_spec_4_8_5(h):
    s = h.ioas_alloc()
    d = h.ioas_alloc()
    h.map(s, BUF + 0x123, 0x100, iova=0x100000)
    assert copy(h, d, s, 0x100000, 0x100) == 0x1123


def test_copy_writeable_from_readonly_pages_is_EPERM_spec_4_8_6(h):
    s = h.ioas_alloc()
    h.map(s, BUF, 0x2000, iova=0x100000, flags=A.IOMMU_IOAS_MAP_READABLE | FIXED)
    assert E(copy, h, s, s, 0x100000, 0x2000, dst_iova=0x200000) == errno.EPERM
    copy(h, s, s, 0x100000, 0x2000, dst_iova=0x200000,
         flags=A.IOMMU_IOAS_MAP_READABLE | FIXED)


def test_copy_shares_pins_spec_4_8_6(h):
    s = h.ioas_alloc()
    d = h.ioas_alloc()
    h.mock_domain(s)
    h.mock_domain(d)
    h.map(s, BUF, 0x4000, iova=0x1000000)
    copy(h, d, s, 0x1000000, 0x4000, dst_iova=0x1000000)
    h.test_cmd("IOMMU_TEST_OP_MD_CHECK_REFS", check_refs={"length": 0x4000, "uptr": BUF, "refs": 1})
    assert h.system.locked == {("user", 1000): 4}


# =============================================================== §4.10 OPTION

def option(h, **kw):
    return h.ioctl("IOMMU_OPTION", "iommu_option", **kw)


def test_option_reserved_is_EOPNOTSUPP_spec_4_10(h):
    assert E(option, h, option_id=0, op=1, __reserved=1) == errno.EOPNOTSUPP


def test_option_unknown_id_is_EOPNOTSUPP_spec_4_10(h):
    assert E(option, h, option_id=7, op=1) == errno.EOPNOTSUPP


def test_option_rlimit_object_id_is_EOPNOTSUPP_spec_4_10(h):
    assert E(option, h, option_id=0, op=1, object_id=1) == errno.EOPNOTSUPP


def test_option_rlimit_get_default_user_mode_spec_4_10(h):
    assert option(h, option_id=0, op=A.IOMMU_OPTION_OP_GET, val64=7).val64 == 0


def test_option_rlimit_set_without_cap_is_EPERM_spec_4_10(h):
    assert E(option, h, option_id=0, op=0, val64=1) == errno.EPERM


def test_option_rlimit_set_with_objects_is_EBUSY_spec_4_10():
    hh = IommufdHarness(caller=FakeCaller(caps={"CAP_SYS_RESOURCE"}))
    hh.ioas_alloc()
    assert E(option, hh, option_id=0, op=0, val64=1) == errno.EBUSY


def test_option_rlimit_set_bad_value_is_EINVAL_and_mm_mode_spec_4_10():
    hh = IommufdHarness(caller=FakeCaller(caps={"CAP_SYS_RESOURCE"}))
    assert E(option, hh, option_id=0, op=0, val64=2) == errno.EINVAL
    option(hh, option_id=0, op=0, val64=1)
    assert option(hh, option_id=0, op=1).val64 == 1


def test_option_unknown_op_is_EOPNOTSUPP_spec_4_10(h):
    i = h.ioas_alloc()
    assert E(option, h, option_id=1, op=5, object_id=i) == errno.EOPNOTSUPP
    assert E(option, h, option_id=0, op=5) == errno.EOPNOTSUPP


def test_option_huge_pages_unknown_ioas_is_ENOENT_spec_4_10(h):
    assert E(option, h, option_id=1, op=1, object_id=3) == errno.ENOENT


def test_option_huge_pages_get_set_changes_G_spec_4_10(h):
    i = h.ioas_alloc()
    assert option(h, option_id=1, op=1, object_id=i).val64 == 1
    set_huge_pages(h, i, 0)
    assert option(h, option_id=1, op=1, object_id=i).val64 == 0
    assert iova_ranges(h, i)[0].out_iova_alignment == PS
    set_huge_pages(h, i, 1)
    assert iova_ranges(h, i)[0].out_iova_alignment == 1


def test_option_huge_pages_off_with_misaligned_area_is_EADDRINUSE_spec_4_10(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x800, iova=0x100000)
    assert E(set_huge_pages, h, i, 0) == errno.EADDRINUSE
    assert option(h, option_id=1, op=1, object_id=i).val64 == 1


def test_option_huge_pages_off_with_domain_and_area_is_EINVAL_spec_4_10(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    h.map(i, BUF, PS, iova=0x1000000)
    assert E(set_huge_pages, h, i, 0) == errno.EINVAL


def test_option_huge_pages_bad_value_is_EINVAL_spec_4_10(h):
    i = h.ioas_alloc()
    assert E(set_huge_pages, h, i, 2) == errno.EINVAL


def test_option_writes_back_only_val64_spec_2_4(h):
    i = h.ioas_alloc()
    c = h.caller
    c.mmap(0x800000, 0x2000)
    arg = 0x801000 - 16                   # first 16 bytes in a page made read-only
    p = A.new("iommu_option", size=24, option_id=1, op=1, object_id=i)
    c.write(arg, A.to_bytes(p))
    c.space.regions[[r[0] for r in c.space.regions].index(0x800000)][2] = True
    from iommufd_emu import dispatch
    # Split the region: the val64 page must be writable.
    base = [r for r in c.space.regions if r[0] == 0x800000][0]
    data = base[1]
    c.space.regions.remove(base)
    c.space.regions.append([0x800000, data[:0x1000], True])
    c.space.regions.append([0x801000, data[0x1000:], False])
    c.space.regions.sort(key=lambda r: r[0])
    dispatch.ioctl(h.ctx, A.IOMMU_OPTION, arg, c)
    assert int.from_bytes(c.read(arg + 16, 8), "little") == 1


# ============================================================ §5 VFIO_IOAS

def vfio(h, op, ioas=0, **kw):
    return h.ioctl("IOMMU_VFIO_IOAS", "iommu_vfio_ioas", op=op, ioas_id=ioas, **kw)


def test_vfio_ioas_get_without_compat_is_ENODEV_spec_5(h):
    assert E(vfio, h, 0) == errno.ENODEV


def test_vfio_ioas_set_unknown_is_ENOENT_spec_5(h):
    assert E(vfio, h, 1, 4) == errno.ENOENT


def test_vfio_ioas_reserved_or_op_is_EOPNOTSUPP_spec_5(h):
    assert E(vfio, h, 3) == errno.EOPNOTSUPP
    assert E(vfio, h, 0, __reserved=1) == errno.EOPNOTSUPP


def test_vfio_ioas_set_get_clear_and_destroy_clears_spec_5(h):
    i = h.ioas_alloc()
    vfio(h, 1, i)
    assert vfio(h, 0).ioas_id == i
    vfio(h, 2)
    assert E(vfio, h, 0) == errno.ENODEV
    vfio(h, 1, i)
    h.destroy(i)
    assert E(vfio, h, 0) == errno.ENODEV


# ===================================================== §4.12 CHANGE_PROCESS

def change_process(h, caller=None, **kw):
    return h.ioctl("IOMMU_IOAS_CHANGE_PROCESS", "iommu_ioas_change_process",
                   caller=caller, **kw)


def test_change_process_reserved_is_EOPNOTSUPP_spec_4_12(h):
    assert E(change_process, h, __reserved=1) == errno.EOPNOTSUPP


def test_change_process_empty_context_succeeds_spec_4_12(h):
    change_process(h)


def test_change_process_user_area_is_EINVAL_spec_4_12(h):
    i = h.ioas_alloc()
    h.map(i, BUF, PS)
    assert E(change_process, h) == errno.EINVAL


def test_change_process_moves_charge_spec_4_12(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    fd = h.caller.add_fd(FakeFileRef("shmem", size=0x10000))
    h.map_file(i, fd, 0, 0x4000, iova=0x1000000)
    assert h.system.locked == {("user", 1000): 4}
    other = FakeCaller(uid=2000, space=h.caller.space)
    change_process(h, caller=other)
    assert h.system.locked == {("user", 2000): 4}


def test_change_process_over_limit_is_ENOMEM_unchanged_spec_4_12(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    fd = h.caller.add_fd(FakeFileRef("shmem", size=0x10000))
    h.map_file(i, fd, 0, 0x4000, iova=0x1000000)
    h.system.memlock_limit = 2 * PS
    other = FakeCaller(uid=2000, space=h.caller.space)
    assert E(change_process, h, caller=other) == errno.ENOMEM
    assert h.system.locked == {("user", 1000): 4}


# =============================================================== §4.7 MAP_FILE

def test_map_file_unknown_flags_is_EOPNOTSUPP_spec_4_7_1(h):
    assert E(h.map_file, 9, 3, 0, PS, flags=RW | 0x10) == errno.EOPNOTSUPP


def test_map_file_u64max_is_EOVERFLOW_spec_4_7_1(h):
    assert E(h.map_file, 9, 3, 0, U64) == errno.EOVERFLOW


def test_map_file_no_rw_is_EINVAL_spec_4_7_1(h):
    assert E(h.map_file, 9, 3, 0, PS, flags=0) == errno.EINVAL


def test_map_file_unknown_ioas_is_ENOENT_spec_4_7_1(h):
    assert E(h.map_file, 9, 3, 0, PS) == errno.ENOENT


def test_map_file_length_zero_is_EINVAL_spec_4_7_2(h):
    i = h.ioas_alloc()
    assert E(h.map_file, i, 3, 0, 0) == errno.EINVAL


def test_map_file_start_overflow_is_EOVERFLOW_spec_4_7_2(h):
    i = h.ioas_alloc()
    assert E(h.map_file, i, 3, U64 - 5, 0x10) == errno.EOVERFLOW


def test_map_file_bad_fd_is_EBADF_spec_4_7_4(h):
    i = h.ioas_alloc()
    assert E(h.map_file, i, 42, 0, PS) == errno.EBADF


def test_map_file_writeable_on_readonly_file_is_EPERM_spec_4_7_4(h):
    i = h.ioas_alloc()
    f = FakeFileRef("shmem", size=0x10000, writable=False)
    fd = h.caller.add_fd(f)
    assert E(h.map_file, i, fd, 0, PS) == errno.EPERM
    h.map_file(i, fd, 0, PS, flags=A.IOMMU_IOAS_MAP_READABLE)
    assert all(r.closed for r in h.caller.refs_handed_out[:1])


def test_map_file_any_file_without_domain_succeeds_then_attach_is_EINVAL_spec_4_7(h):
    i = h.ioas_alloc()
    fd = h.caller.add_fd(FakeFileRef("other", size=0x10000))
    h.map_file(i, fd, 0, 0x4000, iova=0x1000000)
    assert E(h.mock_domain, i) == errno.EINVAL
    assert iova_ranges(h, i)[1] == [(0, U64)]           # attach fully undone


def test_map_file_other_kind_with_domain_is_EINVAL_spec_4_7(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    fd = h.caller.add_fd(FakeFileRef("other", size=0x10000))
    assert E(h.map_file, i, fd, 0, 0x4000) == errno.EINVAL
    assert areas(h, i) == []


def test_map_file_past_eof_at_pin_time_is_EINVAL_spec_4_7(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    fd = h.caller.add_fd(FakeFileRef("shmem", size=0x3000))
    assert E(h.map_file, i, fd, 0, 0x4000) == errno.EINVAL
    h.map_file(i, fd, 0, 0x3000)


def test_map_file_unaligned_start_keeps_page_offset_spec_4_7_5(h):
    i = h.ioas_alloc()
    fd = h.caller.add_fd(FakeFileRef("shmem", size=0x10000))
    got = h.map_file(i, fd, 0x2345, 0x100)
    assert got == 0x1345
    a = ioas_obj(h, i).areas[got]
    assert a.page_offset == 0x345 and a.pages.start == 0x2000


def test_map_file_shmem_pins_file_pages_spec_4_11(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    f = FakeFileRef("shmem", size=0x10000)
    fd = h.caller.add_fd(f)
    h.map_file(i, fd, 0x1000, 0x2000, iova=0x1000000)
    key = ("file", f.identity)
    assert [h.system.pin_count(key, p) for p in range(4)] == [0, 1, 1, 0]
    h.unmap(i, 0, U64)
    assert h.system.pins == {}
    assert h.caller.refs_handed_out[-1].closed


# ============================================================ §4.1 DESTROY / §1

def test_destroy_ioas_with_mappings_succeeds_and_unpins_spec_1_3(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x4000, iova=0x1000000)
    h.destroy(i)
    assert h.system.pins == {} and h.system.locked == {}


def test_destroy_ioas_with_device_is_EBUSY_spec_1_3(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    assert E(h.destroy, i) == errno.EBUSY
    assert h.ctx.lookup(i).id == i


def test_close_returns_all_pins_and_charges_spec_1_4(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    h.map(i, BUF, 0x10000, iova=0x1000000)
    assert h.system.pins
    h.ctx.close()
    assert h.system.pins == {} and h.system.locked == {} and len(h.ctx) == 0


# ============================================================ pins / §10.5 refs

def check_refs(h, uptr, length, refs):
    h.test_cmd("IOMMU_TEST_OP_MD_CHECK_REFS", check_refs={"length": length, "uptr": uptr, "refs": refs})


def test_pins_only_with_domain_spec_3_lazy(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x4000, iova=0x1000000)
    check_refs(h, BUF, 0x4000, 0)
    stdev, hwpt, idev = h.mock_domain(i)
    check_refs(h, BUF, 0x4000, 1)
    h.destroy(stdev)
    check_refs(h, BUF, 0x4000, 0)


def test_two_maps_of_same_buffer_pin_twice_spec_4_11(h):
    i = h.ioas_alloc()
    h.mock_domain(i)
    h.map(i, BUF, 0x4000)
    h.map(i, BUF, 0x2000)
    check_refs(h, BUF, 0x2000, 2)
    check_refs(h, BUF + 0x2000, 0x2000, 1)
    assert E(check_refs, h, BUF, 0x2000, 1) == errno.EIO


def test_two_domains_pin_once_spec_4_11(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    assert idev == 3                          # selftest obj 2, device 3, hwpt 4
    h.ioctl("IOMMU_HWPT_ALLOC", "iommu_hwpt_alloc", dev_id=idev, pt_id=i)
    h.map(i, BUF, 0x4000)
    check_refs(h, BUF, 0x4000, 1)


def test_check_refs_unaligned_is_EINVAL_spec_10_5(h):
    assert E(check_refs, h, BUF + 1, PS, 0) == errno.EINVAL
    assert E(check_refs, h, BUF, PS + 1, 0) == errno.EINVAL
