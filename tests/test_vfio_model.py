"""In-process tests of the emulated VFIO PCI device: QEMU's edu registers
(iommufd_emu/devices/edu.py), its PCI config space (devices/pci.py) and the
VFIO cdev model (iommufd_emu/vfio.py) on an iommufd context.

Kernel rules are named after the function that implements them
(device_cdev.c, vfio_main.c, vfio_pci_core.c, vfio_pci_intrs.c)."""

import errno
import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

import ioctl_abi as A
from fakes import FakeCaller, IommufdHarness, errno_of as E
from iommufd_emu import vfio as V
from iommufd_emu.devices import edu as EDU
from iommufd_emu.devices.pci import PciConfig

ARG = 0x70000              # the VFIO struct
RAM = 0x40000000           # guest RAM of the fake VMM
RAMSZ = 0x200000


# --------------------------------------------------------------- edu alone

class Bus:
    """A flat 1 MiB "RAM" for the edu engine; records every access."""

    def __init__(self):
        self.mem = bytearray(1 << 20)
        self.log = []
        self.irqs = []

    def dma(self, addr, n, write, data):
        self.log.append((addr, n, write))
        if write:
            self.mem[addr:addr + n] = data
            return n
        return bytes(self.mem[addr:addr + n])

    def irq(self, raised):
        self.irqs.append(raised)


@pytest.fixture
def edu():
    b = Bus()
    return EDU.Edu(b.dma, b.irq), b


def test_edu_identification_and_liveness(edu):
    """edu.rst: 0x00 reads 0x010000ed; 0x04 reads the inversion of the last write."""
    d, _ = edu
    assert d.read(0x00, 4) == 0x010000ED
    d.write(0x04, 4, 0x12345678)
    assert d.read(0x04, 4) == 0xEDCBA987
    d.write(0x00, 4, 0)                      # read-only
    assert d.read(0x00, 4) == 0x010000ED


@pytest.mark.parametrize("n,want", [(0, 1), (1, 1), (5, 120), (12, 479001600),
                                    (13, 6227020800 & 0xFFFFFFFF), (33, EDU.factorial_u32(33)),
                                    (34, 0), (0xFFFFFFFF, 0)])
def test_edu_factorial_mod_2_32(edu, n, want):
    d, _ = edu
    d.write(0x08, 4, n)
    assert d.read(0x20, 4) & EDU.STATUS_COMPUTING == 0
    assert d.read(0x08, 4) == want


def test_factorial_u32_is_the_32_bit_loop():
    r = 1
    for k in range(1, 40):
        r = (r * k) & 0xFFFFFFFF
        assert EDU.factorial_u32(k) == r


def test_edu_factorial_irq_only_with_status_bit(edu):
    d, b = edu
    d.write(0x08, 4, 4)
    assert d.read(0x24, 4) == 0 and not b.irqs
    d.write(0x20, 4, EDU.STATUS_IRQFACT)
    d.write(0x08, 4, 4)
    assert d.read(0x24, 4) == EDU.FACT_IRQ and b.irqs == [True]
    d.write(0x20, 4, 0)
    assert d.read(0x20, 4) == 0


def test_edu_raise_and_ack(edu):
    d, b = edu
    d.write(0x60, 4, 0x5)
    d.write(0x60, 4, 0x100)
    assert d.read(0x24, 4) == 0x105 and b.irqs == [True, True]
    d.write(0x64, 4, 0x1)
    assert d.read(0x24, 4) == 0x104 and b.irqs == [True, True]
    d.write(0x64, 4, 0x104)
    assert d.read(0x24, 4) == 0 and b.irqs[-1] is False


@pytest.mark.parametrize("size", [1, 2, 8])
def test_edu_below_0x80_only_4_byte_accesses(edu, size):
    """edu.c: below 0x80 an access of another size reads all ones and writes nothing."""
    d, _ = edu
    assert d.read(0x00, size) == (1 << 8 * size) - 1
    d.write(0x04, size, 0)
    d.write(0x60, size, 1)
    assert d.read(0x04, 4) == 0 and d.read(0x24, 4) == 0


def test_edu_dma_registers_4_or_8_bytes(edu):
    d, _ = edu
    d.write(0x80, 8, 0x1122334455667788)
    assert d.read(0x80, 8) == 0x1122334455667788
    assert d.read(0x80, 4) == 0x55667788
    assert d.read(0x84, 4) == 0xFFFFFFFF           # no register there
    d.write(0x80, 4, 0xAABBCCDD)                  # a 4-byte write replaces the register
    assert d.read(0x80, 8) == 0xAABBCCDD
    for size in (1, 2):
        d.write(0x88, size, 7)
        assert d.read(0x88, 8) == 0 and d.read(0x88, size) == (1 << 8 * size) - 1


def test_edu_dma_ram_to_edu_to_ram(edu):
    d, b = edu
    b.mem[0x1000:0x1010] = b"0123456789abcdef"
    d.write(0x80, 8, 0x1000)
    d.write(0x88, 8, EDU.DMA_START + 0x100)
    d.write(0x90, 8, 16)
    d.write(0x98, 8, EDU.DMA_RUN)                           # RAM -> edu
    assert d.read(0x98, 8) & EDU.DMA_RUN == 0
    assert bytes(d.buf[0x100:0x110]) == b"0123456789abcdef"
    d.write(0x80, 8, EDU.DMA_START + 0x100)
    d.write(0x88, 8, 0x2000)
    d.write(0x98, 8, EDU.DMA_RUN | EDU.DMA_DIR_TO_RAM | EDU.DMA_CMD_IRQ)
    assert bytes(b.mem[0x2000:0x2010]) == b"0123456789abcdef"
    assert d.read(0x24, 4) == EDU.DMA_IRQ


def test_edu_dma_mask_28_bits(edu):
    d, b = edu
    d.write(0x80, 8, (0xABC << 28) | 0x3000)
    d.write(0x88, 8, EDU.DMA_START)
    d.write(0x90, 8, 8)
    d.write(0x98, 8, EDU.DMA_RUN)
    assert b.log == [(0x3000, 8, False)]
    assert d.dma_mask == (1 << 28) - 1


@pytest.mark.parametrize("dst,cnt", [(EDU.DMA_START - 1, 8), (EDU.DMA_START + 4090, 8),
                                     (EDU.DMA_START, 0), (0, 16)])
def test_edu_dma_outside_buffer_is_not_done(edu, dst, cnt):
    d, b = edu
    d.write(0x88, 8, dst)
    d.write(0x90, 8, cnt)
    d.write(0x98, 8, EDU.DMA_RUN | EDU.DMA_CMD_IRQ)
    assert b.log == [] and d.counters["dma_range_errors"] == 1
    assert d.read(0x98, 8) == EDU.DMA_CMD_IRQ and d.read(0x24, 4) == EDU.DMA_IRQ


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 4, 8, 0x20, 0x24, 0x60, 0x64, 0x80, 0x88, 0x90, 0x100]),
                          st.sampled_from([1, 2, 4, 8]), st.integers(0, (1 << 64) - 1)), max_size=30))
def test_edu_access_rules_property(ops):
    """Whatever was written: identification stays, liveness is the inversion
    of the last accepted 4-byte write, any access of a wrong size reads all
    ones, and the interrupt line follows irq_status."""
    b = Bus()
    d = EDU.Edu(b.dma, b.irq)
    live = 0
    for addr, size, val in ops:
        d.write(addr, size, val)
        if addr == 4 and size == 4:
            live = ~val & 0xFFFFFFFF
        assert d.read(0, 4) == 0x010000ED and d.read(4, 4) == live
        for s in (1, 2, 8):
            assert d.read(0x24, s) == (1 << 8 * s) - 1
        if b.irqs:
            assert b.irqs[-1] == (d.irq_status != 0) or d.irq_status != 0


# ------------------------------------------------------------- config space

def edu_config():
    return V.VfioPciDevice().config


def test_config_header_is_edu():
    c = edu_config()
    r = lambda off, n: int.from_bytes(c.read(off, n), "little")
    assert (r(0, 2), r(2, 2), r(8, 1), r(9, 3)) == (0x1234, 0x11E8, 0x10, 0x00FF00)   # PCI_CLASS_OTHERS
    assert (r(0x2C, 2), r(0x2E, 2), r(0x3D, 1), r(0x0E, 1)) == (0x1AF4, 0x1100, 1, 0)
    assert r(6, 2) & 0x10 and r(0x34, 1) == 0x40
    # MSI: id 5, last in the list, 64-bit, one vector
    assert (r(0x40, 1), r(0x41, 1), r(0x42, 2)) == (0x05, 0, 0x0080)
    assert c.msi_vectors == 1 and r(0x10, 4) == 0


def test_config_bar_sizing_and_read_only_bits():
    c = edu_config()
    c.write(0x10, b"\xff\xff\xff\xff")
    assert c.read(0x10, 4) == (0xFFF00000).to_bytes(4, "little")       # 1 MiB, mem32
    c.write(0x10, (0xFEB00000).to_bytes(4, "little"))
    assert c.bar_address(0) == 0xFEB00000
    c.write(0x14, b"\xff\xff\xff\xff")                                   # BAR1: none
    assert c.read(0x14, 4) == bytes(4)
    c.write(0, b"\0\0\0\0")
    assert c.read(0, 4) == bytes.fromhex("3412e811")
    c.write(4, (0x0006).to_bytes(2, "little"))
    assert c.memory_enabled and c.bus_master
    c.write(6, (0xFFFF).to_bytes(2, "little"))          # RW1C bits are clear: stays
    assert int.from_bytes(c.read(6, 2), "little") == 0x10
    assert E(c.read, 250, 8) == errno.EFAULT


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(min_size=1, max_size=8)), max_size=40))
def test_config_read_only_bytes_never_change(writes):
    c = edu_config()
    before = bytes(c.data)
    for off, data in writes:
        data = data[:256 - off]
        c.write(off, data)
    for i in range(256):
        if not c.wmask[i] and not c.w1c[i]:
            assert c.data[i] == before[i], f"read-only byte {i:#x} changed"


def test_config_rejects_bad_geometry():
    with pytest.raises(ValueError):
        PciConfig(1, 2, 0, 0, bars={0: 3000})
    with pytest.raises(ValueError):
        PciConfig(1, 2, 0, 0, msi_vectors=3)


# ------------------------------------------------------------ the VFIO model

class VCaller(FakeCaller):
    """FakeCaller with eventfds: fd numbers -> host eventfds (or other host fds)."""

    def __init__(self):
        super().__init__()
        self.host = {}

    def get_eventfd(self, fd):
        h = self.host.get(fd)
        if h is None:
            raise OSError(errno.EBADF, "not open")
        if not os.path.exists(f"/proc/self/fdinfo/{h}") or \
                "eventfd-count" not in open(f"/proc/self/fdinfo/{h}").read():
            raise OSError(errno.EINVAL, "not an eventfd")
        return os.dup(h)

    def eventfd(self):
        fd = os.eventfd(0, os.EFD_NONBLOCK)
        self.host[fd] = fd
        return fd


def count(fd):
    try:
        return int.from_bytes(os.read(fd, 8), "little")
    except BlockingIOError:
        return 0


class Rig:
    def __init__(self, options=None):
        self.caller = VCaller()
        self.h = IommufdHarness(caller=self.caller, regions=[(RAM, RAMSZ), (ARG, 0x1000)],
                                options=options)
        self.dev = V.VfioPciDevice("vfio0")
        self.f = V.VfioDeviceFile(self.dev)
        self.iommufd = 42

    def resolve(self, caller, fd):
        if fd == self.iommufd:
            return self.h.ctx
        if fd == 7:
            raise OSError(errno.EBADFD, "not an iommufd")
        raise OSError(errno.EBADF, "not open")

    def ioctl(self, cmd, fmt, *vals, f=None):
        self.caller.write(ARG, struct.pack(fmt, *vals))
        V.ioctl(f or self.f, cmd, ARG, self.caller, self.resolve)
        return struct.unpack(fmt, self.caller.read(ARG, struct.calcsize(fmt)))

    def err(self, cmd, fmt, *vals, f=None):
        return E(self.ioctl, cmd, fmt, *vals, f=f)

    def bind(self, f=None):
        return self.ioctl(V.VFIO_DEVICE_BIND_IOMMUFD, "<IIiI", 16, 0, self.iommufd, 0, f=f)[3]

    def attach(self, pt):
        return self.ioctl(V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, "<III", 12, 0, pt)[2]

    def cfg_write(self, off, data):
        self.f.write(V.region_offset(V.CONFIG) + off, data)

    def enable(self, bits=0x6):
        self.cfg_write(4, bits.to_bytes(2, "little"))

    def bar_w(self, off, val, n=4):
        self.f.write(V.region_offset(V.BAR0) + off, val.to_bytes(n, "little"))

    def bar_r(self, off, n=4):
        return int.from_bytes(self.f.read(V.region_offset(V.BAR0) + off, n), "little")

    def set_irqs(self, flags, index, start, count, data=b""):
        self.caller.write(ARG, struct.pack("<5I", 20 + len(data), flags, index, start, count) + data)
        return V.ioctl(self.f, V.VFIO_DEVICE_SET_IRQS, ARG, self.caller)

    def dma(self, src, dst, n, to_ram):
        self.bar_w(0x80, src, 8)
        self.bar_w(0x88, dst, 8)
        self.bar_w(0x90, n, 8)
        self.bar_w(0x98, 1 | (2 if to_ram else 0), 8)


@pytest.fixture
def r():
    rig = Rig()
    yield rig
    rig.f.close()
    rig.h.ctx.close()


@pytest.fixture
def rb(r):
    """bound, attached to a new IOAS, memory and bus master on"""
    r.devid = r.bind()
    r.ioas = r.h.ioas_alloc()
    r.hwpt = r.attach(r.ioas)
    r.enable()
    return r


ALL = [V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, V.VFIO_DEVICE_DETACH_IOMMUFD_PT, V.VFIO_DEVICE_GET_INFO,
       V.VFIO_DEVICE_GET_REGION_INFO, V.VFIO_DEVICE_GET_IRQ_INFO, V.VFIO_DEVICE_SET_IRQS,
       V.VFIO_DEVICE_RESET, V.VFIO_DEVICE_FEATURE, 0x3B7F]


@pytest.mark.parametrize("cmd", ALL)
def test_unbound_file_is_EINVAL_vfio_device_fops_unl_ioctl(r, cmd):
    """vfio_device_fops_unl_ioctl: before BIND (access_granted) every other ioctl is EINVAL."""
    assert r.err(cmd, "<IIII", 32, 0, 0, 0) == errno.EINVAL
    assert E(r.f.read, V.region_offset(V.CONFIG), 4) == errno.EINVAL
    assert E(r.f.write, V.region_offset(V.BAR0), b"\0" * 4) == errno.EINVAL


@pytest.mark.parametrize("vals,want", [((15, 0, 42, 0), errno.EINVAL), ((16, 2, 42, 0), errno.EINVAL),
                                       ((16, 0, -1, 0), errno.EINVAL), ((16, 1, 42, 0), errno.EINVAL),
                                       ((16, 0, 9, 0), errno.EBADF), ((16, 0, 7, 0), errno.EBADFD)])
def test_bind_errno_vfio_df_ioctl_bind_iommufd(r, vals, want):
    """argsz < 16, unknown flags, iommufd < 0, TOKEN with argsz < 24 -> EINVAL;
    iommufd_ctx_from_fd: not open EBADF, not an iommufd EBADFD."""
    assert r.err(V.VFIO_DEVICE_BIND_IOMMUFD, "<IIiI", *vals) == want
    assert not r.f.access_granted and r.dev.file is None


def test_bind_token_on_a_non_sriov_device_is_EINVAL(r):
    r.caller.write(ARG + 0x100, bytes(16))
    assert r.err(V.VFIO_DEVICE_BIND_IOMMUFD, "<IIiIQ", 24, 1, 42, 0, ARG + 0x100) == errno.EINVAL
    assert r.err(V.VFIO_DEVICE_BIND_IOMMUFD, "<IIiIQ", 24, 1, 42, 0, 0x1234) == errno.EFAULT


def test_bind_gives_a_devid_the_iommufd_accepts(r):
    devid = r.bind()
    assert r.h.ctx.lookup(devid, "DEVICE") is r.f.idev
    hi = r.h.ioctl("IOMMU_GET_HW_INFO", "iommu_hw_info", dev_id=devid)
    assert (hi.out_data_type, hi.data_len, hi.out_capabilities) == (A.IOMMU_HW_INFO_TYPE_NONE, 0, 0)
    ioas = r.h.ioas_alloc()
    hw = r.h.ioctl("IOMMU_HWPT_ALLOC", "iommu_hwpt_alloc", dev_id=devid, pt_id=ioas).out_hwpt_id
    assert r.h.ctx.lookup(hw).domain_kind == "x86"
    assert E(r.h.destroy, devid) == errno.EBUSY                     # driver-held
    # no dirty tracking on this IOMMU; no selftest data
    assert E(r.h.ioctl, "IOMMU_HWPT_ALLOC", "iommu_hwpt_alloc", dev_id=devid, pt_id=ioas,
             flags=2) == errno.EOPNOTSUPP
    assert r.attach(hw) == hw
    # bound twice: EINVAL; a second open of the device: EINVAL (cdev: one opener)
    assert r.err(V.VFIO_DEVICE_BIND_IOMMUFD, "<IIiI", 16, 0, 42, 0) == errno.EINVAL
    f2 = V.VfioDeviceFile(r.dev)
    assert E(r.bind, f2) == errno.EINVAL


def test_bind_out_devid_fault_undoes_the_bind(r):
    class RO(VCaller):
        def write(self, addr, data):
            raise OSError(errno.EFAULT, "read-only")
    c = RO()
    c.mmap(ARG, 0x1000)
    c.write = RO.write.__get__(c)
    c.space.write(ARG, struct.pack("<IIiI", 16, 0, 42, 0))
    assert E(V.ioctl, r.f, V.VFIO_DEVICE_BIND_IOMMUFD, ARG, c, r.resolve) == errno.EFAULT
    assert not r.f.access_granted and not r.h.ctx.objects("DEVICE")


def test_attach_ioas_gives_an_x86_domain_with_the_msi_window_reserved(r):
    r.bind()
    ioas = r.h.ioas_alloc()
    hw = r.attach(ioas)
    assert hw != ioas and r.h.ctx.lookup(hw).auto
    a = r.h.ioctl("IOMMU_IOAS_IOVA_RANGES", "iommu_ioas_iova_ranges", ioas_id=ioas, num_iovas=4,
                  allowed_iovas=r.h.SCRATCH)
    raw = r.caller.read(r.h.SCRATCH, 32)
    assert a.num_iovas == 2 and a.out_iova_alignment == 4096
    assert struct.unpack("<4Q", raw) == (0, 0xFEDFFFFF, 0xFEF00000, (1 << 64) - 1)
    # the window cannot be mapped; IOVA 0 and the BIOS at 0xfffc0000 can
    assert E(r.h.map, ioas, RAM, 0x1000, iova=0xFEE00000) == errno.EINVAL
    r.h.map(ioas, RAM, 0x1000, iova=0x1000)
    r.h.map(ioas, RAM, 0x1000, iova=0xFFFC0000)
    # detach: the reservation goes with the device
    r.ioctl(V.VFIO_DEVICE_DETACH_IOMMUFD_PT, "<II", 8, 0)
    assert r.h.ctx.find(hw) is None                                # auto domain freed
    r.h.map(ioas, RAM, 0x1000, iova=0xFEE00000)
    assert r.err(V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, "<III", 12, 0, ioas) == errno.EADDRINUSE


def test_attach_over_an_allowed_range_is_EADDRINUSE_spec_3(r):
    """iommufd.md §3: adding a reserved range that intersects an allowed range
    fails with EADDRINUSE (the device's MSI window at attach)."""
    r.bind()
    ioas = r.h.ioas_alloc()
    r.caller.write(r.h.SCRATCH, struct.pack("<QQ", 0xFE000000, 0xFEFFFFFF))
    r.h.ioctl("IOMMU_IOAS_ALLOW_IOVAS", "iommu_ioas_allow_iovas", ioas_id=ioas, num_iovas=1,
              allowed_iovas=r.h.SCRATCH)
    assert r.err(V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, "<III", 12, 0, ioas) == errno.EADDRINUSE
    assert not r.h.ctx.objects("HWPT_PAGING")          # the auto domain did not stay


def test_mock_devices_keep_their_aperture_and_kinds_do_not_mix(r):
    """A selftest mock device and the VFIO device each get a domain of their own kind."""
    r.bind()
    ioas = r.h.ioas_alloc()
    st_id, mock_hw, mock_dev = r.h.mock_domain(ioas)
    hw = r.attach(ioas)
    assert hw != mock_hw
    assert r.h.ctx.lookup(mock_hw).aperture == (1 << 24, (1 << 31) - 1)
    assert r.err(V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, "<III", 12, 0, mock_hw) == errno.EINVAL
    a = r.h.ioctl("IOMMU_IOAS_IOVA_RANGES", "iommu_ioas_iova_ranges", ioas_id=ioas, num_iovas=4,
                  allowed_iovas=r.h.SCRATCH)
    assert a.num_iovas == 1      # the mock aperture, which also avoids the MSI window


@pytest.mark.parametrize("vals,want", [((11, 0, 1), errno.EINVAL), ((12, 2, 1), errno.EINVAL),
                                       ((16, 1, 1), errno.EOPNOTSUPP), ((12, 0, 999), errno.ENOENT)])
def test_attach_errno_vfio_df_ioctl_attach_pt(r, vals, want):
    r.bind()
    r.h.ioas_alloc()
    assert r.err(V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, "<III", *vals) == want


def test_attach_to_a_device_id_is_EINVAL(r):
    devid = r.bind()
    assert r.err(V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, "<III", 12, 0, devid) == errno.EINVAL
    assert r.err(V.VFIO_DEVICE_DETACH_IOMMUFD_PT, "<II", 7, 0) == errno.EINVAL
    assert r.err(V.VFIO_DEVICE_DETACH_IOMMUFD_PT, "<II", 8, 2) == errno.EINVAL
    r.ioctl(V.VFIO_DEVICE_DETACH_IOMMUFD_PT, "<II", 8, 0)           # not attached: 0


def test_get_info_region_info_irq_info(rb):
    r = rb
    assert r.ioctl(V.VFIO_DEVICE_GET_INFO, "<6I", 24, 0, 0, 0, 0, 0)[:4] == (24, 3, 9, 5)
    assert r.err(V.VFIO_DEVICE_GET_INFO, "<4I", 15, 0, 0, 0) == errno.EINVAL
    want = {0: (3, 1 << 20), 1: (0, 0), 5: (0, 0), 6: (0, 0), 7: (3, 256)}
    for idx, (flags, size) in want.items():
        got = r.ioctl(V.VFIO_DEVICE_GET_REGION_INFO, "<4IQQ", 32, 0, idx, 0, 0, 0)
        assert (got[1], got[4], got[5]) == (flags, size, idx << 40), idx
    for idx in (8, 9, 1000):
        assert r.err(V.VFIO_DEVICE_GET_REGION_INFO, "<4IQQ", 32, 0, idx, 0, 0, 0) == errno.EINVAL
    assert r.err(V.VFIO_DEVICE_GET_REGION_INFO, "<4IQQ", 31, 0, 7, 0, 0, 0) == errno.EINVAL
    want = {0: (1 | 2 | 4, 1), 1: (1 | 8, 1), 2: (1 | 8, 0), 4: (1 | 8, 1)}
    for idx, (flags, cnt) in want.items():
        assert r.ioctl(V.VFIO_DEVICE_GET_IRQ_INFO, "<4I", 16, 0, idx, 0)[1::2] == (flags, cnt)
    for idx in (3, 5):
        assert r.err(V.VFIO_DEVICE_GET_IRQ_INFO, "<4I", 16, 0, idx, 0) == errno.EINVAL


def test_region_io_rules_vfio_pci_rw(rb):
    r = rb
    cfg = V.region_offset(V.CONFIG)
    assert r.f.read(cfg, 256)[:4] == bytes.fromhex("3412e811")
    assert E(r.f.read, cfg + 200, 57) == errno.EFAULT
    assert E(r.f.read, V.region_offset(1), 4) == errno.EINVAL                 # no resource
    assert E(r.f.read, V.region_offset(V.ROM), 4) == errno.EINVAL
    assert E(r.f.write, V.region_offset(V.ROM), b"1234") == errno.EINVAL
    assert E(r.f.read, V.region_offset(V.VGA), 4) == errno.EINVAL
    assert E(r.f.read, V.region_offset(9), 4) == errno.EINVAL
    assert E(r.f.read, V.region_offset(0) + (1 << 20), 4) == errno.EINVAL
    assert len(r.f.read(V.region_offset(0) + (1 << 20) - 2, 8)) == 2          # clipped
    assert r.bar_r(0) == 0x010000ED
    # 8-byte aligned pread -> one 8-byte access; 4+4 at 0 -> id and liveness
    r.bar_w(4, 0)
    assert r.f.read(V.region_offset(0), 8) == b"\xff" * 8
    assert r.f.read(V.region_offset(0) + 4, 8) == b"\xff" * 4 + bytes(4)     # liveness, factorial
    r.enable(0)
    assert E(r.bar_r, 0) == errno.EIO                     # memory decoding off


def test_dma_through_the_ioas_and_bus_master(rb):
    r = rb
    r.h.map(r.ioas, RAM, RAMSZ, iova=0x100000)
    r.caller.write(RAM + 0x10, b"guest data 12345")
    r.dma(0x100010, EDU.DMA_START, 16, to_ram=False)
    r.dma(EDU.DMA_START, 0x100800, 16, to_ram=True)
    assert r.caller.read(RAM + 0x800, 16) == b"guest data 12345"
    r.enable(0x2)                                  # bus master off: nothing moves
    r.caller.write(RAM + 0x10, b"XXXXXXXXXXXXXXXX")
    r.dma(0x100010, EDU.DMA_START, 16, to_ram=False)
    r.dma(EDU.DMA_START, 0x100900, 16, to_ram=True)
    assert r.caller.read(RAM + 0x900, 16) == bytes(16)
    assert bytes(r.dev.edu.buf[:16]) == b"guest data 12345"
    assert r.dev.counters["dma_blocked"] == 2


def test_dma_to_an_unmapped_iova_is_an_iommu_fault_event(rb):
    r = rb
    r.h.map(r.ioas, RAM, 0x1000, iova=0x100000)
    r.dev.edu.buf[:8] = b"DEADBEEF"
    r.dma(EDU.DMA_START, 0x300000, 8, to_ram=True)
    ev = r.h.ctx.events.events("iommu_fault")
    assert len(ev) == 1 and ev[0]["iova"] == 0x300000 and ev[0]["device"] == r.devid
    assert ev[0]["ioas"] == r.ioas and "unmapped" in ev[0]["detail"]
    r.dma(EDU.DMA_START, 0x100000, 8, to_ram=True)              # keeps working
    assert r.caller.read(RAM, 8) == b"DEADBEEF"


def test_dma_without_a_domain_is_an_iommu_fault(r):
    r.bind()
    r.enable()
    r.dma(EDU.DMA_START, 0x1000, 8, to_ram=True)
    assert len(r.h.ctx.events.events("iommu_fault")) == 1


def test_dma_into_a_private_guest_memfd_page_on_tdx_is_a_machine_check():
    """A DMA into a guest_memfd area follows the platform: on tdx a shared
    IOPTE reaching a private page is a machine check (host dead)."""
    from gmemfs.gmem import GuestMemfd, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED
    from fakes import FakeFileRef
    r = Rig({"platform": "tdx", "tdx_shared_bit": 27})      # edu reaches 28 bits
    devid = r.bind()
    ioas = r.h.ioas_alloc()
    r.attach(ioas)
    r.enable()
    g = GuestMemfd.create(0x10000, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
    fd = r.caller.add_fd(FakeFileRef("gmem", gmem=g))
    shared = 1 << 27
    r.h.map_file(ioas, fd, 0, 0x10000, iova=shared)
    r.dma(EDU.DMA_START, shared, 8, to_ram=True)                   # shared page: fine
    assert not r.h.ctx.events.events()
    g.set_memory_attributes(0, 0x1000, 8, 0, [0] * 11)             # to private, not unmapped
    r.dma(EDU.DMA_START, shared, 8, to_ram=True)
    assert [e["kind"] for e in r.h.ctx.events.events()] == ["machine_check"]
    assert r.h.ctx.events.host_dead and not r.h.ctx.events.events("iommu_fault")
    assert devid
    r.f.close()
    r.h.ctx.close()


# ---------------------------------------------------------------- interrupts

def test_intx_eventfd_automask_unmask_vfio_pci_intrs(rb):
    r = rb
    efd = r.caller.eventfd()
    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.INTX, 0, 1, struct.pack("<i", efd))
    r.bar_w(0x60, 1)
    assert count(efd) == 1 and r.dev.intx_masked               # automasked
    r.bar_w(0x60, 2)
    assert count(efd) == 0                                     # masked: no new signal
    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_UNMASK, V.INTX, 0, 1)
    assert count(efd) == 1 and r.dev.intx_masked               # still asserted: again
    r.bar_w(0x64, 3)                                           # ack lowers the line
    r.set_irqs(V.SET_DATA_BOOL | V.SET_ACTION_UNMASK, V.INTX, 0, 1, b"\1")
    assert count(efd) == 0 and not r.dev.intx_masked
    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_MASK, V.INTX, 0, 1)
    r.bar_w(0x60, 1)
    assert count(efd) == 0
    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_UNMASK, V.INTX, 0, 1)
    assert count(efd) == 1
    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_TRIGGER, V.INTX, 0, 1)   # loopback
    assert count(efd) == 1
    # MSI while INTx is on: EINVAL; INTx off (count 0, DATA_NONE)
    assert E(r.set_irqs, V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.MSI, 0, 1,
             struct.pack("<i", efd)) == errno.EINVAL
    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_TRIGGER, V.INTX, 0, 0)
    assert r.dev.irq_type is None
    assert E(r.set_irqs, V.SET_DATA_NONE | V.SET_ACTION_UNMASK, V.INTX, 0, 1) == errno.EINVAL


def test_factorial_with_irq_bit_signals_the_eventfd(rb):
    """edu: a factorial completing with status bit 0x80 raises FACT_IRQ, which
    reaches the INTx eventfd; the acknowledge lowers the line."""
    r = rb
    efd = r.caller.eventfd()
    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.INTX, 0, 1, struct.pack("<i", efd))
    r.bar_w(0x08, 6)
    assert count(efd) == 0                      # no 0x80: no interrupt
    r.bar_w(0x20, 0x80)
    r.bar_w(0x08, 6)
    assert count(efd) == 1 and r.bar_r(0x08) == 720 and r.bar_r(0x24) == 1
    r.bar_w(0x64, 1)
    assert not r.dev._intx_level()
    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_UNMASK, V.INTX, 0, 1)
    assert not r.dev.intx_masked and count(efd) == 0


def test_intx_enabled_while_asserted_signals_at_once(rb):
    r = rb
    r.bar_w(0x60, 1)
    efd = r.caller.eventfd()
    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.INTX, 0, 1, struct.pack("<i", efd))
    assert count(efd) == 1


def test_intx_unmask_eventfd_is_kept_for_the_adapter(rb):
    r = rb
    efd, ufd = r.caller.eventfd(), r.caller.eventfd()
    seen = []

    class Watcher:
        def watch(self, trig, fn):
            seen.append(trig)
            self.fn = fn

        def unwatch(self, trig):
            seen.append(None)
    r.dev.watcher = w = Watcher()
    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.INTX, 0, 1, struct.pack("<i", efd))
    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_UNMASK, V.INTX, 0, 1, struct.pack("<i", ufd))
    assert seen and seen[-1] is not None
    r.bar_w(0x60, 1)
    assert count(efd) == 1 and r.dev.intx_masked
    r.bar_w(0x64, 1)
    w.fn()                                        # the unmask eventfd was signalled
    assert not r.dev.intx_masked
    assert E(r.set_irqs, V.SET_DATA_EVENTFD | V.SET_ACTION_MASK, V.INTX, 0, 1,
             struct.pack("<i", ufd)) == errno.ENOTTY
    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_UNMASK, V.INTX, 0, 1, struct.pack("<i", -1))
    assert seen[-1] is None


def test_msi_signals_every_raise_and_dma_irq(rb):
    r = rb
    efd = r.caller.eventfd()
    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.MSI, 0, 1, struct.pack("<i", efd))
    r.bar_w(0x60, 1)
    r.bar_w(0x60, 1)
    assert count(efd) == 2 and not r.dev.intx_masked
    r.h.map(r.ioas, RAM, 0x1000, iova=0x100000)
    r.bar_w(0x80, EDU.DMA_START, 8)
    r.bar_w(0x88, 0x100000, 8)
    r.bar_w(0x90, 8, 8)
    r.bar_w(0x98, 1 | 2 | 4, 8)
    assert count(efd) == 1 and r.bar_r(0x24) == 0x101
    r.set_irqs(V.SET_DATA_BOOL | V.SET_ACTION_TRIGGER, V.MSI, 0, 1, b"\1")
    assert count(efd) == 1
    assert E(r.set_irqs, V.SET_DATA_NONE | V.SET_ACTION_MASK, V.MSI, 0, 1) == errno.ENOTTY
    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_TRIGGER, V.MSI, 0, 0)
    assert r.dev.irq_type is None


@pytest.mark.parametrize("hdr,data,want", [
    ((19, 0x21, 0, 0, 1), b"", errno.EINVAL),                     # argsz < 20
    ((20, 0x21, 5, 0, 1), b"", errno.EINVAL),                     # index >= 5
    ((20, 0x21, 0, 1, 1), b"", errno.EINVAL),                     # beyond the vector count
    ((20, 0x21, 2, 0, 1), b"", errno.EINVAL),                     # MSI-X has 0 vectors
    ((20, 0x23, 0, 0, 1), b"\1", errno.EINVAL),                   # two data types
    ((20, 0x40 | 1, 0, 0, 1), b"", errno.EINVAL),                 # unknown flag
    ((20, 0x24, 0, 0, 1), b"", errno.EINVAL),                     # argsz has no room for the fd
    ((20, 0x01, 0, 0, 1), b"", errno.ENOTTY),                     # no action
    ((20, 0x31, 0, 0, 1), b"", errno.ENOTTY),                     # two actions
    ((24, 0x24, 0, 0, 1), struct.pack("<i", 99), errno.EBADF),    # not open
])
def test_set_irqs_errno_vfio_set_irqs_validate_and_prepare(rb, hdr, data, want):
    rb.caller.write(ARG, struct.pack("<5I", *hdr) + data)
    assert E(V.ioctl, rb.f, V.VFIO_DEVICE_SET_IRQS, ARG, rb.caller) == want


def test_set_irqs_not_an_eventfd_is_EINVAL(rb):
    memfd = os.memfd_create("x")
    rb.caller.host[memfd] = memfd
    assert E(rb.set_irqs, V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.INTX, 0, 1,
             struct.pack("<i", memfd)) == errno.EINVAL
    os.close(memfd)


# ------------------------------------------------------- reset, feature, close

def test_reset_and_hot_reset(rb):
    r = rb
    r.bar_w(4, 0x1234)
    r.bar_w(0x60, 1)
    r.ioctl(V.VFIO_DEVICE_RESET, "<I", 0)
    assert r.bar_r(4) == 0 and r.bar_r(0x24) == 0
    assert r.dev.config.memory_enabled                  # config saved and restored
    assert r.err(V.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, "<3I", 12, 0, 0) == errno.ENODEV
    assert r.err(V.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, "<3I", 11, 0, 0) == errno.EINVAL
    assert r.err(V.VFIO_DEVICE_PCI_HOT_RESET, "<3I", 12, 1, 0) == errno.EINVAL
    assert r.err(V.VFIO_DEVICE_PCI_HOT_RESET, "<3I", 12, 0, 1) == errno.EINVAL
    assert r.err(V.VFIO_DEVICE_PCI_HOT_RESET, "<3I", 12, 0, 0) == errno.ENODEV


G, S, P = V.FEATURE_GET, V.FEATURE_SET, V.FEATURE_PROBE


@pytest.mark.parametrize("argsz,flags,want", [
    (7, G | 1, errno.EINVAL), (8, 0x80000 | 1, errno.EINVAL), (8, G | S | 1, errno.EINVAL),
    (8, G | 1, errno.ENOTTY), (8, P | G | S | 1, errno.ENOTTY), (8, S | 2, errno.ENOTTY),
    (8, P | 6, errno.ENOTTY), (8, G | 9, errno.ENOTTY), (8, G | 0, errno.ENOTTY),
    (8, G | 0x77, errno.ENOTTY), (8, G | 3, errno.EINVAL), (8, 3, errno.EINVAL),
    (8, P | S | 3, 0), (8, S | 3, 0), (8, S | 5, 0)])
def test_feature_errno_vfio_ioctl_device_feature(rb, argsz, flags, want):
    """A device without migration or DMA logging (ENOTTY); low power entry and
    exit follow vfio_check_feature (SET only)."""
    if want:
        assert rb.err(V.VFIO_DEVICE_FEATURE, "<II", argsz, flags) == want
    else:
        rb.ioctl(V.VFIO_DEVICE_FEATURE, "<II", argsz, flags)


def test_low_power_blocks_bar_access(rb):
    rb.ioctl(V.VFIO_DEVICE_FEATURE, "<II", 8, S | 3)
    assert E(rb.bar_r, 0) == errno.EIO
    rb.ioctl(V.VFIO_DEVICE_FEATURE, "<II", 8, S | 5)
    assert rb.bar_r(0) == 0x010000ED


def test_close_unbinds_detaches_and_resets(rb):
    r = rb
    efd = r.caller.eventfd()
    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.MSI, 0, 1, struct.pack("<i", efd))
    r.bar_w(4, 7)
    r.f.close()
    ctx = r.h.ctx
    assert not ctx.objects("DEVICE") and ctx.find(r.hwpt) is None
    assert r.dev.file is None and r.dev.irq_type is None and not r.dev.config.memory_enabled
    assert r.dev.edu.addr4 == 0
    ioas = ctx.lookup(r.ioas, "IOAS")
    assert not ioas.reserved                           # the MSI window went with it
    f2 = V.VfioDeviceFile(r.dev)                        # the device can be bound again
    assert r.bind(f2)
    f2.close()


OPS = st.lists(st.one_of(
    st.tuples(st.just("raise"), st.sampled_from([1, 2, 0x100])),
    st.tuples(st.just("ack"), st.sampled_from([1, 2, 0x100, 0xFFFFFFFF])),
    st.tuples(st.just("unmask"), st.just(0)), st.tuples(st.just("mask"), st.just(0)),
    st.tuples(st.just("intx_on"), st.just(0)), st.tuples(st.just("off"), st.just(0)),
    st.tuples(st.just("msi_on"), st.just(0)), st.tuples(st.just("reset"), st.just(0))),
    max_size=40)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_interrupt_delivery_property(ops):
    """Whatever the order of raises, acks, masks, unmasks, mode changes and
    resets: an asserted INTx line is never left unmasked (automask), an
    asserted line has been signalled since INTx was enabled (no lost
    interrupt), and MSI signals exactly the raises that leave a non-zero
    status."""
    r = Rig()
    try:
        r.bind()
        r.enable()
        efd = r.caller.eventfd()
        since_armed = 0          # INTx signals since the line was last low and unmasked
        user_masked = False
        for op, v in ops:
            dev = r.dev
            mode = dev.irq_type
            try:
                if op == "raise":
                    r.bar_w(0x60, v)
                elif op == "ack":
                    r.bar_w(0x64, v)
                elif op == "unmask":
                    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_UNMASK, V.INTX, 0, 1)
                    user_masked = False
                elif op == "mask":
                    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_MASK, V.INTX, 0, 1)
                    user_masked = True
                elif op == "intx_on":
                    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.INTX, 0, 1,
                               struct.pack("<i", efd))
                    if mode is None:
                        user_masked = False
                elif op == "msi_on":
                    r.set_irqs(V.SET_DATA_EVENTFD | V.SET_ACTION_TRIGGER, V.MSI, 0, 1,
                               struct.pack("<i", efd))
                elif op == "off":
                    idx = V.MSI if mode == V.MSI else V.INTX
                    r.set_irqs(V.SET_DATA_NONE | V.SET_ACTION_TRIGGER, idx, 0, 0)
                else:
                    r.ioctl(V.VFIO_DEVICE_RESET, "<I", 0)
            except OSError as e:
                assert e.errno == errno.EINVAL      # mask/unmask without INTx, mode clashes
                assert op in ("unmask", "mask", "intx_on", "msi_on", "off")
            got = count(efd)
            if mode == V.MSI and dev.irq_type == V.MSI:
                assert got == (1 if op == "raise" else 0), (op, v)
            if dev.irq_type != V.INTX:
                assert mode == V.INTX or got == 0 or mode == V.MSI
                since_armed = 0
                continue
            level = dev.edu.irq_status != 0
            assert not (level and not dev.intx_masked), "an asserted line is unmasked"
            since_armed += got
            if level and not user_masked:
                assert since_armed >= 1, "an asserted line was never signalled"
            if not level and not dev.intx_masked:
                since_armed = 0
    finally:
        r.f.close()
        r.h.ctx.close()


class FakeWatcher:
    def __init__(self):
        self.fns = {}

    def watch(self, trig, fn):
        self.fns[trig] = fn

    def unwatch(self, trig):
        self.fns.pop(trig)


def ioeventfd(r, flags, offset, data, fd, argsz=32):
    return r.ioctl(V.VFIO_DEVICE_IOEVENTFD, "<IIQQiI", argsz, flags, offset, data, fd, 0)


def test_ioeventfd_writes_the_bar_when_signalled_vfio_pci_ioeventfd(rb):
    r = rb
    r.dev.watcher = w = FakeWatcher()
    efd = r.caller.eventfd()
    ioeventfd(r, 4, V.region_offset(0) + 4, 0x1234, efd)          # liveness <- 0x1234
    (fire,) = w.fns.values()
    fire()
    assert r.bar_r(4) == 0xFFFFEDCB
    assert r.err(V.VFIO_DEVICE_IOEVENTFD, "<IIQQiI", 32, 4, 4, 0x1234, efd, 0) == errno.EEXIST
    r.enable(0)                                   # memory decoding off: the write is dropped
    ioeventfd(r, 4, V.region_offset(0) + 0x60, 1, efd)
    fns = list(w.fns.values())
    fns[-1]()
    r.enable()
    assert r.bar_r(0x24) == 0
    ioeventfd(r, 4, V.region_offset(0) + 4, 0x1234, -1)           # removed
    assert len(w.fns) == 1
    r.f.close()                                   # the last close drops the rest
    assert not w.fns


@pytest.mark.parametrize("vals,want", [
    ((31, 4, 4, 0, 3, 0), errno.EINVAL), ((32, 0x14, 4, 0, 3, 0), errno.EINVAL),
    ((32, 3, 4, 0, 3, 0), errno.EINVAL), ((32, 0, 4, 0, 3, 0), errno.EINVAL),
    ((32, 4, 4, 0, -2, 0), errno.EINVAL), ((32, 4, V.region_offset(7), 0, 3, 0), errno.EINVAL),
    ((32, 8, (1 << 20) - 4, 0, 3, 0), errno.EINVAL), ((32, 4, V.region_offset(1), 0, 3, 0), errno.EINVAL),
    ((32, 4, 8, 0, -1, 0), errno.ENODEV), ((32, 4, 8, 0, 99, 0), errno.EBADF)])
def test_ioeventfd_errno(rb, vals, want):
    assert rb.err(V.VFIO_DEVICE_IOEVENTFD, "<IIQQiI", *vals) == want
