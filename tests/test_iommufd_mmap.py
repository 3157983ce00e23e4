"""mmap() of the iommufd fd (iommufd_emu/mmap.py; kernel main.c, the fd's
mmap), in process, on the selftest vIOMMU's region. The end-to-end form is
tests/test_exec_families.py::test_veventq_and_viommu_mmap_from_a_c_program."""

import errno

import pytest

import ioctl_abi as A
from fakes import IommufdHarness, errno_of as E
from iommufd_emu import mmap

PS = 4096
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 1, 2, 3


@pytest.fixture
def h():
    with IommufdHarness() as hh:
        yield hh


@pytest.fixture
def region(h):
    """A selftest vIOMMU with in_data 0xbeef: (vIOMMU object, offset, length)."""
    ioas = h.ioas_alloc()
    _, _, dev = h.mock_domain(ioas)
    parent = h.ioctl("IOMMU_HWPT_ALLOC", "iommu_hwpt_alloc", dev_id=dev, pt_id=ioas,
                     flags=A.IOMMU_HWPT_ALLOC_NEST_PARENT).out_hwpt_id
    h.caller.write(h.SCRATCH + 0x4000, (0xBEEF).to_bytes(4, "little") + bytes(20))
    v = h.ioctl("IOMMU_VIOMMU_ALLOC", "iommu_viommu_alloc", dev_id=dev, hwpt_id=parent,
                type=A.IOMMU_VIOMMU_TYPE_SELFTEST, data_uptr=h.SCRATCH + 0x4000,
                data_len=24).out_viommu_id
    back = h.caller.read(h.SCRATCH + 0x4000, 24)
    off, ln = int.from_bytes(back[8:16], "little"), int.from_bytes(back[16:24], "little")
    return h.ctx.lookup(v), off, ln


def test_only_exactly_the_region_ENXIO_main_c(h, region):
    """The selftest's viommu_alloc_with_data negative cases, and offset 0."""
    v, off, ln = region
    for o, n in ((off + PS, ln), (off + 2 * PS, ln), (off, ln // 2), (off, ln * 2), (0, ln)):
        assert E(mmap.check, h.ctx, o, n, PROT_READ, MAP_SHARED) == errno.ENXIO, (o, n)
    assert mmap.check(h.ctx, off, ln, PROT_READ | PROT_WRITE, MAP_SHARED) is v
    assert mmap.check(h.ctx, off, ln - 100, PROT_READ, MAP_SHARED_VALIDATE) is v  # rounded up


def test_shared_and_not_executable_EINVAL_EPERM_main_c(h, region):
    _, off, ln = region
    assert E(mmap.check, h.ctx, off, ln, PROT_READ, MAP_PRIVATE) == errno.EINVAL
    assert E(mmap.check, h.ctx, off, ln, PROT_READ | PROT_EXEC, MAP_SHARED) == errno.EPERM
    # before the region lookup: a bad offset is still EINVAL / EPERM
    assert E(mmap.check, h.ctx, 0, ln, PROT_READ, MAP_PRIVATE) == errno.EINVAL
    assert E(mmap.check, h.ctx, 0, ln, PROT_EXEC, MAP_SHARED) == errno.EPERM


def test_an_fd_not_open_for_writing_is_not_VM_SHARED(h, region):
    """mmap clears VM_SHARED for a shared map of a read-only fd (EINVAL from
    the fd's mmap); with PROT_WRITE mmap itself says EACCES first."""
    _, off, ln = region
    assert E(mmap.check, h.ctx, off, ln, PROT_READ, MAP_SHARED, False) == errno.EINVAL
    assert E(mmap.check, h.ctx, off, ln, PROT_READ | PROT_WRITE, MAP_SHARED,
             False) == errno.EACCES


def test_a_mapping_holds_its_owner_until_it_is_gone(h, region):
    """The selftest: "the owner of the mmap region should be blocked" (EBUSY);
    after munmap (the predicate says gone) the destroy works."""
    v, off, ln = region
    m = mmap.add(h.ctx, v, off, ln, pid=4242)
    assert E(h.destroy, v.id) == errno.EBUSY          # no predicate: it stays
    alive = {m: True}
    h.ctx.mapping_alive = lambda mm: alive[mm]
    assert E(h.destroy, v.id) == errno.EBUSY
    alive[m] = False
    h.destroy(v.id)
    assert not h.ctx.mappings and off not in h.ctx.mmap_regions


def test_pages_are_the_regions_only_while_mapped(h, region):
    v, off, ln = region
    assert mmap.read_pages(h.ctx, off, PS) is None    # nobody checked a mapping
    mmap.add(h.ctx, v, off, ln, pid=1)
    page = mmap.read_pages(h.ctx, off, PS)
    assert page[:4] == (0xBEEF).to_bytes(4, "little") and len(page) == PS
    # readahead past the region: zeros after it, never a short read
    data = mmap.read_pages(h.ctx, off, 4 * PS)
    assert len(data) == 4 * PS and data[:4] == page[:4] and not any(data[ln:])
    assert mmap.read_pages(h.ctx, off + ln, PS) is None
    # write-back of a dirty shared page lands in the region
    mmap.write_pages(h.ctx, off + PS, b"\x11\x22")
    assert bytes(v.mmap_page[PS:PS + 2]) == b"\x11\x22"
    assert mmap.read_pages(h.ctx, off + PS, PS)[:2] == b"\x11\x22"


def test_closing_the_context_drops_the_mappings(region):
    v, off, ln = region
    ctx = v.ctx
    mmap.add(ctx, v, off, ln, pid=1)
    ctx.close()                        # no reference underflow, nothing left
    assert v.dead and not ctx.mappings
