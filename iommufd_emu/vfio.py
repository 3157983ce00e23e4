"""VFIO device cdev model (``/dev/vfio/devices/vfioN``): a vfio-pci bound PCI
function whose hardware is QEMU's edu device (devices/edu.py) with a real
config space (devices/pci.py).

Knows nothing of FUSE. Objects:

* `VfioPciDevice` — the function and what vfio-pci keeps for it: config
  space, edu registers, interrupt state (INTx with automask, MSI), region
  I/O with the kernel's access rules, DMA through the iommufd domain it is
  attached to. One per device node; it outlives opens (it is hardware).
* `VfioDeviceFile` — one open() of the node (``struct vfio_device_file``):
  bound to an iommufd context by ``VFIO_DEVICE_BIND_IOMMUFD``, which
  creates a `VfioIdev` (an iommufd device object, ``out_devid``) in that
  context; closed = unbound (interrupts off, device reset and restored).
* Eventfds the device *receives* (the INTx unmask eventfd, ioeventfds) are
  watched by whoever drives the model: ``device.watcher`` has
  ``watch(trigger, fn)`` (call ``fn()`` each time it is signalled) and
  ``unwatch(trigger)`` (before the model closes it).
* `ioctl(file, cmd, arg, caller, resolve_iommufd)` — the device ioctls with
  the kernel's argsz rules and errno (drivers/vfio/device_cdev.c,
  vfio_main.c, pci/vfio_pci_core.c, pci/vfio_pci_intrs.c; see
  docs/ARCHITECTURE.md). ``resolve_iommufd(caller, fd) -> Context`` turns
  the caller's iommufd fd into *its* iommufd context (EBADF: not open,
  EBADFD: not an iommufd). The FUSE adapter resolves asynchronously and
  uses `bind_begin` / `bind_end` instead.

``caller`` is the duck type of docs/ARCHITECTURE.md plus
``get_eventfd(fd) -> host fd`` (EBADF: not open; EINVAL: not an eventfd), an
fd the model owns and closes.

A device DMA goes through `iommufd_emu.dma.device_dma` on the attached
domain: IOAS areas, IOPTEs, the invalidation policy and the platform model.
A DMA the IOMMU refuses without another event explaining it (unmapped IOVA,
no domain, permission) is an ``iommu_fault`` event; nothing moves, the
device keeps working. With the command register's bus-master bit clear the
device issues no DMA at all (counted as ``dma_blocked``).
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Callable, Optional

from . import context as C
from . import dma as D
from .context import err
from .devices.edu import Edu, REG_DMA_CMD, DMA_RUN
from .devices.pci import PciConfig
from .domains import X86_IOMMU
from .hwpt import Device, MOCK_FLAGS_DEVICE_NO_DIRTY

# <linux/vfio.h>
VFIO_DEVICE_GET_INFO = 0x3B6B
VFIO_DEVICE_GET_REGION_INFO = 0x3B6C
VFIO_DEVICE_GET_IRQ_INFO = 0x3B6D
VFIO_DEVICE_SET_IRQS = 0x3B6E
VFIO_DEVICE_RESET = 0x3B6F
VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = 0x3B70
VFIO_DEVICE_PCI_HOT_RESET = 0x3B71
VFIO_DEVICE_IOEVENTFD = 0x3B74
VFIO_DEVICE_FEATURE = 0x3B75
VFIO_DEVICE_BIND_IOMMUFD = 0x3B76
VFIO_DEVICE_ATTACH_IOMMUFD_PT = 0x3B77
VFIO_DEVICE_DETACH_IOMMUFD_PT = 0x3B78

DEVICE_FLAGS_RESET, DEVICE_FLAGS_PCI = 0x1, 0x2
REGION_READ, REGION_WRITE = 0x1, 0x2
IRQ_INFO_EVENTFD, IRQ_INFO_MASKABLE, IRQ_INFO_AUTOMASKED, IRQ_INFO_NORESIZE = 1, 2, 4, 8
SET_DATA_NONE, SET_DATA_BOOL, SET_DATA_EVENTFD = 0x1, 0x2, 0x4
SET_ACTION_MASK, SET_ACTION_UNMASK, SET_ACTION_TRIGGER = 0x8, 0x10, 0x20
SET_DATA_TYPE_MASK, SET_ACTION_TYPE_MASK = 0x7, 0x38
BIND_FLAG_TOKEN = 0x1
ATTACH_PASID = DETACH_PASID = 0x1
FEATURE_MASK, FEATURE_GET, FEATURE_SET, FEATURE_PROBE = 0xFFFF, 0x10000, 0x20000, 0x40000
FEATURE_PCI_VF_TOKEN, FEATURE_MIGRATION, FEATURE_MIG_DEVICE_STATE = 0, 1, 2
FEATURE_LOW_POWER_ENTRY, FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, FEATURE_LOW_POWER_EXIT = 3, 4, 5
FEATURE_DMA_LOGGING = (6, 7, 8)
FEATURE_MIG_DATA_SIZE = 9

BAR0, ROM, CONFIG, VGA, NUM_REGIONS = 0, 6, 7, 8, 9
INTX, MSI, MSIX, ERR, REQ, NUM_IRQS = 0, 1, 2, 3, 4, 5
OFFSET_SHIFT = 40
OFFSET_MASK = (1 << OFFSET_SHIFT) - 1
U32_MAX = 0xFFFFFFFF
IOEVENTFD_SIZE_MASK = 0xF
IOEVENTFD_MAX = 1000           # VFIO_PCI_IOEVENTFD_MAX

FAULT_NAMES = {v: k[len("FAULT_"):].lower() for k, v in vars(D).items()
               if k.startswith("FAULT_") and isinstance(v, int)}


def region_offset(index: int) -> int:
    """VFIO_PCI_INDEX_TO_OFFSET."""
    return index << OFFSET_SHIFT


class VfioIdev(Device):
    """The iommufd device object a bound VFIO device owns (``out_devid``),
    behind an x86 IOMMU (domains.X86_IOMMU: whole IOVA space, the MSI window
    reserved, IOMMU_HW_INFO_TYPE_NONE)."""

    def __init__(self, vdev: "VfioPciDevice") -> None:
        super().__init__(MOCK_FLAGS_DEVICE_NO_DIRTY, iommu=X86_IOMMU)   # no dirty, no PASID
        self.vdev = vdev


class Trigger:
    """An eventfd the device signals (a host fd the model owns)."""

    __slots__ = ("fd", "count")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.count = 0

    def signal(self) -> None:
        self.count += 1
        try:
            os.write(self.fd, (1).to_bytes(8, "little"))
        except BlockingIOError:      # counter saturated: the reader is far behind
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class VfioPciDevice:
    """One emulated PCI function behind vfio-pci (the edu device)."""

    CFG_SIZE = 256

    def __init__(self, name: str = "vfio0") -> None:
        self.name = name
        self.config = PciConfig(0x1234, 0x11E8, 0x10, 0x00FF00, subsys_vendor=0x1AF4,
                                subsys_id=0x1100, bars={0: 1 << 20}, int_pin=1, msi_vectors=1)
        self.edu = Edu(self._dma, self._irq)
        self.file: Optional["VfioDeviceFile"] = None      # the bound file
        self.irq_type: Optional[int] = None              # None, INTX or MSI
        self.intx_trigger: Optional[Trigger] = None
        self.intx_masked = False
        self.unmask_fd: Optional[Trigger] = None        # irqfd-style unmask eventfd
        self.ioeventfds: dict = {}                       # (bar, pos, data, count) -> Trigger
        self.watcher = None                              # see the module doc
        self.msi_triggers: list = []
        self.req_trigger: Optional[Trigger] = None
        self.low_power = False
        self.counters = {"dma": 0, "dma_faults": 0, "dma_blocked": 0, "interrupts": 0,
                         "resets": 0}

    # ------------------------------------------------------------ DMA
    def _dma(self, addr: int, n: int, write: bool, data: Optional[bytes]):
        """The edu engine's bus access (see devices/edu.py)."""
        if not self.config.bus_master:
            self.counters["dma_blocked"] += 1
            return 0 if write else b""
        self.counters["dma"] += 1
        f = self.file
        idev = f.idev if f is not None else None
        if idev is None or idev.hwpt is None or idev.hwpt.dead:
            self.counters["dma_faults"] += 1
            if f is not None and f.ctx is not None:
                f.ctx.events.emit("iommu_fault", device=getattr(idev, "id", None), iova=addr,
                                  detail=f"{self.name}: DMA with no IOMMU domain attached "
                                  "(blocked)")
            return 0 if write else b""
        ctx = f.ctx
        res = D.device_dma(ctx, idev, addr, n, write, data=data)
        if res.faulted:
            self.counters["dma_faults"] += 1
            if res.events == 0:
                paging = getattr(idev.hwpt, "parent", idev.hwpt)
                ctx.events.emit("iommu_fault", ioas=paging.ioas.id, device=idev.id,
                                iova=res.fault_iova,
                                detail=f"{self.name}: DMA {'write' if write else 'read'} "
                                f"fault ({FAULT_NAMES.get(res.fault_reason, res.fault_reason)}) "
                                f"after {res.transferred} of {n} bytes")
        return res.transferred if write else (res.data or b"")

    # ----------------------------------------------------- interrupts
    def _intx_level(self) -> bool:
        return self.edu.irq_status != 0 and self.irq_type != MSI

    def _irq(self, raised: bool) -> None:
        """edu's interrupt output: routed like the hardware routes it once
        vfio-pci set it up (MSI enabled by the host, else INTx)."""
        if self.irq_type == MSI:
            if raised and self.msi_triggers and self.msi_triggers[0] is not None:
                self.counters["interrupts"] += 1
                self.msi_triggers[0].signal()
        elif self.irq_type == INTX:
            self._intx_update()

    def _intx_update(self) -> None:
        """vfio_intx_handler: an asserted, unmasked line masks itself and
        signals the trigger once (level-triggered, automasked)."""
        if self.irq_type == INTX and self._intx_level() and not self.intx_masked:
            self.intx_masked = True
            self._send_intx()

    def _send_intx(self) -> None:
        if self.intx_trigger is not None:
            self.counters["interrupts"] += 1
            self.intx_trigger.signal()

    def intx_unmask(self) -> None:
        """vfio_pci_intx_unmask: a line still asserted stays masked and is
        signalled again; otherwise it is unmasked."""
        if self.irq_type == INTX and self.intx_masked:
            if self._intx_level():
                self._send_intx()
            else:
                self.intx_masked = False

    def _watch(self, trig: Trigger, fn) -> None:
        if self.watcher is not None:
            self.watcher.watch(trig, fn)

    def _unwatch(self, trig: Trigger) -> None:
        if self.watcher is not None:
            self.watcher.unwatch(trig)
        trig.close()

    def _set_unmask_fd(self, trig: Optional[Trigger]) -> None:
        """The irqfd-style unmask eventfd: signalled -> `intx_unmask`."""
        old, self.unmask_fd = self.unmask_fd, trig
        if old is not None:
            self._unwatch(old)
        if trig is not None:
            self._watch(trig, self.intx_unmask)

    def irqs_off(self) -> None:
        for t in [self.intx_trigger, *self.msi_triggers]:
            if t is not None:
                t.close()
        self.intx_trigger = None
        self.msi_triggers = []
        self._set_unmask_fd(None)
        self.irq_type = None
        self.intx_masked = False

    def irq_count(self, index: int) -> int:
        if index == INTX:
            return 1 if self.config.int_pin else 0
        if index == MSI:
            return self.config.msi_vectors
        if index == REQ:
            return 1
        return 0           # MSI-X: no capability; ERR: conventional PCI

    # ------------------------------------------------------------ reset
    def function_reset(self) -> None:
        """pci_try_reset_function: the function's registers reset; vfio-pci
        saves and restores the config space around it."""
        self.counters["resets"] += 1
        self.edu.reset()

    def unbound(self) -> None:
        """vfio_pci_core_disable at the last close: interrupts off, bus
        master off, reset, original config state."""
        self.irqs_off()
        if self.req_trigger is not None:
            self.req_trigger.close()
            self.req_trigger = None
        for t in self.ioeventfds.values():
            self._unwatch(t)
        self.ioeventfds.clear()
        self.edu.reset()
        self.config.reset()
        self.low_power = False

    # ------------------------------------------------------- region I/O
    def rw(self, offset: int, size: int = 0, data: Optional[bytes] = None):
        """vfio_pci_rw: read ``size`` bytes (returns bytes) or write ``data``
        (returns the count) at a region offset (index << 40 | pos)."""
        write = data is not None
        count = len(data) if write else size
        index, pos = offset >> OFFSET_SHIFT, offset & OFFSET_MASK
        if offset < 0 or index >= NUM_REGIONS:
            raise err(errno.EINVAL, f"region index {index} does not exist")
        if index == CONFIG:
            if pos + count > self.CFG_SIZE:
                raise err(errno.EFAULT, f"config access [{pos:#x}, +{count}) beyond "
                          f"{self.CFG_SIZE}")
            if write:
                self.config.write(pos, data)
                return count
            return self.config.read(pos, count)
        if index == ROM and write:
            raise err(errno.EINVAL, "the ROM region is read-only")
        if index == VGA:
            raise err(errno.EINVAL, "no VGA region")
        size_ = self.config.bars.get(index, 0) if index != ROM else 0
        if not size_:
            raise err(errno.EINVAL, f"region {index} has no resource")
        if pos >= size_:
            raise err(errno.EINVAL, f"offset {pos:#x} beyond BAR{index} ({size_:#x})")
        count = min(count, size_ - pos)
        return self._bar_io(pos, count, data)

    def _bar_io(self, pos: int, count: int, data: Optional[bytes]):
        """vfio_pci_core_do_io_rw: aligned 8/4/2/1-byte accesses; each one
        needs memory decoding on (else EIO)."""
        out = bytearray()
        done = 0
        while done < count:
            if not self.config.memory_enabled or self.low_power:
                if done:
                    break
                raise err(errno.EIO, "memory decoding is disabled (command register)")
            off = pos + done
            left = count - done
            n = next(k for k in (8, 4, 2, 1) if left >= k and off % k == 0)
            if data is not None:
                val = int.from_bytes(data[done:done + n], "little")
                self.edu.write(off, n, val)
            else:
                out += self.edu.read(off, n).to_bytes(n, "little")
            done += n
        return done if data is not None else bytes(out)

    @staticmethod
    def starts_dma(offset: int, data: bytes) -> bool:
        """Whether a region write would start an edu DMA (the FUSE adapter
        makes guest_memfd page caches coherent first)."""
        pos = offset - region_offset(BAR0)
        return 0 <= pos <= REG_DMA_CMD < pos + len(data) and \
            bool(data[REG_DMA_CMD - pos] & DMA_RUN)

    def describe(self) -> dict:
        f = self.file
        idev = f.idev if f is not None else None
        hwpt = idev.hwpt if idev is not None else None
        paging = getattr(hwpt, "parent", hwpt)
        return {
            "name": self.name, "bound": f is not None,
            "devid": idev.id if idev is not None else None,
            "hwpt": hwpt.id if hwpt is not None else None,
            "ioas": paging.ioas.id if paging is not None else None,
            "domain": paging.domain_kind if paging is not None else None,
            "irq": {None: "none", INTX: "intx", MSI: "msi"}[self.irq_type],
            "intx_masked": self.intx_masked,
            "triggers": {"intx": self.intx_trigger.count if self.intx_trigger else None,
                         "msi": [t.count if t else None for t in self.msi_triggers]},
            "pci": self.config.describe(), "edu": self.edu.describe(), **self.counters,
        }


class VfioDeviceFile:
    """One open() of a VFIO device node."""

    def __init__(self, device: VfioPciDevice) -> None:
        self.device = device
        self.access_granted = False
        self.ctx = None
        self.idev: Optional[VfioIdev] = None
        self.closed = False

    def _check_access(self) -> None:
        if not self.access_granted:
            raise err(errno.EINVAL, "the device is not bound to an iommufd "
                      "(VFIO_DEVICE_BIND_IOMMUFD first)")

    def read(self, offset: int, size: int) -> bytes:
        self._check_access()
        return self.device.rw(offset, size)

    def write(self, offset: int, data: bytes) -> int:
        self._check_access()
        return self.device.rw(offset, data=data)

    def close(self) -> None:
        """The last close: detach, unbind (vfio_df_unbind_iommufd)."""
        if self.closed:
            return
        self.closed = True
        if not self.access_granted:
            return
        self.access_granted = False
        dev = self.device
        dev.unbound()
        dev.file = None
        idev, self.idev = self.idev, None
        ctx = self.ctx
        if idev is not None and not idev.dead and ctx is not None and not ctx.closed:
            idev.detach(ctx)
            idev.put()
            ctx.remove(idev)
        if ctx is not None:
            ctx.unhold()


# ===========================================================================
# ioctls
# ===========================================================================

def _u32s(caller, arg: int, n: int) -> list:
    """copy_from_user of n u32 (EFAULT)."""
    return list(struct.unpack(f"<{n}I", caller.read(arg, 4 * n)))


class BindRequest:
    __slots__ = ("arg", "iommufd", "token")

    def __init__(self, arg, iommufd, token):
        self.arg, self.iommufd, self.token = arg, iommufd, token


def bind_begin(f: VfioDeviceFile, caller, arg: int) -> BindRequest:
    """VFIO_DEVICE_BIND_IOMMUFD up to the iommufd lookup (device_cdev.c)."""
    argsz, flags, iommufd, _ = struct.unpack("<IIiI", caller.read(arg, 16))
    if argsz < 16 or iommufd < 0:
        raise err(errno.EINVAL, "BIND: argsz < 16 or iommufd < 0")
    if flags & ~BIND_FLAG_TOKEN:
        raise err(errno.EINVAL, "BIND: unknown flags")
    token = None
    if flags & BIND_FLAG_TOKEN:
        if argsz < 24:
            raise err(errno.EINVAL, "BIND: a token needs argsz >= 24")
        ptr = int.from_bytes(caller.read(arg + 16, 8), "little")
        token = caller.read(ptr, 16)
    if f.access_granted:
        raise err(errno.EINVAL, "BIND: this file is already bound")
    return BindRequest(arg, iommufd, token)


def bind_end(f: VfioDeviceFile, caller, req: BindRequest, ctx) -> int:
    """VFIO_DEVICE_BIND_IOMMUFD once the iommufd resolved to ``ctx``."""
    dev = f.device
    if f.access_granted:
        raise err(errno.EINVAL, "BIND: this file is already bound")
    if dev.file is not None:
        raise err(errno.EINVAL, "BIND: the device is opened through another file")
    if req.token is not None:
        raise err(errno.EINVAL, "BIND: a VF token was given but the device is neither "
                  "a PF nor a VF")
    idev = VfioIdev(dev)
    ctx.add(idev)
    try:
        caller.write(req.arg + 12, idev.id.to_bytes(4, "little"))
    except OSError:
        idev.put()
        ctx.remove(idev)
        raise
    f.ctx, f.idev = ctx, idev
    ctx.hold()
    dev.file = f
    f.access_granted = True
    return 0


def h_attach(f: VfioDeviceFile, caller, arg: int) -> int:
    argsz, flags, pt_id = _u32s(caller, arg, 3)
    if argsz < 12:
        raise err(errno.EINVAL, "ATTACH: argsz < 12")
    if flags & ~ATTACH_PASID:
        raise err(errno.EINVAL, "ATTACH: unknown flags")
    if flags & ATTACH_PASID:
        raise err(errno.EOPNOTSUPP, "ATTACH: the device has no PASID support")
    ctx = f.ctx
    obj = ctx.find(pt_id)
    if obj is None:
        raise err(errno.ENOENT, f"ATTACH: no object {pt_id}")
    if obj.kind not in (C.IOAS, C.HWPT_PAGING, C.HWPT_NESTED):
        raise err(errno.EINVAL, f"ATTACH: object {pt_id} is a {obj.kind}")
    old = f.idev.hwpt
    hwpt = f.idev.attach(ctx, pt_id)
    try:
        caller.write(arg + 8, hwpt.id.to_bytes(4, "little"))
    except OSError:
        if old is None:
            f.idev.detach(ctx)
        raise
    return 0


def h_detach(f: VfioDeviceFile, caller, arg: int) -> int:
    argsz, flags = _u32s(caller, arg, 2)
    if argsz < 8:
        raise err(errno.EINVAL, "DETACH: argsz < 8")
    if flags & ~DETACH_PASID:
        raise err(errno.EINVAL, "DETACH: unknown flags")
    if flags & DETACH_PASID:
        raise err(errno.EOPNOTSUPP, "DETACH: the device has no PASID support")
    f.idev.detach(f.ctx)
    return 0


def h_get_info(f: VfioDeviceFile, caller, arg: int) -> int:
    argsz = _u32s(caller, arg, 4)[0]
    if argsz < 16:
        raise err(errno.EINVAL, "GET_INFO: argsz < 16")
    caller.write(arg, struct.pack("<4I", argsz, DEVICE_FLAGS_PCI | DEVICE_FLAGS_RESET,
                                  NUM_REGIONS, NUM_IRQS))
    return 0


def h_region_info(f: VfioDeviceFile, caller, arg: int) -> int:
    raw = caller.read(arg, 32)
    argsz, _, index, cap_offset = struct.unpack("<4I", raw[:16])
    if argsz < 32:
        raise err(errno.EINVAL, "REGION_INFO: argsz < 32")
    dev = f.device
    if index == CONFIG:
        flags, size = REGION_READ | REGION_WRITE, dev.CFG_SIZE
    elif index <= 5 or index == ROM:
        size = dev.config.bars.get(index, 0) if index != ROM else 0
        flags = REGION_READ | REGION_WRITE if size else 0     # no mmap: offered by pread/pwrite
    else:
        raise err(errno.EINVAL, f"REGION_INFO: no region {index}")
    caller.write(arg, struct.pack("<4IQQ", argsz, flags, index, cap_offset, size,
                                  region_offset(index)))
    return 0


def h_irq_info(f: VfioDeviceFile, caller, arg: int) -> int:
    argsz, _, index, _ = _u32s(caller, arg, 4)
    if argsz < 16 or index >= NUM_IRQS:
        raise err(errno.EINVAL, "IRQ_INFO: argsz < 16 or index >= 5")
    if index == ERR:
        raise err(errno.EINVAL, "IRQ_INFO: no error interrupt on a conventional PCI device")
    flags = IRQ_INFO_EVENTFD | (IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED if index == INTX
                                else IRQ_INFO_NORESIZE)
    caller.write(arg, struct.pack("<4I", argsz, flags, index, f.device.irq_count(index)))
    return 0


def _set_irqs_validate(argsz, flags, index, start, count, max_irqs) -> int:
    """vfio_set_irqs_validate_and_prepare -> data size."""
    if argsz < 20 or index >= NUM_IRQS or count >= U32_MAX - start or \
            flags & ~(SET_DATA_TYPE_MASK | SET_ACTION_TYPE_MASK):
        raise err(errno.EINVAL, "SET_IRQS: argsz, index, count or flags invalid")
    if start >= max_irqs or start + count > max_irqs:
        raise err(errno.EINVAL, f"SET_IRQS: [{start}, +{count}) beyond {max_irqs} vectors")
    size = {SET_DATA_NONE: 0, SET_DATA_BOOL: 1, SET_DATA_EVENTFD: 4}.get(flags & SET_DATA_TYPE_MASK)
    if size is None:
        raise err(errno.EINVAL, "SET_IRQS: not exactly one data type")
    if size and argsz - 20 < count * size:
        raise err(errno.EINVAL, "SET_IRQS: argsz too small for the data")
    return count * size


def _trigger(caller, fd: int) -> Optional[Trigger]:
    return Trigger(caller.get_eventfd(fd)) if fd >= 0 else None


def h_set_irqs(f: VfioDeviceFile, caller, arg: int) -> int:
    argsz, flags, index, start, count = _u32s(caller, arg, 5)
    dev = f.device
    n = _set_irqs_validate(argsz, flags, index, start, count, dev.irq_count(index))
    data = caller.read(arg + 20, n) if n else b""
    action = flags & SET_ACTION_TYPE_MASK
    dtype = flags & SET_DATA_TYPE_MASK
    if index == INTX and action in (SET_ACTION_MASK, SET_ACTION_UNMASK, SET_ACTION_TRIGGER):
        return _intx(dev, caller, action, dtype, start, count, data)
    if index == MSI and action == SET_ACTION_TRIGGER:
        return _msi(dev, caller, dtype, start, count, data)
    if index == REQ and action == SET_ACTION_TRIGGER:
        if dtype == SET_DATA_EVENTFD:
            fd = struct.unpack("<i", data)[0]
            t = _trigger(caller, fd)
            if dev.req_trigger is not None:
                dev.req_trigger.close()
            dev.req_trigger = t
        elif count and dev.req_trigger is not None and (dtype == SET_DATA_NONE or data[0]):
            dev.req_trigger.signal()
        return 0
    raise err(errno.ENOTTY, f"SET_IRQS: action {action:#x} not supported on index {index}")


def _intx(dev: VfioPciDevice, caller, action, dtype, start, count, data) -> int:
    is_intx = dev.irq_type == INTX
    if action == SET_ACTION_TRIGGER:
        if is_intx and not count and dtype == SET_DATA_NONE:
            dev.irqs_off()                        # vfio_intx_disable
            return 0
        if not (is_intx or dev.irq_type is None) or start != 0 or count != 1:
            raise err(errno.EINVAL, "SET_IRQS INTx trigger: another interrupt mode, or "
                      "not [0, 1)")
        if dtype == SET_DATA_EVENTFD:
            t = _trigger(caller, struct.unpack("<i", data)[0])
            if dev.intx_trigger is not None:
                dev.intx_trigger.close()
            dev.intx_trigger = t
            if not is_intx:                       # vfio_intx_enable
                dev.irq_type = INTX
                dev.intx_masked = False
                dev._intx_update()
            return 0
        if not is_intx:
            raise err(errno.EINVAL, "SET_IRQS INTx: INTx is not enabled")
        if dtype == SET_DATA_NONE or data[0]:
            dev._send_intx()                      # loopback test
        return 0
    if not is_intx or start != 0 or count != 1:
        raise err(errno.EINVAL, "SET_IRQS INTx mask/unmask: INTx is not enabled, or not [0, 1)")
    if action == SET_ACTION_MASK:
        if dtype == SET_DATA_EVENTFD:
            raise err(errno.ENOTTY, "SET_IRQS: masking by eventfd is not implemented (vfio-pci)")
        if dtype == SET_DATA_NONE or data[0]:
            dev.intx_masked = True
        return 0
    if dtype == SET_DATA_EVENTFD:
        dev._set_unmask_fd(_trigger(caller, struct.unpack("<i", data)[0]))
    elif dtype == SET_DATA_NONE or data[0]:
        dev.intx_unmask()
    return 0


def _msi(dev: VfioPciDevice, caller, dtype, start, count, data) -> int:
    is_msi = dev.irq_type == MSI
    if is_msi and not count and dtype == SET_DATA_NONE:
        dev.irqs_off()                            # vfio_msi_disable
        return 0
    if not (is_msi or dev.irq_type is None):
        raise err(errno.EINVAL, "SET_IRQS MSI: INTx is enabled")
    if dtype == SET_DATA_EVENTFD:
        fds = struct.unpack(f"<{count}i", data)
        if not is_msi:                            # vfio_msi_enable(start + count)
            dev.msi_triggers = [None] * (start + count)
        elif start + count > len(dev.msi_triggers):
            raise err(errno.EINVAL, "SET_IRQS MSI: beyond the enabled vectors")
        new = []
        try:
            for fd in fds:
                new.append(_trigger(caller, fd))
        except OSError:
            for t in new:
                if t is not None:
                    t.close()
            if not is_msi:
                dev.msi_triggers = []
            raise
        for i, t in enumerate(new):
            old = dev.msi_triggers[start + i]
            if old is not None:
                old.close()
            dev.msi_triggers[start + i] = t
        dev.irq_type = MSI
        return 0
    if not is_msi:
        raise err(errno.EINVAL, "SET_IRQS MSI: MSI is not enabled")
    for i in range(start, start + count):
        t = dev.msi_triggers[i] if i < len(dev.msi_triggers) else None
        if t is not None and (dtype == SET_DATA_NONE or data[i - start]):
            t.signal()
    return 0


def h_reset(f: VfioDeviceFile, caller, arg: int) -> int:
    f.device.function_reset()
    return 0


def h_hot_reset_info(f: VfioDeviceFile, caller, arg: int) -> int:
    argsz = _u32s(caller, arg, 3)[0]
    if argsz < 12:
        raise err(errno.EINVAL, "HOT_RESET_INFO: argsz < 12")
    raise err(errno.ENODEV, "neither a slot nor a bus reset is possible for this device")


def h_hot_reset(f: VfioDeviceFile, caller, arg: int) -> int:
    argsz, flags, count = _u32s(caller, arg, 3)
    if argsz < 12 or flags:
        raise err(errno.EINVAL, "PCI_HOT_RESET: argsz < 12 or flags")
    if count:
        raise err(errno.EINVAL, "PCI_HOT_RESET: a cdev device passes a zero-length group list")
    raise err(errno.ENODEV, "neither a slot nor a bus reset is possible for this device")


def h_ioeventfd(f: VfioDeviceFile, caller, arg: int) -> int:
    """VFIO_DEVICE_IOEVENTFD (vfio_pci_ioctl_ioeventfd, vfio_pci_ioeventfd):
    when the eventfd is signalled, ``data`` is written (1, 2, 4 or 8 bytes)
    at the BAR offset, as a CPU write would."""
    raw = caller.read(arg, 32)
    argsz, flags, offset, data, fd = struct.unpack("<IIQQi", raw[:28])
    if argsz < 32:
        raise err(errno.EINVAL, "IOEVENTFD: argsz < 32")
    if flags & ~IOEVENTFD_SIZE_MASK:
        raise err(errno.EINVAL, "IOEVENTFD: unknown flags")
    count = flags & IOEVENTFD_SIZE_MASK
    if bin(count).count("1") != 1 or fd < -1:
        raise err(errno.EINVAL, "IOEVENTFD: not exactly one size, or fd < -1")
    dev = f.device
    bar, pos = offset >> OFFSET_SHIFT, offset & OFFSET_MASK
    if bar > 5 or pos + count > dev.config.bars.get(bar, 0):
        raise err(errno.EINVAL, "IOEVENTFD: not inside a BAR")
    key = (bar, pos, data, count)
    old = dev.ioeventfds.get(key)
    if old is not None:
        if fd != -1:
            raise err(errno.EEXIST, "IOEVENTFD: this write already has an eventfd")
        del dev.ioeventfds[key]
        dev._unwatch(old)
        return 0
    if fd < 0:
        raise err(errno.ENODEV, "IOEVENTFD: no such ioeventfd to remove")
    if len(dev.ioeventfds) >= IOEVENTFD_MAX:
        raise err(errno.ENOSPC, "IOEVENTFD: too many")
    t = _trigger(caller, fd)
    dev.ioeventfds[key] = t
    payload = (data & ((1 << 8 * count) - 1)).to_bytes(count, "little")

    def fire():
        if dev.config.memory_enabled and not dev.low_power:      # test_mem: else dropped
            dev._bar_io(pos, count, payload)
    dev._watch(t, fire)
    return 0


def _check_feature(flags: int, argsz: int, supported: int, minsz: int) -> int:
    """vfio_check_feature: 0 = PROBE answered, 1 = go on."""
    if flags & (FEATURE_GET | FEATURE_SET) & ~supported:
        raise err(errno.EINVAL, "FEATURE: GET/SET not supported by this feature")
    if flags & FEATURE_PROBE:
        return 0
    if not flags & (FEATURE_GET | FEATURE_SET):
        raise err(errno.EINVAL, "FEATURE: neither GET nor SET")
    if argsz < minsz:
        raise err(errno.EINVAL, "FEATURE: argsz too small for the feature data")
    return 1


def h_feature(f: VfioDeviceFile, caller, arg: int) -> int:
    argsz, flags = _u32s(caller, arg, 2)
    if argsz < 8:
        raise err(errno.EINVAL, "FEATURE: argsz < 8")
    if flags & ~(FEATURE_MASK | FEATURE_GET | FEATURE_SET | FEATURE_PROBE):
        raise err(errno.EINVAL, "FEATURE: unknown flags")
    if not flags & FEATURE_PROBE and flags & FEATURE_SET and flags & FEATURE_GET:
        raise err(errno.EINVAL, "FEATURE: GET and SET without PROBE")
    feature = flags & FEATURE_MASK
    if feature in (FEATURE_MIGRATION, FEATURE_MIG_DEVICE_STATE, FEATURE_MIG_DATA_SIZE):
        raise err(errno.ENOTTY, "FEATURE: the device has no migration support")
    if feature in FEATURE_DMA_LOGGING:
        raise err(errno.ENOTTY, "FEATURE: the device has no DMA logging support")
    if feature in (FEATURE_LOW_POWER_ENTRY, FEATURE_LOW_POWER_EXIT):
        if _check_feature(flags, argsz - 8, FEATURE_SET, 0):
            f.device.low_power = feature == FEATURE_LOW_POWER_ENTRY
        return 0
    raise err(errno.ENOTTY, f"FEATURE {feature}: not supported by this device")


HANDLERS = {
    VFIO_DEVICE_ATTACH_IOMMUFD_PT: h_attach,
    VFIO_DEVICE_DETACH_IOMMUFD_PT: h_detach,
    VFIO_DEVICE_FEATURE: h_feature,
    VFIO_DEVICE_GET_INFO: h_get_info,
    VFIO_DEVICE_GET_REGION_INFO: h_region_info,
    VFIO_DEVICE_GET_IRQ_INFO: h_irq_info,
    VFIO_DEVICE_SET_IRQS: h_set_irqs,
    VFIO_DEVICE_RESET: h_reset,
    VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: h_hot_reset_info,
    VFIO_DEVICE_PCI_HOT_RESET: h_hot_reset,
    VFIO_DEVICE_IOEVENTFD: h_ioeventfd,
}

NAMES = {v: k for k, v in globals().items() if k.startswith("VFIO_DEVICE_") and isinstance(v, int)}


def ioctl(f: VfioDeviceFile, cmd: int, arg: int, caller, resolve_iommufd=None) -> int:
    """One ioctl on a VFIO device file (vfio_device_fops_unl_ioctl)."""
    if cmd == VFIO_DEVICE_BIND_IOMMUFD:
        req = bind_begin(f, caller, arg)
        if resolve_iommufd is None:
            raise err(errno.EBADF, "no iommufd resolver")
        return bind_end(f, caller, req, resolve_iommufd(caller, req.iommufd))
    f._check_access()
    h = HANDLERS.get(cmd)
    if h is None:
        raise err(errno.ENOTTY, f"unknown VFIO device ioctl {cmd:#x}")
    return h(f, caller, arg)
