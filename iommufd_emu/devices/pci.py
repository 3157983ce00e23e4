"""A conventional PCI function's configuration space (type 0 header), as a model.

256 bytes with per-byte write masks and write-1-to-clear masks, so a write of
any size at any offset does what the hardware does: read-only bits keep their
value, RW bits take the new one, RW1C bits are cleared by ones. BARs answer the
sizing protocol (write all ones, read back the size mask). Capabilities are
laid out from 0x40 on and chained from the capability pointer; the one this
package needs is MSI (64-bit, one vector, no per-vector mask: what QEMU's
``msi_init(dev, 0, 1, true, false)`` gives edu).

Knows nothing of VFIO or FUSE: `gmemfs`'s device node and in-process tests
drive it alike.
"""

from __future__ import annotations

import errno

CFG_SIZE = 256

VENDOR_ID, DEVICE_ID, COMMAND, STATUS, REVISION = 0x00, 0x02, 0x04, 0x06, 0x08
CLASS_PROG, CACHE_LINE, LATENCY, HEADER_TYPE = 0x09, 0x0C, 0x0D, 0x0E
BAR0, SUBSYS_VENDOR, SUBSYS_ID, ROM, CAP_PTR = 0x10, 0x2C, 0x2E, 0x30, 0x34
INT_LINE, INT_PIN = 0x3C, 0x3D

CMD_IO, CMD_MEMORY, CMD_MASTER = 0x1, 0x2, 0x4
CMD_PARITY, CMD_SERR, CMD_INTX_DISABLE = 0x40, 0x100, 0x400
STATUS_INTERRUPT, STATUS_CAP_LIST = 0x08, 0x10
STATUS_W1C = 0xF900          # parity, signalled/received aborts, SERR, detected parity

CAP_ID_MSI = 0x05
MSI_FLAGS_ENABLE, MSI_FLAGS_QSIZE, MSI_FLAGS_64BIT = 0x1, 0x70, 0x80
MSI_CAP_64_SIZE = 14         # id, next, flags, address lo, address hi, data

BAR_MEM32 = 0x0


class PciConfig:
    """One function's configuration space.

    ``bars``: {index: size} of 32-bit non-prefetchable memory BARs (power of
    two sizes >= 16). ``msi_vectors``: add an MSI capability (1, 2, 4, ...).
    """

    def __init__(self, vendor: int, device: int, revision: int, class_code: int,
                 subsys_vendor: int = 0, subsys_id: int = 0, bars: dict | None = None,
                 int_pin: int = 1, msi_vectors: int = 0) -> None:
        self._init = bytearray(CFG_SIZE)
        self.wmask = bytearray(CFG_SIZE)
        self.w1c = bytearray(CFG_SIZE)
        self.bars = dict(bars or {})
        c = self._init
        self._put(c, VENDOR_ID, 2, vendor)
        self._put(c, DEVICE_ID, 2, device)
        self._put(c, REVISION, 1, revision)
        self._put(c, CLASS_PROG, 3, class_code)
        self._put(c, SUBSYS_VENDOR, 2, subsys_vendor)
        self._put(c, SUBSYS_ID, 2, subsys_id)
        self._put(c, INT_PIN, 1, int_pin)
        self._put(self.wmask, COMMAND, 2, CMD_IO | CMD_MEMORY | CMD_MASTER | CMD_PARITY
                  | CMD_SERR | CMD_INTX_DISABLE)
        self._put(self.w1c, STATUS, 2, STATUS_W1C)
        self.wmask[CACHE_LINE] = self.wmask[LATENCY] = self.wmask[INT_LINE] = 0xFF
        for i, size in self.bars.items():
            if size & (size - 1) or size < 16:
                raise ValueError(f"BAR{i}: size {size:#x} is not a power of two >= 16")
            self._put(self.wmask, BAR0 + 4 * i, 4, ~(size - 1) & 0xFFFFFFF0)
            self._put(c, BAR0 + 4 * i, 4, BAR_MEM32)
        self.msi = None
        if msi_vectors:
            self._add_msi(msi_vectors)
        self.data = bytearray(self._init)

    # ------------------------------------------------------------ layout
    @staticmethod
    def _put(buf, off: int, n: int, val: int) -> None:
        buf[off:off + n] = (val & ((1 << 8 * n) - 1)).to_bytes(n, "little")

    def _get(self, off: int, n: int) -> int:
        return int.from_bytes(self.data[off:off + n], "little")

    def _add_msi(self, vectors: int) -> None:
        if vectors & (vectors - 1) or not 1 <= vectors <= 32:
            raise ValueError("MSI vectors must be a power of two in [1, 32]")
        pos = 0x40
        c = self._init
        c[pos], c[pos + 1] = CAP_ID_MSI, 0
        mmc = vectors.bit_length() - 1
        self._put(c, pos + 2, 2, MSI_FLAGS_64BIT | mmc << 1)
        self._put(self.wmask, pos + 2, 2, MSI_FLAGS_ENABLE | MSI_FLAGS_QSIZE)
        self._put(self.wmask, pos + 4, 4, 0xFFFFFFFC)
        self._put(self.wmask, pos + 8, 4, 0xFFFFFFFF)
        self._put(self.wmask, pos + 12, 2, 0xFFFF)
        c[CAP_PTR] = pos
        self._put(c, STATUS, 2, STATUS_CAP_LIST)
        self.msi = pos

    # ------------------------------------------------------------ access
    def read(self, off: int, n: int) -> bytes:
        if off < 0 or n < 0 or off + n > CFG_SIZE:
            raise OSError(errno.EFAULT, f"config access [{off:#x}, +{n}) beyond {CFG_SIZE}")
        return bytes(self.data[off:off + n])

    def write(self, off: int, data: bytes) -> None:
        if off < 0 or off + len(data) > CFG_SIZE:
            raise OSError(errno.EFAULT, f"config access [{off:#x}, +{len(data)}) beyond {CFG_SIZE}")
        for i, b in enumerate(data):
            p = off + i
            wm, cm = self.wmask[p], self.w1c[p]
            v = (self.data[p] & ~wm) | (b & wm)
            self.data[p] = v & ~(b & cm) & 0xFF

    def reset(self) -> None:
        """Power-on state (a conventional reset: the VFIO layer saves and
        restores around a function reset instead)."""
        self.data[:] = self._init

    # ------------------------------------------------------------ decoded
    @property
    def command(self) -> int:
        return self._get(COMMAND, 2)

    @property
    def memory_enabled(self) -> bool:
        return bool(self.command & CMD_MEMORY)

    @property
    def bus_master(self) -> bool:
        return bool(self.command & CMD_MASTER)

    def bar_address(self, i: int) -> int:
        return self._get(BAR0 + 4 * i, 4) & 0xFFFFFFF0

    @property
    def int_pin(self) -> int:
        return self.data[INT_PIN]

    @property
    def msi_vectors(self) -> int:
        """Vectors the MSI capability offers (0: no MSI capability)."""
        if self.msi is None:
            return 0
        return 1 << ((self._get(self.msi + 2, 2) >> 1) & 0x7)

    def describe(self) -> dict:
        return {"vendor": f"{self._get(VENDOR_ID, 2):04x}", "device": f"{self._get(DEVICE_ID, 2):04x}",
                "command": f"{self.command:#06x}", "memory": self.memory_enabled,
                "bus_master": self.bus_master, "bar0": f"{self.bar_address(0):#010x}"}
