"""Per-open iommufd context: object table, IDs, references, teardown (spec §1).

* IDs are allocated lowest-free-first from [1, 2^31-1] (spec §1.2). A freed ID
  is handed out again by the next allocation.
* Objects allocated during an ioctl are *pending*: they own their ID but are
  invisible to lookups until the ioctl succeeds (``commit``); on failure they
  are destroyed in reverse creation order and their IDs released
  (``rollback``). ``dispatch.ioctl`` brackets every handler with these.
* References (spec §1.3): ``obj.users`` counts references held on ``obj`` by
  other objects or by a driver (a bound device, an in-kernel access). The
  table's own reference is implicit. ``IOMMU_DESTROY`` fails with EBUSY while
  ``users > 0``.
* ``close()`` destroys everything leaves first (spec §1.4): objects with no
  users are removed repeatedly until the table is empty.
"""

from __future__ import annotations

import errno
import heapq

from . import mmap
from .errors import err
from .events import EventLog
from .pages import default_system
from .platform import CcConfig

ID_MIN = 1
ID_MAX = (1 << 31) - 1

# Object kinds (spec §1.3).
IOAS = "IOAS"
HWPT_PAGING = "HWPT_PAGING"
HWPT_NESTED = "HWPT_NESTED"
DEVICE = "DEVICE"
ACCESS = "ACCESS"
FAULT = "FAULT"
VIOMMU = "VIOMMU"
VDEVICE = "VDEVICE"
VEVENTQ = "VEVENTQ"
HW_QUEUE = "HW_QUEUE"
SELFTEST = "SELFTEST"


class IommufdObject:
    """Base class of everything that lives in the object table."""

    kind = "BASE"

    def __init__(self) -> None:
        self.id: int = 0
        self.ctx: Context | None = None
        self.users = 0          # references held by other objects / drivers
        self.published = False
        self.dead = False

    # --- reference helpers -------------------------------------------------
    def get(self) -> "IommufdObject":
        self.users += 1
        return self

    def put(self) -> None:
        assert self.users > 0, f"{self!r}: reference underflow"
        self.users -= 1

    # --- type specific teardown (drop references held on others) -----------
    def destroy(self) -> None:
        """Called exactly once when the object leaves the table."""

    def file_released(self) -> None:
        """The last fd on the file that stands for this object (the file of
        an fd-returning ioctl, see dispatch.UCmd.new_file) is closed: drop the
        file's reference."""
        self.put()

    def __repr__(self) -> str:
        return f"<{self.kind} id={self.id} users={self.users}>"


class Context:
    """One open() of MNT/iommu."""

    def __init__(self, options=None) -> None:
        """``options`` (mapping or attribute object), all optional:

        * ``test_kernel`` (default True): IOMMU_TEST_CMD exists, table ends 0xa0;
        * ``vfio_node``: opened as /dev/vfio/vfio -> MM accounting mode;
        * ``system``: a pages.System shared by contexts (pins, memlock);
          default: one process-wide System;
        * ``gmem_map``: 'rfc' (default: map guest_memfd without pins),
          'pin' (pin via GuestMemfd.pin), 'kernel' (EINVAL at pin time);
        * ``policy``: default guest_memfd invalidation policy of new IOASes
          ('none' (default), 'revoke', 'invalidate', 'mirror', 'pin');
          ``platform`` ('none', 'tdx', 'snp', 'cca'), ``tdx_shared_bit``,
          ``cca_shared_bit``, ``strict`` (policy.py, platform.py);
        * ``events``: the events.EventLog shared by the contexts of a mount
          (default: a private one);
        * ``gmem_policy(event, area) -> 'revoke'|'ignore'``: a legacy hook
          that replaces the named policy's handling of guest_memfd events;
        * ``dma_hook(access) -> None|reason`` (dma.py); also ``ctx.dma_hook``;
        * ``huge_page_size``: allocator cap M of spec §4.5 (default 2 MiB).
        """
        if options is None:
            opts = {}
        elif hasattr(options, "keys"):
            opts = dict(options)
        else:                               # e.g. an argparse Namespace
            opts = {k: v for k, v in vars(options).items() if v is not None}
        self.options = opts
        # Test kernel: IOMMU_TEST_CMD (0x3ba0) exists and the table ends at 0xa0.
        self.test_kernel: bool = bool(opts.get("test_kernel", True))
        # Pinned-memory accounting mode: 'user' (default) or 'mm' (VFIO node).
        self.account_mode: str = "mm" if opts.get("vfio_node") else "user"
        self._objs: dict[int, IommufdObject] = {}
        self._free: list[int] = []          # heap of released IDs < _next
        self._next = ID_MIN
        self._pending: list[IommufdObject] | None = None
        self._tombstones: set[int] = set()  # IDs of objects the kernel destroyed
        self.vfio_ioas = None               # weak: cleared when that IOAS dies
        self.no_iommu_mode = False          # a VFIO no-iommu device was bound (vfio_compat)
        self.mmap_regions: dict = {}        # mmap() offset -> (owner, length) (viommu.py)
        self.mappings: list = []            # mmap.Mapping: the live mmap()s of regions
        self.mapping_alive = None           # adapter: does a Mapping still exist? (mmap.prune)
        self.closed = False
        # references from outside the fd (a bound VFIO device's
        # iommufd_ctx_get): the fd's release waits for the last one
        self.holds = 0
        self.on_last_hold = None
        # Shared (cross-context, "system wide") state: pin registry and
        # memlock accounting. Tests pass fresh ones through options.
        self.system = opts.get("system") or default_system()
        # guest_memfd policy/platform model and the (mount-wide) event log
        self.cc = CcConfig.from_options(opts)
        self.events = opts.get("events") or EventLog(self.cc.platform, self.cc.policy)

    # --- ID allocation -----------------------------------------------------
    def _alloc_id(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        if self._next > ID_MAX:
            raise err(errno.EBUSY, "object ID space exhausted")
        i = self._next
        self._next += 1
        return i

    def _release_id(self, i: int) -> None:
        heapq.heappush(self._free, i)

    # --- transactions (driven by dispatch) ---------------------------------
    def begin(self) -> None:
        self._pending = []

    def commit(self) -> None:
        for obj in self._pending or ():
            if not obj.dead:
                obj.published = True
        self._pending = None

    def rollback(self) -> None:
        pend = self._pending or []
        self._pending = None
        for obj in reversed(pend):
            if not obj.dead:
                self._drop(obj)

    # --- object management -------------------------------------------------
    def add(self, obj: IommufdObject) -> int:
        """Allocate an ID for ``obj``. Published at commit (or immediately
        when called outside an ioctl, e.g. from tests)."""
        i = self._alloc_id()
        obj.id = i
        obj.ctx = self
        self._objs[i] = obj
        if self._pending is not None:
            self._pending.append(obj)
        else:
            obj.published = True
        return i

    def _drop(self, obj: IommufdObject) -> None:
        """Remove from the table and run the type teardown."""
        if obj.dead:
            return
        obj.dead = True
        self._objs.pop(obj.id, None)
        self._release_id(obj.id)
        if self.vfio_ioas is obj:
            self.vfio_ioas = None
        obj.destroy()

    def tombstone(self, obj: IommufdObject) -> None:
        """Destroy ``obj`` on the kernel's behalf but keep its ID reserved until
        the context is closed (iommufd_object_tombstone_user: a vDEVICE whose
        device went away first). Lookups and IOMMU_DESTROY of the ID say ENOENT;
        no new object gets it."""
        if obj.dead:
            return
        obj.dead = True
        self._objs.pop(obj.id, None)
        self._tombstones.add(obj.id)
        if self.vfio_ioas is obj:
            self.vfio_ioas = None
        obj.destroy()

    def lookup(self, obj_id: int, *kinds: str) -> IommufdObject:
        """Find a published, live object of one of ``kinds`` (any if none)."""
        obj = self._objs.get(obj_id)
        if obj is None or not obj.published or obj.dead or (
                kinds and obj.kind not in kinds):
            want = "/".join(kinds) if kinds else "object"
            raise err(errno.ENOENT, f"no {want} with id {obj_id}")
        return obj

    def find(self, obj_id: int):
        """Published live object of any type, or None."""
        obj = self._objs.get(obj_id)
        if obj is None or not obj.published or obj.dead:
            return None
        return obj

    def destroy_id(self, obj_id: int) -> None:
        """IOMMU_DESTROY semantics (spec §4.1)."""
        obj = self.lookup(obj_id)
        if obj.users and self.mappings:
            mmap.prune(self)         # a mapping of one of its regions may be gone
        if obj.users:
            raise err(errno.EBUSY, f"{obj.kind} {obj_id} is still referenced")
        self._drop(obj)

    def remove(self, obj: IommufdObject) -> None:
        """Automatic destruction by the kernel side (auto HWPT, unbind)."""
        if obj.users:
            raise err(errno.EBUSY, f"{obj.kind} {obj.id} is still referenced")
        self._drop(obj)

    def objects(self, *kinds: str):
        return [o for o in self._objs.values()
                if o.published and not o.dead and (not kinds or o.kind in kinds)]

    def __len__(self) -> int:
        return sum(1 for o in self._objs.values() if not o.dead)

    def hold(self) -> None:
        self.holds += 1

    def unhold(self) -> None:
        """Drop a hold; the last one runs ``on_last_hold`` (a release that
        was waiting for it)."""
        self.holds -= 1
        if self.holds == 0 and self.on_last_hold is not None:
            cb, self.on_last_hold = self.on_last_hold, None
            cb()

    # --- teardown -----------------------------------------------------------
    def close(self) -> None:
        """Destroy every object, leaves first (spec §1.4)."""
        if self.closed:
            return
        self.closed = True
        if self.mappings:
            mmap.drop_all(self)
        while self._objs:
            leaves = [o for o in self._objs.values() if o.users == 0]
            if not leaves:
                # A reference cycle would be a model bug; break it anyway so
                # every pin and charge is returned.
                leaves = [min(self._objs.values(), key=lambda o: o.id)]
                leaves[0].users = 0
            for o in sorted(leaves, key=lambda o: o.id):
                if not o.dead and o.users == 0:
                    self._drop(o)
        self.vfio_ioas = None
        for i in self._tombstones:
            self._release_id(i)
        self._tombstones.clear()
