"""Selftest access objects (iommufd.md §10.5 CREATE_ACCESS, ACCESS_PAGES,
DESTROY_ACCESS_PAGES, ACCESS_RW, ACCESS_REPLACE_IOAS; kernel device.c and
selftest.c), in process. Access fds are FakeInstaller entries here."""

import errno
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ioctl_abi as A
from fakes import FakeInstaller, IommufdHarness, errno_of as E

PS = 4096
BUF = 0x40000000
BUFSZ = 16 * PS
AP = A.MOCK_APERTURE_START
RW = A.IOMMU_IOAS_MAP_READABLE | A.IOMMU_IOAS_MAP_WRITEABLE
PIN = A.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES


@pytest.fixture
def h():
    with IommufdHarness(regions=[(BUF, BUFSZ), (0x50000000, 0x100000)]) as hh:
        hh.files = FakeInstaller(hh.caller)
        hh.caller.write(BUF, os.urandom(BUFSZ))
        yield hh


def create_access(h, ioas, flags=0):
    return h.test_cmd("IOMMU_TEST_OP_CREATE_ACCESS", ioas,
                      create_access={"flags": flags}).create_access.out_access_fd


def access_pages(h, fd, iova, length, flags=0, uptr=0):
    return h.test_cmd("IOMMU_TEST_OP_ACCESS_PAGES", fd, access_pages=dict(
        flags=flags, iova=iova, length=length, uptr=uptr)).access_pages.out_access_pages_id


def destroy_pages(h, fd, item):
    h.test_cmd("IOMMU_TEST_OP_DESTROY_ACCESS_PAGES", fd,
               destroy_access_pages={"access_pages_id": item})


def access_rw(h, fd, iova, length, uptr, flags=0):
    h.test_cmd("IOMMU_TEST_OP_ACCESS_RW", fd, access_rw=dict(iova=iova, length=length,
                                                            uptr=uptr, flags=flags))


def pins(h, addr):
    return h.system.pin_count(("mm", h.caller.pid), addr // PS)


# ------------------------------------------------------------ CREATE_ACCESS

def test_create_access_unknown_flags_is_EOPNOTSUPP(h):
    i = h.ioas_alloc()
    assert E(create_access, h, i, 2) == errno.EOPNOTSUPP


def test_create_access_unknown_ioas_is_ENOENT_and_the_id_is_released(h):
    assert E(create_access, h, 5) == errno.ENOENT
    assert h.ioas_alloc() == 1


def test_create_access_without_exec_is_EOPNOTSUPP_naming_gmemfs_exec(h):
    i = h.ioas_alloc()
    h.files = None
    with pytest.raises(OSError) as ei:
        create_access(h, i)
    assert ei.value.errno == errno.EOPNOTSUPP and "gmemfs exec" in ei.value.strerror
    assert h.ioas_alloc() == i + 1


def test_access_takes_an_unreported_id_spec_1_2(h):
    i = h.ioas_alloc()
    create_access(h, i)
    assert h.ioas_alloc() == i + 2


def test_access_holds_its_ioas_until_its_fd_is_closed_spec_1_3(h):
    i = h.ioas_alloc()
    fd = create_access(h, i)
    assert E(h.destroy, i) == errno.EBUSY
    h.files.close(fd)
    h.destroy(i)


def test_needs_pin_pages_raises_alignment_to_page_size_EADDRINUSE(h):
    i = h.ioas_alloc()
    h.map(i, BUF, 0x800, iova=AP + 0x800)
    assert E(create_access, h, i, PIN) == errno.EADDRINUSE
    fd = create_access(h, i, 0)            # no pins: alignment 1 is enough
    h.files.close(fd)
    j = h.ioas_alloc()
    fd = create_access(h, j, PIN)
    assert h.ctx.lookup(j).iova_alignment == PS
    assert E(h.map, j, BUF, 0x800, iova=AP) == errno.EINVAL
    h.files.close(fd)
    assert h.ctx.lookup(j).iova_alignment == 1


# -------------------------------------------------------------- ACCESS_PAGES

def test_access_pages_argument_order(h):
    i = h.ioas_alloc()
    h.map(i, BUF, BUFSZ, iova=AP)
    plain = create_access(h, i, 0)
    fd = create_access(h, i, PIN)
    assert E(access_pages, h, fd, AP, (16 << 20) + 1) == errno.ENOMEM
    assert E(access_pages, h, fd, AP, PS, flags=2) == errno.EOPNOTSUPP
    assert E(access_pages, h, 77, AP, PS) == errno.EBADFD
    assert E(access_pages, h, plain, AP, PS) == errno.EOPNOTSUPP
    assert E(access_pages, h, fd, AP, 0) == errno.EINVAL
    assert E(access_pages, h, fd, (1 << 64) - PS, 2 * PS) == errno.EOVERFLOW
    assert E(access_pages, h, fd, AP + BUFSZ - PS, 2 * PS) == errno.ENOENT
    assert E(access_pages, h, fd, AP + 0x800, PS) == errno.EINVAL


def test_access_pages_pin_once_with_a_domain_and_ids_from_0(h):
    """The selftest's access_pin: a page is pinned once however many
    holders (access items, domains) it has."""
    i = h.ioas_alloc()
    fd = create_access(h, i, PIN)
    h.map(i, BUF, BUFSZ, iova=AP)
    a = access_pages(h, fd, AP, 2 * PS, uptr=BUF)
    b = access_pages(h, fd, AP, 2 * PS, uptr=BUF)
    assert (a, b) == (0, 1)
    assert pins(h, BUF) == 1 and pins(h, BUF + 2 * PS) == 0
    stdev, _, _ = h.mock_domain(i)
    assert pins(h, BUF) == 1 and pins(h, BUF + 2 * PS) == 1
    destroy_pages(h, fd, a)
    destroy_pages(h, fd, b)
    h.destroy(stdev)
    assert pins(h, BUF) == 0
    assert E(destroy_pages, h, fd, a) == errno.ENOENT


def test_access_pages_uptr_must_be_the_pinned_pages_EBADE(h):
    i = h.ioas_alloc()
    fd = create_access(h, i, PIN)
    h.map(i, BUF, BUFSZ, iova=AP)
    assert E(access_pages, h, fd, AP, PS, uptr=BUF + PS) == errno.EBADE
    assert pins(h, BUF) == 0
    # an EBADE does not use an item id
    assert access_pages(h, fd, AP, PS, uptr=BUF) == 0


def test_access_pages_permissions_EPERM(h):
    i = h.ioas_alloc()
    fd = create_access(h, i, PIN)
    h.map(i, BUF, BUFSZ, iova=AP, flags=A.IOMMU_IOAS_MAP_FIXED_IOVA | A.IOMMU_IOAS_MAP_READABLE)
    assert E(access_pages, h, fd, AP, PS, flags=A.MOCK_FLAGS_ACCESS_WRITE) == errno.EPERM
    assert access_pages(h, fd, AP, PS) == 0


def test_access_pages_across_areas_must_meet_on_a_page_boundary(h):
    i = h.ioas_alloc()
    fd = create_access(h, i, PIN)
    h.map(i, BUF, 2 * PS, iova=AP)
    h.map(i, BUF + 8 * PS, 2 * PS, iova=AP + 2 * PS)
    item = access_pages(h, fd, AP + PS, 2 * PS)
    assert pins(h, BUF + PS) == 1 and pins(h, BUF + 8 * PS) == 1
    destroy_pages(h, fd, item)


def test_unmap_tells_the_access_and_drops_its_items_selftest_access_pin_unmap(h):
    i = h.ioas_alloc()
    fd = create_access(h, i, PIN)
    h.map(i, BUF, BUFSZ, iova=AP)
    item = access_pages(h, fd, AP, BUFSZ, uptr=BUF)
    assert pins(h, BUF) == 1
    h.unmap(i, AP, BUFSZ)
    assert pins(h, BUF) == 0
    assert E(destroy_pages, h, fd, item) == errno.ENOENT


def test_closing_the_access_fd_unpins_everything(h):
    i = h.ioas_alloc()
    fd = create_access(h, i, PIN)
    h.map(i, BUF, BUFSZ, iova=AP)
    access_pages(h, fd, AP, BUFSZ)
    h.files.close(fd)
    assert pins(h, BUF) == 0
    assert E(access_pages, h, fd, AP, PS) == errno.EBADFD


# ---------------------------------------------------------------- ACCESS_RW

def test_access_rw_errors(h):
    i = h.ioas_alloc()
    fd = create_access(h, i)
    h.map(i, BUF, BUFSZ, iova=AP)
    tmp = 0x50000000
    assert E(access_rw, h, fd, AP, (16 << 20) + 1, tmp) == errno.ENOMEM
    assert E(access_rw, h, fd, AP, 8, tmp, flags=2) == errno.EOPNOTSUPP
    assert E(access_rw, h, 99, AP, 8, tmp) == errno.EBADFD
    assert E(access_rw, h, fd, AP, 0, tmp) == errno.EINVAL
    assert E(access_rw, h, fd, AP + BUFSZ - 4, 8, tmp) == errno.ENOENT
    assert E(access_rw, h, fd, AP, 8, 0x10) == errno.EFAULT                    # read: uptr
    assert E(access_rw, h, fd, AP, 8, 0x10, flags=A.MOCK_ACCESS_RW_WRITE) == errno.EFAULT
    j = h.ioas_alloc()
    fd2 = create_access(h, j)
    h.map(j, BUF, PS, iova=AP, flags=A.IOMMU_IOAS_MAP_FIXED_IOVA | A.IOMMU_IOAS_MAP_READABLE)
    assert E(access_rw, h, fd2, AP, 8, tmp, flags=A.MOCK_ACCESS_RW_WRITE) == errno.EPERM


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 3 * PS), length=st.integers(1, 2 * PS),
       slow=st.booleans(), write=st.booleans())
def test_access_rw_any_unaligned_span_across_areas(start, length, slow, write):
    """The selftest's check_access_rw: byte spans around page and area
    boundaries read what the buffer holds and write into it, slow path or
    not. Two areas: [AP, AP+2p) and [AP+2p, AP+4p) from different buffer
    offsets, so a span crosses an area boundary too."""
    with IommufdHarness(regions=[(BUF, BUFSZ), (0x50000000, 0x100000)]) as h:
        h.files = FakeInstaller(h.caller)
        content = os.urandom(BUFSZ)
        h.caller.write(BUF, content)
        i = h.ioas_alloc()
        fd = create_access(h, i)
        h.map(i, BUF, 2 * PS, iova=AP)
        h.map(i, BUF + 8 * PS, 2 * PS, iova=AP + 2 * PS)
        view = content[:2 * PS] + content[8 * PS:10 * PS]
        flags = A.MOCK_ACCESS_RW_SLOW_PATH if slow else 0
        tmp = 0x50000000
        if start + length > 4 * PS:
            assert E(access_rw, h, fd, AP + start, length, tmp, flags) == errno.ENOENT
            return
        if write:
            data = os.urandom(length)
            h.caller.write(tmp, data)
            access_rw(h, fd, AP + start, length, tmp, flags | A.MOCK_ACCESS_RW_WRITE)
            view = view[:start] + data + view[start + length:]
            assert h.caller.read(BUF, 2 * PS) + h.caller.read(BUF + 8 * PS, 2 * PS) == view
        else:
            access_rw(h, fd, AP + start, length, tmp, flags)
            assert h.caller.read(tmp, length) == view[start:start + length]


# ------------------------------------------------------- ACCESS_REPLACE_IOAS

def test_replace_ioas_drops_items_and_moves_the_reference_selftest_user_copy(h):
    i = h.ioas_alloc()
    fd = create_access(h, i, PIN)
    h.map(i, BUF, BUFSZ, iova=AP)
    item = access_pages(h, fd, AP, BUFSZ)
    j = h.ioas_alloc()
    h.map(j, BUF, BUFSZ, iova=AP)
    h.test_cmd("IOMMU_TEST_OP_ACCESS_REPLACE_IOAS", fd, access_replace_ioas={"ioas_id": j})
    assert E(destroy_pages, h, fd, item) == errno.ENOENT
    h.destroy(i)                           # the old IOAS is free
    assert E(h.destroy, j) == errno.EBUSY
    assert access_pages(h, fd, AP, PS) == 1
    assert E(h.test_cmd, "IOMMU_TEST_OP_ACCESS_REPLACE_IOAS", fd,
             access_replace_ioas={"ioas_id": 99}) == errno.ENOENT
    # replacing by the same IOAS changes nothing
    h.test_cmd("IOMMU_TEST_OP_ACCESS_REPLACE_IOAS", fd, access_replace_ioas={"ioas_id": j})
    destroy_pages(h, fd, 1)


def test_access_ops_on_an_access_of_another_context(h):
    """iommufd_access_get looks at the fd only: an access fd works through
    any iommufd context (it acts on its own IOAS)."""
    import iommufd_emu
    from iommufd_emu import dispatch
    i = h.ioas_alloc()
    fd = create_access(h, i)
    h.map(i, BUF, BUFSZ, iova=AP)
    other = iommufd_emu.Context({"system": h.system})
    cmd = A.new("iommu_test_cmd", size=A.sizeof("iommu_test_cmd"), op=A.IOMMU_TEST_OP_ACCESS_RW,
                id=fd, access_rw=dict(iova=AP, length=16, uptr=0x50000000))
    h.caller.write(h.ARG, A.to_bytes(cmd))
    assert dispatch.ioctl(other, A.IOMMU_TEST_CMD, h.ARG, h.caller) == 0
    assert h.caller.read(0x50000000, 16) == h.caller.read(BUF, 16)
    other.close()
