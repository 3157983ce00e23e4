"""Event queues behind fd-returning ioctls (spec §6.7, §6.10): the fault
queue (IOMMU_FAULT_QUEUE_ALLOC, FAULT object) with its selftest trigger
(IOMMU_TEST_OP_TRIGGER_IOPF), and the vEVENTQ of a vIOMMU
(IOMMU_VEVENTQ_ALLOC, VEVENTQ object).

The object is the model; the file that stands for it (read/write/poll on the
fd the kernel returns) is the FUSE adapter's, which calls `read`, `write`,
`readable` and sets `on_ready` (called when the queue becomes readable, for
poll notification). Nothing here knows about FUSE.

Fault queue rules (kernel eventq.c):

* A HWPT allocated with IOMMU_HWPT_FAULT_ID_VALID holds a reference on the
  FAULT object; so does the fault fd. IOMMU_DESTROY of the FAULT object fails
  with EBUSY until both are gone.
* A page request for a device (and PASID) reaches the fault queue of the
  HWPT that handle is attached to, as one *group* of one record
  (IOMMU_PGFAULT_FLAGS_LAST_PAGE: the selftest only sends last pages).
* ``read``: the count must be a multiple of 40 (ESPIPE); whole groups only
  (a group that does not fit stays queued); each group read gets a cookie
  (lowest free number from 1) and moves to the response table.
* ``write``: the count must be a multiple of 8 (ESPIPE); each
  ``iommu_hwpt_page_response`` answers one group by cookie; a code other than
  SUCCESS/INVALID or an unknown cookie -> EINVAL. It returns the bytes
  consumed, or the error when nothing was consumed.
* When a device (PASID) leaves a fault-capable HWPT, its groups still queued
  or awaiting a response are answered INVALID and dropped; destroying the
  FAULT object answers the rest.
"""

from __future__ import annotations

import errno
import heapq
import struct
from collections import deque

from . import context as C
from .context import IommufdObject
from .errors import err

PGFAULT_SIZE = 40             # struct iommu_hwpt_pgfault
RESPONSE_SIZE = 8             # struct iommu_hwpt_page_response
IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0
IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1
IOMMUFD_PAGE_RESP_SUCCESS = 0
IOMMUFD_PAGE_RESP_INVALID = 1

_PGFAULT = struct.Struct("<IIIIIIQII")      # flags dev_id pasid grpid perm rsvd addr length cookie
assert _PGFAULT.size == PGFAULT_SIZE


class FaultGroup:
    """One page request group, delivered to one fault queue."""

    __slots__ = ("handle", "records", "cookie")

    def __init__(self, handle, records):
        self.handle = handle          # (device, pasid): the attach handle it came through
        self.records = records        # [(flags, dev_id, pasid, grpid, perm, addr)]
        self.cookie = 0


class Fault(IommufdObject):
    """IOMMUFD_OBJ_FAULT."""

    kind = C.FAULT

    def __init__(self) -> None:
        super().__init__()
        self.deliver: deque[FaultGroup] = deque()
        self.response: dict[int, FaultGroup] = {}
        self._free: list[int] = []            # released cookies below _next
        self._next = 1
        self.responses = {"success": 0, "invalid": 0, "auto_invalid": 0}
        self.on_ready = None                  # adapter callback: the queue became readable

    # ---------------------------------------------------------------- report
    def report(self, handle, records) -> None:
        was_empty = not self.deliver
        self.deliver.append(FaultGroup(handle, list(records)))
        if was_empty and self.on_ready is not None:
            self.on_ready()

    def readable(self) -> bool:
        return bool(self.deliver)

    # ------------------------------------------------------------- file ops
    def read(self, count: int) -> bytes:
        if count % PGFAULT_SIZE:
            raise err(errno.ESPIPE, f"read count {count} is not a multiple of "
                      f"{PGFAULT_SIZE} (struct iommu_hwpt_pgfault)")
        out = []
        done = 0
        while self.deliver:
            g = self.deliver[0]
            need = len(g.records) * PGFAULT_SIZE
            if done >= count or need > count - done:
                break                          # a group is never split
            self.deliver.popleft()
            g.cookie = self._alloc_cookie()
            self.response[g.cookie] = g
            for flags, dev_id, pasid, grpid, perm, addr in g.records:
                out.append(_PGFAULT.pack(flags, dev_id, pasid, grpid, perm, 0, addr, 0,
                                         g.cookie))
            done += need
        return b"".join(out)

    def write(self, data: bytes) -> int:
        count = len(data)
        if count % RESPONSE_SIZE:
            raise err(errno.ESPIPE, f"write count {count} is not a multiple of "
                      f"{RESPONSE_SIZE} (struct iommu_hwpt_page_response)")
        done = 0
        error = None
        while done < count:
            cookie, code = struct.unpack_from("<II", data, done)
            if code not in (IOMMUFD_PAGE_RESP_SUCCESS, IOMMUFD_PAGE_RESP_INVALID):
                error = err(errno.EINVAL, f"page response code {code} is not "
                            "SUCCESS or INVALID")
                break
            g = self.response.pop(cookie, None)
            if g is None:
                error = err(errno.EINVAL, f"no fault group with cookie {cookie}")
                break
            self._release_cookie(cookie)
            self.responses["success" if code == IOMMUFD_PAGE_RESP_SUCCESS else "invalid"] += 1
            done += RESPONSE_SIZE
        if done == 0 and error is not None:
            raise error
        return done

    # ------------------------------------------------------- attach handles
    def auto_respond(self, handle) -> None:
        """The handle (device, pasid) left the HWPT: answer its groups INVALID."""
        keep = deque(g for g in self.deliver if g.handle != handle)
        self.responses["auto_invalid"] += len(self.deliver) - len(keep)
        self.deliver = keep
        for cookie in [c for c, g in self.response.items() if g.handle == handle]:
            del self.response[cookie]
            self._release_cookie(cookie)
            self.responses["auto_invalid"] += 1

    def destroy(self) -> None:
        self.responses["auto_invalid"] += len(self.deliver) + len(self.response)
        self.deliver.clear()
        self.response.clear()

    def describe(self) -> dict:
        return {"id": self.id, "queued": len(self.deliver), "awaiting_response": len(self.response),
                "responses": dict(self.responses)}

    # ---------------------------------------------------------------- cookies
    def _alloc_cookie(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        c = self._next
        self._next += 1
        return c

    def _release_cookie(self, c: int) -> None:
        heapq.heappush(self._free, c)


# ===========================================================================
# vEVENTQ (spec §6.10; kernel eventq.c / driver.c)
# ===========================================================================

VEVENT_HEADER = struct.Struct("<II")        # struct iommufd_vevent_header: flags, sequence
IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0
IOMMU_VEVENTQ_TYPE_DEFAULT = 0
INT_MAX = (1 << 31) - 1


class Veventq(IommufdObject):
    """IOMMUFD_OBJ_VEVENTQ: the events of one type of a vIOMMU.

    * An event queued when ``depth`` events are already queued is dropped;
      instead the queue ends in one payload-less header with
      IOMMU_VEVENTQ_FLAG_LOST_EVENTS (kept only while it is the last entry:
      the next event that fits replaces it, and the gap in the sequence
      numbers tells the loss).
    * Every queued entry, the lost-events header included, takes the next
      sequence number, 0 ... INT_MAX, then 0 again.
    * ``read`` returns whole entries, header + payload; what does not fit
      stays queued (the adapter checks the offset: ESPIPE).
    * The queue holds a reference on its vIOMMU; its fd holds one on it.
    """

    kind = C.VEVENTQ

    def __init__(self, viommu, vtype: int, depth: int) -> None:
        super().__init__()
        self.viommu = viommu.get()
        self.type = vtype
        self.depth = depth
        self.deliver: deque = deque()         # [flags, sequence, data]
        self.num_events = 0                  # queued events (the lost header not counted)
        self.sequence = 0
        self.lost = 0                        # events dropped, ever
        self.on_ready = None

    def report(self, data: bytes) -> None:
        """iommufd_viommu_report_event for this queue's type."""
        was_empty = not self.deliver
        if self.deliver and self.deliver[-1][0] & IOMMU_VEVENTQ_FLAG_LOST_EVENTS:
            self.deliver.pop()                # the lost header moves to the tail again
        if self.num_events == self.depth:
            entry = [IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 0, b""]
            self.lost += 1
        else:
            entry = [0, 0, bytes(data)]
            self.num_events += 1
        entry[1] = self.sequence
        self.sequence = (self.sequence + 1) & INT_MAX
        self.deliver.append(entry)
        if was_empty and self.on_ready is not None:
            self.on_ready()

    def readable(self) -> bool:
        return bool(self.deliver)

    def read(self, count: int) -> bytes:
        out = []
        done = 0
        hs = VEVENT_HEADER.size
        while self.deliver:
            flags, seq, data = self.deliver[0]
            if done >= count or hs + len(data) > count - done:
                break
            self.deliver.popleft()
            out.append(VEVENT_HEADER.pack(flags, seq) + data)
            done += hs + len(data)
            if not flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS:
                self.num_events -= 1
        return b"".join(out)

    def destroy(self) -> None:
        self.deliver.clear()
        vi, self.viommu = self.viommu, None
        if vi is not None:
            if vi.veventqs.get(self.type) is self:
                del vi.veventqs[self.type]
            if not vi.dead:
                vi.put()

    def describe(self) -> dict:
        return {"id": self.id, "type": self.type, "depth": self.depth,
                "queued": len(self.deliver), "next_sequence": self.sequence, "lost": self.lost}


def h_veventq_alloc(ctx, cmd, ucmd):
    """IOMMU_VEVENTQ_ALLOC (spec §6.10; iommufd_veventq_alloc): flags,
    __reserved or the DEFAULT type (EOPNOTSUPP), depth 0 (EINVAL), the
    vIOMMU (ENOENT), a queue of that type on it already (EEXIST), then the
    new fd. The vIOMMU keeps its queues by type in ``veventqs``; a driver
    reports through Viommu.report_event."""
    if cmd.flags or getattr(cmd, "__reserved") or cmd.type == IOMMU_VEVENTQ_TYPE_DEFAULT:
        raise err(errno.EOPNOTSUPP, "VEVENTQ_ALLOC: flags, __reserved or type DEFAULT")
    if not cmd.veventq_depth:
        raise err(errno.EINVAL, "VEVENTQ_ALLOC: veventq_depth is 0")
    viommu = ctx.lookup(cmd.viommu_id, C.VIOMMU)
    if cmd.type in viommu.veventqs:
        raise err(errno.EEXIST, f"vIOMMU {viommu.id} already has a vEVENTQ of type {cmd.type:#x}")
    q = Veventq(viommu, cmd.type, cmd.veventq_depth)
    ctx.add(q)
    viommu.veventqs[cmd.type] = q
    cmd.out_veventq_fd = ucmd.new_file(q, "out_veventq_fd")
    cmd.out_veventq_id = q.id
    ucmd.respond()
    return 0


# ===========================================================================
# ioctl handlers
# ===========================================================================

def h_fault_queue_alloc(ctx, cmd, ucmd):
    """IOMMU_FAULT_QUEUE_ALLOC (spec §6.7)."""
    if cmd.flags:
        raise err(errno.EOPNOTSUPP, "FAULT_QUEUE_ALLOC: flags must be 0")
    fault = Fault()
    ctx.add(fault)
    cmd.out_fault_fd = ucmd.new_file(fault, "out_fault_fd")
    cmd.out_fault_id = fault.id
    ucmd.respond()
    return 0


def fault_of(hwpt):
    return getattr(hwpt, "fault", None)


def leave_hwpt(hwpt, idev, pasid: int) -> None:
    """A device (PASID) detaches from ``hwpt``: iommufd_auto_response_faults."""
    fault = fault_of(hwpt)
    if fault is not None and not fault.dead:
        fault.auto_respond((idev, pasid))


def op_trigger_iopf(ctx, cmd, ucmd):
    """IOMMU_TEST_OP_TRIGGER_IOPF (spec §10.5): one last-page request from
    the mock device, to the fault queue of the HWPT its RID or PASID is
    attached to. With a PASID that has no attachment of its own, the request
    goes to a nested HWPT on the RID (the mock IOMMU has a user-managed PASID
    table); a HWPT without a fault queue drops it. The op returns 0."""
    t = cmd.trigger_iopf
    idev = ctx.lookup(t.dev_id, C.DEVICE)
    pasid = t.pasid
    flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE
    if pasid:
        flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID
        hwpt = idev.pasids.get(pasid)
        handle_pasid = pasid
        if hwpt is None and idev.hwpt is not None and idev.hwpt.kind == C.HWPT_NESTED:
            hwpt, handle_pasid = idev.hwpt, 0
    else:
        hwpt, handle_pasid = idev.hwpt, 0
    fault = fault_of(hwpt) if hwpt is not None else None
    if fault is not None and not fault.dead:
        fault.report((idev, handle_pasid),
                     [(flags, idev.id, pasid, t.grpid, t.perm, t.addr)])
    return 0
