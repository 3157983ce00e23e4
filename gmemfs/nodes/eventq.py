"""The event queue files (node kinds FaultQueueNode, VeventqNode): what the
fds of IOMMU_FAULT_QUEUE_ALLOC (iommufd.md §6.7) and IOMMU_VEVENTQ_ALLOC
(§6.10) are (the models: iommufd_emu/eventq.py).

The vEVENTQ file, like the kernel's ``[iommufd-viommu-event]``, has read
(whole ``iommufd_vevent_header`` + payload entries) and poll (POLLIN while
something is queued; no POLLOUT) and no write (EINVAL). It holds the
VEVENTQ object and the context like the fault queue file.

Like the kernel's ``[iommufd-pgfault]`` file it is opened O_RDWR,
non-seekable (pread/pwrite/lseek: ESPIPE from the VFS), and has read (whole
``iommu_hwpt_pgfault`` groups, count a multiple of 40 else ESPIPE, nothing
queued: 0 bytes, never blocks), write (``iommu_hwpt_page_response``s,
count a multiple of 8 else ESPIPE; returns what it consumed) and poll
(POLLOUT always, POLLIN while a group is queued; a poller is woken by FUSE
poll notification when one arrives). The file holds a reference on the
FAULT object and on the iommufd context; closing it drops both.

A read larger than the FUSE read size (128 KiB) reaches the server in pieces
that are not multiples of 40: each piece returns the whole groups that fit.
"""
from __future__ import annotations

import logging
import select

from gmemfs import fuse_ll as F
from iommufd_emu.eventq import Fault, Veventq

from .exec import ObjectNode, object_kind

log = logging.getLogger("gmemfs.fs")

_FUSE_MAX_READ = 128 * 1024


class PollWaiters:
    """FUSE poll handles of the open files of one node, woken together."""

    def __init__(self, mount):
        self.mount = mount
        self.handles: dict = {}          # OpenFile -> fuse_pollhandle

    def reply(self, req, of, ph, ready: bool, mask: int) -> None:
        old = self.handles.pop(of, None)
        if old is not None:
            F.lib.fuse_pollhandle_destroy(old)
        if ph != F.ffi.NULL:
            if ready:
                F.lib.fuse_pollhandle_destroy(ph)
            else:
                self.handles[of] = ph
        F.reply_poll(req, mask)

    def wake(self) -> None:
        session = self.mount.session
        if not self.handles or session is None:
            return
        handles, self.handles = self.handles, {}
        for ph in handles.values():
            try:
                session.notify_poll(ph)
            except Exception:
                log.exception("poll notification failed")

    def forget(self, of) -> None:
        ph = self.handles.pop(of, None)
        if ph is not None:
            F.lib.fuse_pollhandle_destroy(ph)


class QueueNode(ObjectNode):
    """The file of an event queue object (``obj``: read, readable, on_ready):
    it holds the iommufd context while open, and wakes its pollers when the
    queue becomes readable."""

    def __init__(self, mount, obj, uid, gid, name=""):
        super().__init__(mount, obj, uid, gid, name)
        self.waiters = PollWaiters(mount)
        obj.on_ready = self.waiters.wake

    def _opened(self, of):
        self.obj.ctx.hold()     # the file holds the context (iommufd_ctx_get)

    def _closed(self, of):
        self.waiters.forget(of)
        q = self.obj
        q.on_ready = None
        if not q.dead:
            q.file_released()
        q.ctx.unhold()

    def _read(self, req, size: int):
        q = self.obj
        F.reply_buf(req, q.read(size) if not q.dead else b"")


@object_kind(Fault)
class FaultQueueNode(QueueNode):
    """The file of IOMMU_FAULT_QUEUE_ALLOC."""

    def read(self, req, of, size: int, off: int, direct: bool):
        if size >= _FUSE_MAX_READ:
            size -= size % 40             # a piece of a larger read(2)
        self._read(req, size)

    def write(self, req, of, buf, off: int, writepage: bool):
        F.reply_write(req, self.obj.write(bytes(buf)))

    def poll(self, req, of, ph):
        ready = self.obj.readable()
        self.waiters.reply(req, of, ph, ready,
                           select.POLLOUT | (select.POLLIN | select.POLLRDNORM if ready else 0))


@object_kind(Veventq)
class VeventqNode(QueueNode):
    """The file of IOMMU_VEVENTQ_ALLOC."""

    def read(self, req, of, size: int, off: int, direct: bool):
        self._read(req, size)

    def poll(self, req, of, ph):
        ready = self.obj.readable()
        self.waiters.reply(req, of, ph, ready, select.POLLIN | select.POLLRDNORM if ready else 0)


def install(mount) -> None:
    """Nothing in the tree: these files come from gmemfs exec (nodes/exec.py)."""
