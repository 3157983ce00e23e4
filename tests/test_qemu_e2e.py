"""Unmodified QEMU (>= 10, Debian bookworm-backports; `./run` installs it)
realizes ``-device vfio-pci,fd=M,iommufd=i0`` on MNT/vfio/devices/vfio0 with
``-object iommufd,fd=N`` on MNT/iommu, and a qtest script is the guest: it
programs config space, touches BAR0 (QEMU: pread/pwrite on the device fd) and
reads guest RAM to see where the device's DMA landed (gmemfs/qemu.py).

These tests never skip: without QEMU >= 10 they fail (`./run test` installs it)."""

import json
import time

import pytest

from gmemfs import qemu as Q

EDU_BUF = 0x40000


@pytest.fixture(scope="module", autouse=True)
def _qemu_10():
    v = Q.qemu_version()
    if not v or v < (10, 0):
        pytest.fail(f"QEMU >= 10 is needed (found {v or 'none'}): ./run test installs it from "
                    "bookworm-backports")


@pytest.fixture
def vm(mount_factory, tmp_path):
    m = mount_factory()
    q = Q.Qemu(m.path, log=tmp_path / "qemu.log")
    q.m = m
    try:
        yield q
    finally:
        q.quit()


def events(m, kind):
    return [e for e in map(json.loads, (m.path / ".state" / "events").read_text().splitlines())
            if e["kind"] == kind]


def test_qemu_realizes_the_device_with_the_kernel_ioctl_sequence(vm):
    """The order QEMU 10.0 issues (hw/vfio/iommufd.c): BIND, then GET_HW_INFO,
    IOAS_ALLOC, HWPT_ALLOC, ATTACH, IOVA_RANGES (EMSGSIZE, then again), MAP of
    RAM/ROM, GET_INFO, REGION_INFO, IRQ_INFO, ..., RESET."""
    assert vm.cfg_readl(0) == 0x11E81234
    names = [line.split("ioctl ")[1].split()[0] for line in vm.m.log_text().splitlines()
             if " ioctl " in line]
    first = ["VFIO_DEVICE_BIND_IOMMUFD", "IOMMU_GET_HW_INFO", "IOMMU_IOAS_ALLOC",
             "IOMMU_HWPT_ALLOC", "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "IOMMU_IOAS_IOVA_RANGES",
             "IOMMU_IOAS_IOVA_RANGES", "IOMMU_IOAS_MAP"]
    assert names[:len(first)] == first, names
    for n in ("VFIO_DEVICE_GET_INFO", "VFIO_DEVICE_GET_REGION_INFO", "VFIO_DEVICE_GET_IRQ_INFO",
              "VFIO_DEVICE_SET_IRQS", "VFIO_DEVICE_RESET", "VFIO_DEVICE_FEATURE"):
        assert n in names
    st = json.loads(vm.m.state("vfio"))[0]
    assert st["bound"] and st["domain"] == "x86" and st["irq"] == "intx"
    io = json.loads(vm.m.state("iommufd"))
    # QEMU's RAM (and the BIOS at 0xfffc0000) is mapped by user address
    areas = [a for c in io["contexts"] for i in c["ioas"] for a in i["areas"]]
    assert any(a["iova"] == 0 for a in areas) and any(a["iova"] == 0xFFFC0000 for a in areas)


def test_identification_liveness_factorial(vm):
    vm.setup_device()
    b = vm.bar0
    assert vm.readl(b) == 0x010000ED
    vm.writel(b + 4, 0x0F0F1234)
    assert vm.readl(b + 4) == 0xF0F0EDCB
    vm.writel(b + 8, 12)
    assert vm.readl(b + 0x20) & 1 == 0
    assert vm.readl(b + 8) == 479001600


def test_dma_ram_to_edu_to_ram_lands_in_guest_ram(vm):
    vm.setup_device()
    msg = b"DMA through gmemfs's IOAS, into QEMU's guest RAM"
    vm.write_mem(0x100000, msg)
    vm.edu_dma(0x100000, EDU_BUF, len(msg), to_ram=False)
    vm.edu_dma(EDU_BUF, 0x234000, len(msg), to_ram=True)
    assert vm.read_mem(0x234000, len(msg)) == msg
    st = json.loads(vm.m.state("vfio"))[0]
    assert st["dma"] == 2 and st["dma_faults"] == 0


def test_no_dma_without_bus_master(vm):
    vm.setup_device(command=0x2)                 # memory decoding only
    vm.write_mem(0x100000, b"must not move")
    vm.edu_dma(0x100000, EDU_BUF, 13, to_ram=False)
    vm.edu_dma(EDU_BUF, 0x200000, 13, to_ram=True)
    assert vm.read_mem(0x200000, 13) == bytes(13)
    assert json.loads(vm.m.state("vfio"))[0]["dma_blocked"] == 2


def unmapped_iova_below(m, limit: int) -> int:
    """An IOVA below ``limit`` that no area of QEMU's IOAS covers (QEMU maps
    its RAM and ROM sections)."""
    io = json.loads(m.state("iommufd"))
    areas = sorted((a["iova"], a["iova"] + a["length"]) for c in io["contexts"]
                   for i in c["ioas"] for a in i["areas"])
    cur = 0
    for s, e in areas:
        if s > cur:
            return cur
        cur = max(cur, e)
    assert cur < limit, areas
    return cur


def test_dma_to_an_unmapped_iova_is_a_fault_and_changes_no_memory(mount_factory, tmp_path):
    """With 128 MiB of guest RAM, [128 MiB, 256 MiB) is within the edu's 28-bit
    reach and mapped by nobody."""
    m = mount_factory()
    with Q.Qemu(m.path, log=tmp_path / "qemu.log", ram_mb=128) as vm:
        vm.m = m
        _unmapped_dma(vm)


def _unmapped_dma(vm):
    vm.setup_device()
    hole = unmapped_iova_below(vm.m, 1 << 28)
    before = vm.read_mem(hole, 16)
    vm.edu_dma(EDU_BUF, hole, 16, to_ram=True)
    faults = events(vm.m, "iommu_fault")
    assert [f["iova"] for f in faults] == [hole], faults
    assert vm.read_mem(hole, 16) == before
    # the device keeps working
    vm.write_mem(0x100000, b"still working")
    vm.edu_dma(0x100000, EDU_BUF, 13, to_ram=False)
    vm.edu_dma(EDU_BUF, 0x300000, 13, to_ram=True)
    assert vm.read_mem(0x300000, 13) == b"still working"


def test_intx_reaches_qemu_and_ack_lowers_it(vm):
    vm.cmd("irq_intercept_in ioapic")
    vm.setup_device()
    vm.writel(vm.bar0 + 0x60, 0x1)
    assert vm.wait_irq("raise"), vm.irqs
    vm.writel(vm.bar0 + 0x64, 0x1)
    assert vm.wait_irq("lower"), vm.irqs


def test_dma_irq_by_msi_reaches_qemu(vm):
    """The guest enables MSI (address: a RAM location, so qtest can see the
    message QEMU sends for the eventfd the device signalled)."""
    vm.setup_device()
    cap = 0x40
    vm.cfg_writel(cap + 4, 0x300000)
    vm.cfg_writel(cap + 8, 0)
    vm.cfg_writew(cap + 0xC, 0x4D53)
    vm.cfg_writew(cap + 2, 0x1)                 # MSI enable
    assert json.loads(vm.m.state("vfio"))[0]["irq"] == "msi"
    vm.write_mem(0x100000, b"x" * 8)
    vm.edu_dma(0x100000, EDU_BUF, 8, to_ram=False, irq=True)
    deadline = time.monotonic() + 10
    while vm.read_mem(0x300000, 2) != b"\x53\x4d" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert vm.read_mem(0x300000, 2) == b"\x53\x4d"
    assert vm.readl(vm.bar0 + 0x24) == 0x100


def test_teardown_at_qemu_exit_leaves_no_context(mount_factory, tmp_path):
    m = mount_factory()
    q = Q.Qemu(m.path, log=tmp_path / "qemu.log")
    q.setup_device()
    assert m.contexts() == 1
    assert q.quit() == 0
    deadline = time.monotonic() + 10
    while m.contexts() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m.contexts() == 0
    st = json.loads(m.state("vfio"))[0]
    assert not st["bound"] and st["devid"] is None


def test_killed_qemu_unbinds_too(mount_factory, tmp_path):
    m = mount_factory()
    q = Q.Qemu(m.path, log=tmp_path / "qemu.log")
    q.setup_device()
    q.kill()
    deadline = time.monotonic() + 10
    while m.contexts() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m.contexts() == 0 and not json.loads(m.state("vfio"))[0]["bound"]
    q2 = Q.Qemu(m.path, log=tmp_path / "qemu2.log")      # the device binds again
    try:
        assert q2.cfg_readl(0) == 0x11E81234
    finally:
        q2.quit()


@pytest.mark.parametrize("n", [0, 2])
def test_vfio_devices_option(mount_factory, n):
    m = mount_factory(f"vfio_devices={n}")
    if n == 0:
        assert not (m.path / "vfio").exists()
    else:
        assert sorted(p.name for p in (m.path / "vfio" / "devices").iterdir()) == ["vfio0", "vfio1"]


def test_two_devices_share_one_ioas_and_domain(mount_factory, tmp_path):
    """QEMU attaches a second vfio-pci device on the same iommufd to the
    domain it already has (its autodomains: ATTACH to the existing HWPT)."""
    import os
    m = mount_factory("vfio_devices=2")
    fd2 = os.open(m.path / "vfio" / "devices" / "vfio1", os.O_RDWR)
    try:
        q = Q.Qemu(m.path, log=tmp_path / "qemu.log", pass_fds=(fd2,),
                   extra=["-device", f"vfio-pci,fd={fd2},iommufd=i0,addr=05.0"])
    finally:
        os.close(fd2)
    try:
        assert q.cfg_readl(0) == 0x11E81234
        q.cmd(f"outl 0xcf8 {0x80000000 | 5 << 11:#x}")
        assert int(q.cmd("inl 0xcfc"), 16) == 0x11E81234
        d0, d1 = json.loads(m.state("vfio"))
        assert d0["devid"] != d1["devid"] and (d0["hwpt"], d0["ioas"]) == (d1["hwpt"], d1["ioas"])
    finally:
        assert q.quit() == 0
    assert m.contexts() == 0
