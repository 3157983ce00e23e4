"""Drive an unmodified QEMU (>= 10) attached to a gmemfs mount's VFIO device
over the qtest protocol: for the end-to-end tests, the demo's QEMU scene and
the benchmarks. A client tool, not part of the server.

``Qemu(mnt)`` opens ``MNT/iommu`` and ``MNT/vfio/devices/vfio0`` and starts::

    qemu-system-x86_64 -machine q35 -accel tcg -S -qtest stdio -display none
      -nodefaults -m 256 -object memory-backend-memfd,id=ram0,size=256M
      -machine memory-backend=ram0 -object iommufd,id=i0,fd=N
      -device vfio-pci,fd=M,iommufd=i0,addr=04.0

(Debian's QEMU has no qtest accelerator: TCG, stopped, qtest on stdio; KVM
is out, its kvm-vfio device rejects files that are not VFIO files.) The
vCPUs never run: qtest commands read and write guest memory and I/O ports,
so the test is the guest: it programs the device's config space through the
0xcf8/0xcfc ports and touches BAR0 with MMIO reads and writes, which QEMU
turns into pread/pwrite of the VFIO device fd.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

QEMU = "qemu-system-x86_64"
SLOT = 4                      # the device's PCI slot on bus 0 (addr=04.0)
BAR0_ADDR = 0xE0000000        # where the tests place BAR0 (the q35 PCI hole)
RAM_SIZE = 256 << 20


def qemu_version() -> tuple:
    """(major, minor) of the installed qemu-system-x86_64, or () if none."""
    exe = shutil.which(QEMU)
    if exe is None:
        return ()
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else ()


class QtestError(RuntimeError):
    pass


class Qemu:
    """One QEMU process with the VFIO device of ``mnt`` (see module doc)."""

    def __init__(self, mnt, device: str = "vfio0", extra=(), log: Path | None = None,
                 timeout: float = 60.0, ram_mb: int = 256, pass_fds=()):
        self.mnt = Path(mnt)
        self.timeout = timeout
        self.irqs: list[str] = []          # async "IRQ raise N" / "IRQ lower N" lines
        self.iommufd = os.open(self.mnt / "iommu", os.O_RDWR)
        self.devfd = os.open(self.mnt / "vfio" / "devices" / device, os.O_RDWR)
        self.argv = [QEMU, "-machine", "q35", "-accel", "tcg", "-S", "-qtest", "stdio",
                     "-display", "none", "-nodefaults", "-m", str(ram_mb),
                     "-object", f"memory-backend-memfd,id=ram0,size={ram_mb}M",
                     "-machine", "memory-backend=ram0",
                     "-object", f"iommufd,id=i0,fd={self.iommufd}",
                     "-device", f"vfio-pci,fd={self.devfd},iommufd=i0,addr={SLOT:02x}.0",
                     *extra]
        self._err = open(log, "wb") if log else subprocess.PIPE
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err,
                                     pass_fds=(self.iommufd, self.devfd, *pass_fds))
        # QEMU holds its own copies now
        os.close(self.iommufd)
        os.close(self.devfd)

    # ------------------------------------------------------------ protocol
    def cmd(self, line: str) -> str:
        """Send one qtest command; return the text after ``OK``."""
        if self.proc.poll() is not None:
            raise QtestError(f"QEMU exited ({self.proc.returncode}): {self.stderr_text()}")
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            raw = self.proc.stdout.readline()
            if not raw:
                raise QtestError(f"QEMU closed qtest after {line!r}: {self.stderr_text()}")
            resp = raw.decode().strip()
            if resp.startswith("IRQ "):
                self.irqs.append(resp)
                continue
            if resp.startswith("OK"):
                return resp[2:].strip()
            raise QtestError(f"{line!r} -> {resp}")

    def stderr_text(self) -> str:
        """QEMU's error output (the end of its log file when it has one)."""
        if self._err is subprocess.PIPE:
            if self.proc.poll() is not None:
                return self.proc.stderr.read().decode(errors="replace")[-2000:]
            return ""
        self._err.flush()
        try:
            with open(self._err.name, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def readl(self, addr: int) -> int:
        return int(self.cmd(f"readl {addr:#x}"), 16)

    def readq(self, addr: int) -> int:
        return int(self.cmd(f"readq {addr:#x}"), 16)

    def writel(self, addr: int, val: int) -> None:
        self.cmd(f"writel {addr:#x} {val:#x}")

    def writeq(self, addr: int, val: int) -> None:
        self.cmd(f"writeq {addr:#x} {val:#x}")

    def read_mem(self, addr: int, n: int) -> bytes:
        return bytes.fromhex(self.cmd(f"read {addr:#x} {n:#x}")[2:])

    def write_mem(self, addr: int, data: bytes) -> None:
        self.cmd(f"write {addr:#x} {len(data):#x} 0x{data.hex()}")

    def nop(self) -> None:
        """A command that changes nothing (TCG has no clock_step): QEMU's
        main loop runs, async IRQ lines arrive."""
        self.cmd("read 0x0 0x1")

    # ------------------------------------------------- PCI config (0xcf8)
    def _cf8(self, reg: int, fn: int = 0, bus: int = 0) -> None:
        self.cmd(f"outl 0xcf8 {0x80000000 | bus << 16 | SLOT << 11 | fn << 8 | reg & 0xFC:#x}")

    def cfg_readl(self, reg: int) -> int:
        self._cf8(reg)
        return int(self.cmd("inl 0xcfc"), 16)

    def cfg_writel(self, reg: int, val: int) -> None:
        self._cf8(reg)
        self.cmd(f"outl 0xcfc {val:#x}")

    def cfg_writew(self, reg: int, val: int) -> None:
        self._cf8(reg)
        self.cmd(f"outw {0xcfc + (reg & 2):#x} {val:#x}")

    def setup_device(self, bar0: int = BAR0_ADDR, command: int = 0x6) -> None:
        """What a guest's PCI enumeration does: place BAR0, enable memory
        decoding (and bus mastering, by default)."""
        self.cfg_writel(0x10, bar0)
        self.cfg_writew(0x04, command)
        self.bar0 = bar0

    # --------------------------------------------------------------- edu
    def edu_dma(self, src: int, dst: int, count: int, to_ram: bool, irq: bool = False) -> None:
        b = self.bar0
        self.writeq(b + 0x80, src)
        self.writeq(b + 0x88, dst)
        self.writeq(b + 0x90, count)
        self.writeq(b + 0x98, 1 | (2 if to_ram else 0) | (4 if irq else 0))

    def wait_irq(self, text: str, timeout: float = 10.0) -> bool:
        """Wait for an async IRQ line containing ``text`` (qtest only prints
        them around commands: keep sending a no-op)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in i for i in self.irqs):
                return True
            self.nop()
            time.sleep(0.01)
        return any(text in i for i in self.irqs)

    # ------------------------------------------------------------ the end
    def quit(self, timeout: float = 30.0) -> int:
        """SIGTERM, as libqtest ends QEMU: a clean shutdown (the device is
        unrealized: its fds are closed)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._err is not subprocess.PIPE:
            self._err.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.quit()
