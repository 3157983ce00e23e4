"""Differential: gmemfs's edu (through vfio-pci at 00:04.0) against QEMU's own
``-device edu`` (at 00:05.0) in the same QEMU, driven by the same qtest
register script; every read must agree. (DMA is not compared: QEMU's edu
completes a DMA on a virtual-time timer, which does not run while the
machine is stopped; gmemfs's DMA has its own tests.)"""

import time

import pytest

from gmemfs import qemu as Q

OURS, THEIRS = 0xE0000000, 0xE0100000
EDU_SLOT = 5


@pytest.fixture
def both(mount_factory, tmp_path):
    v = Q.qemu_version()
    if not v or v < (10, 0):
        pytest.fail(f"QEMU >= 10 is needed (found {v or 'none'})")
    m = mount_factory()
    q = Q.Qemu(m.path, log=tmp_path / "qemu.log", extra=["-device", f"edu,addr={EDU_SLOT:02x}.0"])
    q.setup_device(OURS)
    # QEMU's edu: the same enumeration through its own config space
    q.cmd(f"outl 0xcf8 {0x80000000 | EDU_SLOT << 11 | 0x10:#x}")
    q.cmd(f"outl 0xcfc {THEIRS:#x}")
    q.cmd(f"outl 0xcf8 {0x80000000 | EDU_SLOT << 11 | 0x04:#x}")
    q.cmd("outw 0xcfc 0x6")
    try:
        yield q
    finally:
        q.quit()


def settle(q, base):
    """QEMU's factorial runs in a thread: wait for the computing bit."""
    for _ in range(1000):
        if not q.readl(base + 0x20) & 1:
            return
        time.sleep(0.001)


READS = [("l", 0x00), ("l", 0x04), ("l", 0x08), ("l", 0x20), ("l", 0x24), ("q", 0x80),
         ("q", 0x88), ("q", 0x90), ("q", 0x98), ("l", 0x80), ("l", 0x84), ("l", 0x10),
         ("q", 0x00), ("l", 0x100), ("q", 0x100)]


def snapshot(q, base):
    return [(w, off, q.readl(base + off) if w == "l" else q.readq(base + off))
            for w, off in READS]


SCRIPT = [("l", 0x04, 0x12345678), ("l", 0x08, 5), ("l", 0x08, 12), ("l", 0x08, 13),
          ("l", 0x08, 40), ("l", 0x20, 0x80), ("l", 0x08, 4), ("l", 0x64, 1), ("l", 0x60, 0x30),
          ("l", 0x64, 0x10), ("q", 0x80, 0x1122334455667788), ("l", 0x88, 0xAABBCCDD),
          ("q", 0x90, 0x40), ("l", 0x98, 0x2), ("q", 0x04, 7), ("l", 0x20, 0), ("l", 0x00, 9),
          ("l", 0x64, 0xFFFFFFFF)]


def test_registers_match_qemus_edu(both):
    q = both
    assert q.readl(OURS) == q.readl(THEIRS) == 0x010000ED
    for w, off, val in SCRIPT:
        for base in (OURS, THEIRS):
            (q.writel if w == "l" else q.writeq)(base + off, val)
            settle(q, base)
        ours, theirs = snapshot(q, OURS), snapshot(q, THEIRS)
        assert ours == theirs, f"after write{w} {off:#x} <- {val:#x}"


def test_config_header_matches_qemus_edu(both):
    """The identity and interrupt part of the header; BAR and command as the
    guest programmed them; the MSI capability at the same place."""
    q = both
    def cfg(slot, reg):
        q.cmd(f"outl 0xcf8 {0x80000000 | slot << 11 | reg:#x}")
        return int(q.cmd("inl 0xcfc"), 16)
    for reg in (0x00, 0x08, 0x2C, 0x34, 0x40):
        mask = 0xFFFF00FF if reg == 0x40 else 0xFFFFFFFF   # next-capability pointer may differ
        assert cfg(Q.SLOT, reg) & mask == cfg(EDU_SLOT, reg) & mask, hex(reg)
    assert cfg(Q.SLOT, 0x3C) >> 8 & 0xFF == cfg(EDU_SLOT, 0x3C) >> 8 & 0xFF == 1   # pin A
