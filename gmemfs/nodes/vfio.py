"""MNT/vfio/devices/vfioN: emulated VFIO PCI devices (node kind VfioDeviceNode).

Each node is the VFIO device cdev of one emulated PCI function, QEMU's edu
device (iommufd_emu/vfio.py has the model, the kernel rules and the
register map). ``--vfio-devices N`` (mount option ``vfio_devices=N``) sets
how many, default 1; with 0 there is no MNT/vfio.

File operations: ioctl (the VFIO device ioctls: the restricted FUSE ioctl
gives the raw pointer, the model reads and writes the caller's struct),
read/write at region offsets (index << 40: config space, BAR0; direct I/O,
positioned: pread/pwrite), release (unbind at the last close, which is
also what a dying process gets).

VFIO_DEVICE_BIND_IOMMUFD names the caller's iommufd fd. The server copies
it with pidfd_getfd, checks that it is an MNT/iommu file of this mount, and
learns *which* open it is by asking it: an ioctl (GMEMFS_IOCTL_SELF_FH)
that only this server's own threads get answered, issued from a worker
thread while the loop serves it (the loop never enters its own mount).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat

import trio

from gmemfs import fuse_ll as F
from gmemfs.caller import Caller, read_fdinfo
from iommufd_emu import vfio as V

from .base import Dir, Node
from .iommu import GMEMFS_IOCTL_SELF_FH, IommuNode

VFIO_DIR_INO, VFIO_DEVICES_DIR_INO = 7, 8
log = logging.getLogger("gmemfs.fs")


class VfioDeviceNode(Node):
    """MNT/vfio/devices/vfioN: one emulated PCI function behind vfio-pci."""

    def __init__(self, mount, name: str):
        super().__init__(mount, name, stat.S_IFREG | 0o666)   # a FUSE file, not a chardev
        self.device = V.VfioPciDevice(name)
        self.device.watcher = EventfdWatcher(mount)

    # ------------------------------------------------------ file ops --
    def open(self, of):
        of.private = V.VfioDeviceFile(self.device)
        of.direct_io = True                  # every pread/pwrite reaches the model

    def release(self, of):
        of.private.close()

    def read(self, req, of, size: int, off: int, direct: bool):
        if not direct:
            # a page-cache fill: someone mmap()ed the device. No region offers
            # mmap (REGION_INFO has no FLAG_MMAP) and FUSE cannot refuse the
            # mmap itself: refuse the fill, so a touch is SIGBUS
            raise OSError(errno.EIO, "VFIO regions are not mmap-able")
        F.reply_buf(req, of.private.read(off, size))

    def write(self, req, of, buf, off: int, writepage: bool):
        if writepage:
            raise OSError(errno.EIO, "VFIO regions are not mmap-able")
        data = bytes(buf)
        if self.mount.cached and V.VfioPciDevice.starts_dma(off, data):
            self.mount.spawn(self._coherent_write, req, of, off, data)
            return
        F.reply_write(req, of.private.write(off, data))

    async def _coherent_write(self, req, of, off: int, data: bytes):
        try:
            n = await self.mount.coherent(lambda: of.private.write(off, data))
            F.reply_write(req, n)
        except Exception as e:
            F._fail(req, e, "VFIO region write (DMA)")

    def ioctl(self, req, of, cmd: int, arg: int, in_data: bytes, out_size: int,
              prefetch=None, creds=None):
        m = self.mount
        caller = Caller(*creds, m.resolve_own) if creds else m.caller(req)
        try:
            if cmd == V.VFIO_DEVICE_BIND_IOMMUFD:
                breq = V.bind_begin(of.private, caller, arg)
                m.spawn(self._bind, req, of, caller, breq)
                return
            ret = V.ioctl(of.private, cmd, arg, caller)
        except OSError as e:
            m.ioctl_failed(cmd, caller.tid, e)
            raise
        if m.debug:
            m.log_ioctl(cmd, caller.tid, 0, None)
        F.reply_ioctl(req, ret)

    async def _bind(self, req, of, caller, breq):
        m = self.mount
        try:
            ctx = await self._resolve_iommufd(caller, breq.iommufd)
            V.bind_end(of.private, caller, breq, ctx)
            m.log_ioctl(V.VFIO_DEVICE_BIND_IOMMUFD, caller.tid, 0, None)
            F.reply_ioctl(req, 0)
        except Exception as e:
            if isinstance(e, OSError):
                m.ioctl_failed(V.VFIO_DEVICE_BIND_IOMMUFD, caller.tid, e)
            F._fail(req, e, "VFIO_DEVICE_BIND_IOMMUFD")

    async def _resolve_iommufd(self, caller, fd: int):
        """iommufd_ctx_from_fd on the caller's fd: EBADF if not open,
        EBADFD if not an MNT/iommu file of this mount."""
        m = self.mount
        local = caller.dup_fd(fd)
        try:
            info = read_fdinfo(local)
            own = m.resolve_own(int(info.get("mnt_id", "-1")), int(info.get("ino", "0")),
                                True, True)
            if own is None or not isinstance(own.node, IommuNode):
                raise OSError(errno.EBADFD, f"fd {fd} is not an iommufd")
            fh = await trio.to_thread.run_sync(fcntl.ioctl, local, GMEMFS_IOCTL_SELF_FH)
        finally:
            os.close(local)          # FOPEN_NOFLUSH: no round trip to this loop
        of = m.files.get(fh)
        if of is None or not isinstance(of.node, IommuNode):
            raise OSError(errno.EBADFD, f"fd {fd} is not an open iommufd")
        return of.private

class EventfdWatcher:
    """The VFIO model's watcher of the eventfds a device receives (the INTx
    unmask eventfd, ioeventfds): a trio task per eventfd calls ``fn()`` each
    time it is signalled."""

    def __init__(self, mount):
        self.mount = mount

    def watch(self, trig, fn) -> None:
        self.mount.spawn(self._watch, trig, fn)

    def unwatch(self, trig) -> None:
        trio.lowlevel.notify_closing(trig.fd)      # the waiting task ends

    async def _watch(self, trig, fn) -> None:
        try:
            while trig.fd >= 0:
                await trio.lowlevel.wait_readable(trig.fd)
                try:
                    os.read(trig.fd, 8)
                except BlockingIOError:
                    continue
                fn()
        except (trio.ClosedResourceError, OSError):
            pass
        except Exception:
            log.exception("VFIO eventfd handler failed")


def install(mount) -> None:
    n = int(mount.options.get("vfio_devices", 1))
    if n < 0:
        raise ValueError(f"vfio_devices={n}: must be >= 0")
    mount.vfio_devices = []
    if n == 0:
        return
    top = mount.add(Dir(mount, "vfio", ino=VFIO_DIR_INO), mount.root)
    devices = mount.add(Dir(mount, "devices", ino=VFIO_DEVICES_DIR_INO), top)
    for i in range(n):
        node = mount.add(VfioDeviceNode(mount, f"vfio{i}"), devices)
        mount.vfio_devices.append(node.device)
