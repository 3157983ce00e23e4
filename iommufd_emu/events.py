"""The event log of the guest_memfd <-> IOMMU policy and platform models.

One `EventLog` per mount (gmemfs.fs creates it and hands it to every iommufd
context through ``Context(options={'events': log})``); an in-process
`Context` without one gets a private log.  It knows nothing of FUSE.

An event is a dict (one JSON line of ``MNT/.state/events``)::

    seq, time, kind, platform, policy, ioas, device, iova, gmem, offset, detail

``kind`` is one of `KINDS`.  ``emit`` appends, counts and calls the listeners
(gmemfs.fs uses one to wake poll()ers).  The log keeps the last
`MAX_EVENTS`; a reader that fell behind gets one ``lost`` line.

Counters (``counters()``): events per kind, IOPTE ``splits`` and ``merges``
(counted per 2 MiB window, also when the events are summarised), the number
of ``machine_checks`` and whether the emulated host is dead.

Host death (`kill_host`) is the TDX machine check: the model only records it;
the FUSE adapter answers EIO to every later call on the mount.
"""

from __future__ import annotations

import collections
import json
import time
from typing import Callable, Deque, Dict, List, Optional

KINDS = (
    "machine_check",     # tdx: a shared IOPTE reached a private page (host dead)
    "rmp_fault",         # snp: page state / T bit / IOPTE size does not match the RMP
    "gpt_fault",         # cca: the granule protection table refused the access
    "sept_fault",        # tdx: a private IOPTE reached a shared page (contained)
    "use_after_free",    # a DMA reached a page punched out after its IOPTE was made
    "stale_page",        # pin: the device reached the pinned old page of a punched range
    "revoke",            # the policy revoked a whole area (punch under 'revoke')
    "invalidate",        # the policy removed IOPTEs (conversion/punch under 'invalidate')
    "split",             # 2 MiB IOPTE(s) split into 4 KiB ones
    "merge",             # 4 KiB IOPTEs merged back into a 2 MiB one
    "strict_violation",  # strict: a conversion/map that would create a violation, refused
    "io_fault",          # a DMA hit an IOVA whose IOPTE the policy removed (contained)
    "iommu_fault",       # a VFIO device's DMA the IOMMU refused (unmapped IOVA, no domain)
)

MAX_EVENTS = 1 << 16


class EventLog:
    def __init__(self, platform: str = "none", policy: str = "none",
                 max_events: int = MAX_EVENTS) -> None:
        self.platform = platform
        self.policy = policy          # the mount's default policy (per-IOAS may differ)
        self.max_events = max_events
        self._events: Deque[dict] = collections.deque()
        self.seq = 0                  # seq of the last event (0: none yet)
        self.by_kind: Dict[str, int] = {k: 0 for k in KINDS}
        self.splits = 0
        self.merges = 0
        self.machine_checks = 0
        self.host_dead = False
        self.host_dead_reason = ""
        self._listeners: List[Callable[[dict], None]] = []

    # ------------------------------------------------------------ emit
    def emit(self, kind: str, *, policy: Optional[str] = None, ioas: Optional[int] = None,
             device: Optional[int] = None, iova: Optional[int] = None,
             gmem: Optional[str] = None, offset: Optional[int] = None,
             detail: str = "", count: int = 1) -> dict:
        if kind not in self.by_kind:
            raise ValueError(f"unknown event kind {kind!r}")
        self.seq += 1
        ev = {"seq": self.seq, "time": round(time.time(), 6), "kind": kind,
              "platform": self.platform, "policy": policy or self.policy,
              "ioas": ioas, "device": device, "iova": iova, "gmem": gmem,
              "offset": offset, "detail": detail}
        if count != 1:
            ev["count"] = count
        self._events.append(ev)
        while len(self._events) > self.max_events:
            self._events.popleft()
        self.by_kind[kind] += count
        if kind == "split":
            self.splits += count
        elif kind == "merge":
            self.merges += count
        elif kind == "machine_check":
            self.machine_checks += count
        for cb in list(self._listeners):
            try:
                cb(ev)
            except Exception:   # a listener must never break the model
                import logging
                logging.getLogger(__name__).exception("event listener failed")
        return ev

    def kill_host(self, reason: str) -> None:
        if not self.host_dead:
            self.host_dead = True
            self.host_dead_reason = reason

    def listen(self, cb: Callable[[dict], None]) -> None:
        self._listeners.append(cb)

    # ----------------------------------------------------------- queries
    def events(self, kind: Optional[str] = None, since: int = 0) -> List[dict]:
        return [e for e in self._events if e["seq"] > since and (kind is None or e["kind"] == kind)]

    def first_seq(self) -> int:
        return self._events[0]["seq"] if self._events else self.seq + 1

    def counters(self) -> dict:
        return {"events": dict(self.by_kind), "total_events": self.seq,
                "splits": self.splits, "merges": self.merges,
                "machine_checks": self.machine_checks, "host_dead": self.host_dead,
                "host_dead_reason": self.host_dead_reason,
                "platform": self.platform, "policy": self.policy}

    def reader(self) -> "EventReader":
        return EventReader(self)


class EventReader:
    """A cursor over the log: what one open of MNT/.state/events has read."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.next_seq = 1
        self._buf = b""

    def pending(self) -> bool:
        return bool(self._buf) or self.log.seq >= self.next_seq

    def read(self, size: int) -> bytes:
        if not self._buf and self.log.seq >= self.next_seq:
            lines = []
            first = self.log.first_seq()
            if self.next_seq < first:
                lines.append(json.dumps({"seq": None, "kind": "lost",
                                         "count": first - self.next_seq}))
            for ev in self.log.events(since=self.next_seq - 1):
                lines.append(json.dumps(ev, sort_keys=True))
            self.next_seq = self.log.seq + 1
            self._buf = ("\n".join(lines) + "\n").encode() if lines else b""
        out, self._buf = self._buf[:size], self._buf[size:]
        return out
