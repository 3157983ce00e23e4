"""QEMU's educational PCI device (``edu``) as a model: its BAR0 registers.

Register map and rules (QEMU docs/specs/edu.rst and hw/misc/edu.c, read for
the facts; this is our own model):

  0x00 RO   identification 0x010000ed
  0x04 RW   liveness: reads the bitwise inversion of the last value written
  0x08 RW   factorial: a write starts a computation (ignored while one runs);
            the result (mod 2^32) replaces the value; status bit 0x01 is set
            while computing
  0x20 RW   status: 0x01 computing (RO), 0x80 raise FACT_IRQ (0x1) when a
            factorial completes
  0x24 RO   interrupt status
  0x60 WO   interrupt raise: ORs the value into the interrupt status
  0x64 WO   interrupt acknowledge: clears those bits; the line drops at 0
  0x80 RW   DMA source address          (64-bit register)
  0x88 RW   DMA destination address
  0x90 RW   DMA transfer count
  0x98 RW   DMA command: 0x1 start, 0x2 direction (0: RAM -> edu, 1: edu ->
            RAM), 0x4 raise DMA_IRQ (0x100) when done. DMA registers ignore
            writes while a transfer runs.

The DMA buffer is 4096 bytes at device address 0x40000 (the non-RAM side of
a transfer must lie inside it). Bus addresses are clamped to the DMA mask,
28 bits by default. Access sizes: below 0x80 only 4-byte accesses do
anything (other reads give all ones); from 0x80 on, 4 or 8 bytes.

Where this model differs from QEMU's, on purpose:
* a factorial and a DMA complete at the register write that starts them
  (QEMU: a thread, and a 100 ms virtual-time timer). Drivers that poll the
  status / command register see the same values; none can rely on seeing
  the busy bit.
* a DMA whose buffer-side range leaves [0x40000, 0x41000) is not performed
  (QEMU logs a guest error and copies anyway, past its buffer); it completes
  like any other (run bit cleared, DMA_IRQ if asked) and is counted as a
  ``range_error``.

The device's outside world is two callables: ``dma(addr, length, write,
data) -> bytes | int`` (read: the bytes that arrived, possibly fewer;
write: bytes that went out) and ``irq(raise_: bool)`` (``True``: an
interrupt event with the status non-zero — a new MSI message or INTx
asserted; ``False``: the status reached 0 — INTx deasserted).
"""

from __future__ import annotations

from typing import Callable, Optional

ID_VALUE = 0x010000ED
FACT_IRQ = 0x00000001
DMA_IRQ = 0x00000100
DMA_START = 0x40000
DMA_SIZE = 4096
DEFAULT_DMA_MASK = (1 << 28) - 1

STATUS_COMPUTING = 0x01
STATUS_IRQFACT = 0x80
DMA_RUN, DMA_DIR_TO_RAM, DMA_CMD_IRQ = 0x1, 0x2, 0x4

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1

REG_ID, REG_LIVENESS, REG_FACT, REG_STATUS, REG_IRQ_STATUS = 0x00, 0x04, 0x08, 0x20, 0x24
REG_IRQ_RAISE, REG_IRQ_ACK = 0x60, 0x64
REG_DMA_SRC, REG_DMA_DST, REG_DMA_CNT, REG_DMA_CMD = 0x80, 0x88, 0x90, 0x98


def factorial_u32(n: int) -> int:
    """n! mod 2^32 as edu's 32-bit loop computes it (0 from 34 on: 34! has
    32 factors of two)."""
    if n >= 34:
        return 0
    r = 1
    for k in range(2, n + 1):
        r = (r * k) & M32
    return r


class Edu:
    def __init__(self, dma: Callable, irq: Callable, dma_mask: int = DEFAULT_DMA_MASK) -> None:
        self._dma = dma
        self._irq = irq
        self.dma_mask = dma_mask
        self.counters = {"dma_done": 0, "dma_range_errors": 0, "factorials": 0,
                         "ignored_accesses": 0}
        self.reset()

    def reset(self) -> None:
        """Function-level reset: every register and the buffer to zero."""
        self.addr4 = 0
        self.fact = 0
        self.status = 0
        self.irq_status = 0
        self.dma_src = self.dma_dst = self.dma_cnt = self.dma_cmd = 0
        self.buf = bytearray(DMA_SIZE)

    # -------------------------------------------------------------- rules
    def _valid(self, addr: int, size: int) -> bool:
        ok = size == 4 if addr < 0x80 else size in (4, 8)
        if not ok:
            self.counters["ignored_accesses"] += 1
        return ok

    def read(self, addr: int, size: int) -> int:
        """One MMIO read of ``size`` bytes at BAR offset ``addr``."""
        mask = (1 << 8 * size) - 1
        if not self._valid(addr, size):
            return mask
        val = {REG_ID: ID_VALUE, REG_LIVENESS: self.addr4, REG_FACT: self.fact,
               REG_STATUS: self.status, REG_IRQ_STATUS: self.irq_status,
               REG_DMA_SRC: self.dma_src, REG_DMA_DST: self.dma_dst,
               REG_DMA_CNT: self.dma_cnt, REG_DMA_CMD: self.dma_cmd}.get(addr, M64)
        return val & mask

    def write(self, addr: int, size: int, val: int) -> None:
        """One MMIO write of ``size`` bytes at BAR offset ``addr``."""
        if not self._valid(addr, size):
            return
        val &= (1 << 8 * size) - 1
        if addr == REG_LIVENESS:
            self.addr4 = ~val & M32
        elif addr == REG_FACT:
            if not self.status & STATUS_COMPUTING:
                self._factorial(val & M32)
        elif addr == REG_STATUS:
            if val & STATUS_IRQFACT:
                self.status |= STATUS_IRQFACT
            else:
                self.status &= ~STATUS_IRQFACT
        elif addr == REG_IRQ_RAISE:
            self.raise_irq(val & M32)
        elif addr == REG_IRQ_ACK:
            self.lower_irq(val & M32)
        elif addr in (REG_DMA_SRC, REG_DMA_DST, REG_DMA_CNT):
            if not self.dma_cmd & DMA_RUN:
                setattr(self, {REG_DMA_SRC: "dma_src", REG_DMA_DST: "dma_dst",
                               REG_DMA_CNT: "dma_cnt"}[addr], val)
        elif addr == REG_DMA_CMD:
            if val & DMA_RUN and not self.dma_cmd & DMA_RUN:
                self.dma_cmd = val
                self._run_dma()

    # ------------------------------------------------------------ engines
    def _factorial(self, n: int) -> None:
        self.status |= STATUS_COMPUTING
        self.fact = factorial_u32(n)
        self.status &= ~STATUS_COMPUTING
        self.counters["factorials"] += 1
        if self.status & STATUS_IRQFACT:
            self.raise_irq(FACT_IRQ)

    def _buffer_range(self, dev_addr: int, n: int) -> Optional[int]:
        end = dev_addr + n
        if n == 0 or dev_addr < DMA_START or end > DMA_START + DMA_SIZE:
            return None
        return dev_addr - DMA_START

    def _run_dma(self) -> None:
        cmd, n = self.dma_cmd, self.dma_cnt
        to_ram = bool(cmd & DMA_DIR_TO_RAM)
        off = self._buffer_range(self.dma_src if to_ram else self.dma_dst, n)
        if off is None:
            self.counters["dma_range_errors"] += 1
        elif to_ram:
            self._dma(self.dma_dst & self.dma_mask, n, True, bytes(self.buf[off:off + n]))
        else:
            got = self._dma(self.dma_src & self.dma_mask, n, False, None)
            self.buf[off:off + len(got)] = got
        self.counters["dma_done"] += 1
        self.dma_cmd &= ~DMA_RUN
        if self.dma_cmd & DMA_CMD_IRQ:
            self.raise_irq(DMA_IRQ)

    # --------------------------------------------------------- interrupts
    def raise_irq(self, bits: int) -> None:
        self.irq_status |= bits
        if self.irq_status:
            self._irq(True)

    def lower_irq(self, bits: int) -> None:
        self.irq_status &= ~bits
        if not self.irq_status:
            self._irq(False)

    def describe(self) -> dict:
        return {"liveness": f"{self.addr4:#010x}", "factorial": self.fact,
                "status": f"{self.status:#x}", "irq_status": f"{self.irq_status:#x}",
                "dma": {"src": f"{self.dma_src:#x}", "dst": f"{self.dma_dst:#x}",
                        "cnt": self.dma_cnt, "cmd": f"{self.dma_cmd:#x}"},
                "dma_mask": f"{self.dma_mask:#x}", **self.counters}
