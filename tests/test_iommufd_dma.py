"""gmemfs extension: emulated device DMA (iommufd_emu/dma.py) and the
guest_memfd integration of MAP_FILE (spec §11)."""

import errno

import pytest

import ioctl_abi as A
from fakes import FakeCaller, FakeFileRef, IommufdHarness, errno_of as E
from gmemfs.gmem import (GuestMemfd, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED,
                         FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEMORY_ATTRIBUTE_PRIVATE)
from iommufd_emu import dma

PS = 4096
BUF = 0x40000000
BUFSZ = 0x100000
DBUF = 0x60000000          # caller buffer for DMA data


@pytest.fixture
def h():
    with IommufdHarness(regions=[(BUF, BUFSZ), (DBUF, 0x100000)]) as hh:
        yield hh


def do_dma(h, dev, iova, length, write=False, uptr=DBUF, pasid=0, flags=None):
    f = dma.dma_ffi()
    p = f.new("struct gmemfs_test_dma *")
    p.size = 72
    p.op = dma.GMEMFS_TEST_OP_DMA
    p.id = dev
    p.flags = (dma.GMEMFS_DMA_WRITE if write else 0) if flags is None else flags
    p.pasid = pasid
    p.iova, p.length, p.uptr = iova, length, uptr
    ret = h.raw(A.IOMMU_TEST_CMD, bytes(f.buffer(p)))
    back = f.new("struct gmemfs_test_dma *")
    f.memmove(back, h.caller.read(h.ARG, 72), 72)
    return ret, back


def setup(h, **mkw):
    i = h.ioas_alloc()
    st, hw, idev = h.mock_domain(i)
    return i, hw, idev


def test_dma_layout_is_the_test_cmd_buffer():
    f = dma.dma_ffi()
    assert f.sizeof("struct gmemfs_test_dma") == A.sizeof("iommu_test_cmd")
    assert f.offsetof("struct gmemfs_test_dma", "last") == A.offsetof("iommu_test_cmd", "last")
    assert dma.GMEMFS_TEST_OP_DMA > A.IOMMU_TEST_OP_MD_CHECK_DMABUF


def test_dma_read_write_user_memory(h):
    i, hw, idev = setup(h)
    h.caller.write(BUF + 0x1000, b"hello device")
    iova = h.map(i, BUF, 0x4000)
    ret, r = do_dma(h, idev, iova + 0x1000, 12)
    assert ret == 0 and r.out_fault_reason == 0
    assert h.caller.read(DBUF, 12) == b"hello device"
    h.caller.write(DBUF, b"WRITTEN")
    ret, r = do_dma(h, idev, iova + 0x3ffc, 4, write=True)
    assert ret == 0
    assert h.caller.read(BUF + 0x3ffc, 4) == b"WRIT"


def test_dma_spanning_two_areas(h):
    i, hw, idev = setup(h)
    h.caller.write(BUF, b"A" * 0x800)
    h.caller.write(BUF + 0x10000, b"B" * 0x800)
    iova = h.map(i, BUF, 0x800, iova=0x2000000)
    h.map(i, BUF + 0x10000, 0x800, iova=0x2000800)
    ret, r = do_dma(h, idev, 0x2000400, 0x800)
    assert ret == 0 and h.caller.read(DBUF, 0x800) == b"A" * 0x400 + b"B" * 0x400


def test_dma_hole_faults_unmapped_with_partial_transfer(h):
    i, hw, idev = setup(h)
    h.caller.write(BUF, b"x" * 0x800)
    h.map(i, BUF, 0x800, iova=0x2000000)
    h.caller.write(DBUF, bytes(0x1000))
    ret, r = do_dma(h, idev, 0x2000000, 0x1000)
    assert ret == 1
    assert (r.out_fault_reason, r.out_fault_iova, r.out_fault_dev_id) == (
        dma.FAULT_UNMAPPED, 0x2000800, idev)
    assert h.caller.read(DBUF, 0x1000) == b"x" * 0x800 + bytes(0x800)


def test_dma_outside_aperture_faults(h):
    i, hw, idev = setup(h)
    ret, r = do_dma(h, idev, 0x1000, 16)
    assert ret == 1 and r.out_fault_reason == dma.FAULT_UNMAPPED


def test_dma_permission_fault(h):
    i, hw, idev = setup(h)
    iova = h.map(i, BUF, 0x1000, flags=A.IOMMU_IOAS_MAP_READABLE)
    ret, r = do_dma(h, idev, iova, 16, write=True)
    assert ret == 1 and r.out_fault_reason == dma.FAULT_PERM and r.out_fault_iova == iova
    iova2 = h.map(i, BUF, 0x1000, flags=A.IOMMU_IOAS_MAP_WRITEABLE)
    ret, r = do_dma(h, idev, iova2, 16)
    assert ret == 1 and r.out_fault_reason == dma.FAULT_PERM


def test_dma_errors(h):
    i, hw, idev = setup(h)
    iova = h.map(i, BUF, 0x1000)
    assert E(do_dma, h, 99, iova, 16) == errno.ENOENT
    assert E(do_dma, h, idev, iova, 16, flags=4) == errno.EOPNOTSUPP
    assert E(do_dma, h, idev, iova, 0) == errno.EINVAL
    assert E(do_dma, h, idev, (1 << 64) - 8, 16) == errno.EOVERFLOW
    assert E(do_dma, h, idev, iova, 16, uptr=0xdead0000) == errno.EFAULT
    assert E(do_dma, h, idev, iova, 16, write=True, uptr=0xdead0000) == errno.EFAULT


def test_dma_through_memfd_reaches_file_bytes(h):
    i, hw, idev = setup(h)
    f = FakeFileRef("shmem", size=0x10000)
    f.data[0x2345:0x2350] = b"file-bytes!"
    fd = h.caller.add_fd(f)
    iova = h.map_file(i, fd, 0x2000, 0x1000)
    ret, r = do_dma(h, idev, iova + 0x345, 11)
    assert ret == 0 and h.caller.read(DBUF, 11) == b"file-bytes!"
    h.caller.write(DBUF, b"dev")
    do_dma(h, idev, iova, 3, write=True)
    assert bytes(f.data[0x2000:0x2003]) == b"dev"


def test_dma_write_sets_dirty_bits_only_when_enabled(h):
    i = h.ioas_alloc()
    _, _, idev = h.mock_domain(i)
    hw = h.ioctl("IOMMU_HWPT_ALLOC", "iommu_hwpt_alloc", dev_id=idev, pt_id=i,
                 flags=A.IOMMU_HWPT_ALLOC_DIRTY_TRACKING).out_hwpt_id
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", 2, mock_domain_replace={"pt_id": hw})
    iova = h.map(i, BUF, 0x10000)
    do_dma(h, idev, iova, 16, write=True)

    def bitmap():
        h.caller.write(h.SCRATCH, bytes(8))
        h.ioctl("IOMMU_HWPT_GET_DIRTY_BITMAP", "iommu_hwpt_get_dirty_bitmap", hwpt_id=hw,
                iova=iova, length=0x10000, page_size=PS, data=h.SCRATCH)
        return int.from_bytes(h.caller.read(h.SCRATCH, 8), "little")

    assert bitmap() == 0
    h.ioctl("IOMMU_HWPT_SET_DIRTY_TRACKING", "iommu_hwpt_set_dirty_tracking", hwpt_id=hw, flags=1)
    do_dma(h, idev, iova + 0x3000, 0x1800, write=True)     # pages 3 and 4
    do_dma(h, idev, iova + 0x8000, 16)                     # a read: not dirty
    assert bitmap() == (1 << 3) | (1 << 4)
    assert bitmap() == 0


def test_dma_hook_sees_every_access_and_can_deny(h):
    seen = []

    def hook(acc):
        seen.append((acc.iova, acc.length, acc.backing_kind, acc.backing_offset, acc.write))
        return "nope" if acc.iova >= 0x2000800 else None

    h.ctx.dma_hook = hook
    i, hw, idev = setup(h)
    h.map(i, BUF, 0x800, iova=0x2000000)
    h.map(i, BUF + 0x1000, 0x800, iova=0x2000800)
    ret, r = do_dma(h, idev, 0x2000000, 0x1000)
    assert ret == 1 and r.out_fault_reason == dma.FAULT_DENIED and r.out_fault_iova == 0x2000800
    assert seen == [(0x2000000, 0x800, "user", BUF, False), (0x2000800, 0x800, "user", BUF + 0x1000, False)]


def test_dma_backing_gone_is_backing_fault(h):
    i, hw, idev = setup(h)
    iova = h.map(i, BUF, 0x1000)
    h.caller.space.alive = False
    res = dma.device_dma(h.ctx, h.ctx.lookup(idev), iova, 16)
    assert res.fault_reason == dma.FAULT_BACKING
    h.caller.space.alive = True


def test_dma_detached_device_faults(h):
    i, hw, idev = setup(h)
    dev = h.ctx.lookup(idev)
    dev.detach(h.ctx)
    res = dma.device_dma(h.ctx, dev, 0x1000000, 16)
    assert res.fault_reason == dma.FAULT_UNMAPPED


# ===================================================== guest_memfd (spec §11)

@pytest.fixture
def gm():
    g = GuestMemfd.create(0x100000, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
    yield g
    g.close()


def gmem_fd(h, g, writable=True):
    return h.caller.add_fd(FakeFileRef("gmem", gmem=g, writable=writable))


def test_gmem_map_file_rfc_takes_no_pin_but_dma_reaches_contents(h, gm):
    i, hw, idev = setup(h)
    gm.write(0x3000, b"guest data")
    iova = h.map_file(i, gmem_fd(h, gm), 0x2000, 0x4000)
    assert gm.pin_count(0x3000) == 0
    assert h.system.pins == {}
    assert h.system.locked == {("user", 1000): 4}          # still charged (§11.2)
    ret, r = do_dma(h, idev, iova + 0x1000, 10)
    assert ret == 0 and h.caller.read(DBUF, 10) == b"guest data"
    h.caller.write(DBUF, b"from dev")
    do_dma(h, idev, iova, 8, write=True)
    assert gm.read(0x2000, 8) == b"from dev"


def test_gmem_kernel_mode_is_EINVAL_at_pin_time_spec_11_3(gm):
    hh = IommufdHarness(options={"gmem_map": "kernel"})
    i = hh.ioas_alloc()
    fd = gmem_fd(hh, gm)
    hh.map_file(i, fd, 0, 0x4000, iova=0x1000000)            # no domain: fine
    assert E(hh.mock_domain, i) == errno.EINVAL
    hh.unmap(i, 0, (1 << 64) - 1)
    hh.mock_domain(i)
    assert E(hh.map_file, i, fd, 0, 0x4000) == errno.EINVAL
    hh.ctx.close()


def test_gmem_pin_mode_pins_model_and_blocks_conversion(gm):
    hh = IommufdHarness(options={"gmem_map": "pin"})
    i = hh.ioas_alloc()
    hh.mock_domain(i)
    iova = hh.map_file(i, gmem_fd(hh, gm), 0, 0x2000)
    assert gm.pin_count(0) == 1 and gm.pin_count(0x2000) == 0
    with pytest.raises(OSError) as ei:
        gm.set_memory_attributes(0, 0x1000, KVM_MEMORY_ATTRIBUTE_PRIVATE)
    assert ei.value.errno == errno.EAGAIN
    hh.unmap(i, iova, 0x2000)
    assert gm.pin_count(0) == 0
    gm.set_memory_attributes(0, 0x1000, KVM_MEMORY_ATTRIBUTE_PRIVATE)
    hh.ctx.close()


def test_gmem_past_eof_is_EINVAL_with_domain(h, gm):
    i, hw, idev = setup(h)
    assert E(h.map_file, i, gmem_fd(h, gm), 0xff000, 0x2000) == errno.EINVAL


@pytest.fixture
def hr():
    """A harness whose IOASes use the 'revoke' policy (Jason Gunthorpe)."""
    hh = IommufdHarness(options={"policy": "revoke"})
    hh.caller.mmap(BUF, BUFSZ)
    hh.caller.mmap(DBUF, 0x100000)
    yield hh
    hh.ctx.close()


def test_gmem_punch_revokes_whole_area_keeps_iova(hr, gm):
    h = hr
    i, hw, idev = setup(h)
    fd = gmem_fd(h, gm)
    iova = h.map_file(i, fd, 0, 0x4000)
    other = h.map_file(i, fd, 0x8000, 0x1000)
    gm.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0x1000, 0x1000)
    ret, r = do_dma(h, idev, iova, 16)
    assert ret == 1 and r.out_fault_reason == dma.FAULT_REVOKED and r.out_fault_iova == iova
    assert do_dma(h, idev, other, 16)[0] == 0               # untouched area still mapped
    assert h.system.locked == {("user", 1000): 1}            # revoked area uncharged
    # IOVA stays occupied until UNMAP
    assert E(h.map, i, BUF, 0x1000, iova=iova) == errno.EEXIST
    assert h.unmap(i, iova, 0x4000) == 0x4000
    h.map(i, BUF, 0x1000, iova=iova)


def test_gmem_punch_outside_mapping_does_not_revoke(hr, gm):
    h = hr
    i, hw, idev = setup(h)
    iova = h.map_file(i, gmem_fd(h, gm), 0x4000, 0x2000)
    gm.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 0x4000)
    gm.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0x6000, 0x1000)
    assert do_dma(h, idev, iova, 0x2000)[0] == 0


def test_gmem_policy_option_revokes_on_conversion(gm):
    def policy(ev, area):
        return "revoke" if ev.phase == "before" and ev.kind in ("punch", "to_private") else "ignore"
    hh = IommufdHarness(options={"gmem_policy": policy})
    hh.caller.mmap(DBUF, 0x1000)
    i = hh.ioas_alloc()
    _, _, idev = hh.mock_domain(i)
    iova = hh.map_file(i, gmem_fd(hh, gm), 0, 0x2000)
    gm.set_memory_attributes(0x1000, 0x1000, KVM_MEMORY_ATTRIBUTE_PRIVATE)
    assert do_dma(hh, idev, iova, 16)[1].out_fault_reason == dma.FAULT_REVOKED
    hh.ctx.close()


def test_gmem_unsubscribes_when_pages_freed(h, gm):
    i, hw, idev = setup(h)
    iova = h.map_file(i, gmem_fd(h, gm), 0, 0x2000)
    assert len(gm._subscribers) == 1
    h.unmap(i, iova, 0x2000)
    assert gm._subscribers == []
    assert h.caller.refs_handed_out[-1].closed


def test_gmem_hook_can_deny_private_pages(h, gm):
    def hook(acc):
        if acc.backing_kind == "gmem" and acc.backing.is_private(acc.backing_offset & ~0xfff):
            return "private page"
    h.ctx.dma_hook = hook
    i, hw, idev = setup(h)
    iova = h.map_file(i, gmem_fd(h, gm), 0, 0x1000)
    assert do_dma(h, idev, iova, 16)[0] == 0
    gm.set_memory_attributes(0, 0x1000, KVM_MEMORY_ATTRIBUTE_PRIVATE)
    ret, r = do_dma(h, idev, iova, 16)
    assert ret == 1 and r.out_fault_reason == dma.FAULT_DENIED
