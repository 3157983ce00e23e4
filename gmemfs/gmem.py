"""The guest_memfd model (pure Python: no FUSE, no trio, no cffi).

One `GuestMemfd` is one emulated guest_memfd file (spec: guest_memfd.md).  It
keeps, per byte range, with no per-page objects (`intervals.RangeMap`):

* the file's fixed ``size`` and create ``flags``;
* the page state (spec §3): *hole*, *allocated* (``fallocate(KEEP_SIZE)``
  made a folio) or *populated* (the folio was used: `write` or `touch`);
* the PRIVATE attribute (spec §6.3, v8 in-place conversion), initially all
  shared with ``GUEST_MEMFD_FLAG_INIT_SHARED`` and all private otherwise;
* pin counts (`pin` / `unpin`): references that are not guest_memfd's own,
  e.g. pages an emulated IOMMU maps.  A pinned page makes a shared->private
  conversion fail with EAGAIN (v8 "unexpected references");
* a sparse backing: a host memfd of the file's size (``backing_fd``).  It costs
  nothing until a page is written, so a 1 TiB or ``0x7FFFFFFFFFFFF000`` file
  is free.  Holes and allocated-but-unused pages read as zero.

Errors are ``OSError(errno.EXXX, "reason")`` (docs/ARCHITECTURE.md).  A failed
`set_memory_attributes` whose errno is EAGAIN (and any failure a subscriber
raised) also carries ``err.error_offset``: the byte offset userspace gets back
in ``kvm_memory_attributes2.error_offset``; it is never below the requested
offset.  Argument errors carry no ``error_offset``.

Event contract (the "protective notifier", seed thread / spec §7)
----------------------------------------------------------------
Every punch and every attribute conversion is announced to the subscribers
(`subscribe(cb)`), synchronously, in subscription order, as a `GmemEvent`
with fields:

* ``kind``: ``'punch'``, ``'to_private'`` or ``'to_shared'``;
* ``offset``, ``length``: the byte range, page aligned.  A punch announces
  the range clipped to the file size (a punch entirely past EOF changes
  nothing and announces nothing).  A conversion announces the requested range
  (some pages in it may already have had the target attribute);
* ``phase``:

  - ``'before'``: delivered before anything changes, so an invalidation policy
    can tear down IOMMU mappings (and `unpin`) first.  A subscriber may raise
    an ``OSError`` (e.g. EAGAIN) to refuse: then nothing changes and the error
    propagates to the caller of `fallocate` / `set_memory_attributes`;
  - ``'after'``: the change is applied and visible through every query;
  - ``'abort'``: the operation failed after this subscriber accepted
    ``'before'`` (a later subscriber refused, or the pin check failed).
    Nothing changed.

  Each subscriber that returned normally from ``'before'`` gets exactly one
  ``'after'`` or ``'abort'`` for that operation, unless it unsubscribed in
  between; a subscriber that raised in ``'before'`` gets neither, and one
  subscribed during the operation gets nothing of it.  Subscribers must not
  raise in ``'after'``: the change is done; all subscribers are still told
  and a ``RuntimeError`` (a server bug, answered EIO) is raised.  Errors
  raised in ``'abort'`` are logged and dropped.
* ``gmem``: the `GuestMemfd` that changed.

No-op calls announce nothing: a conversion whose range already has the
requested attribute (the v8 fast path) and a punch clipped to nothing.
Allocation (``fallocate(KEEP_SIZE)``), `write`, `touch`, `pin` and `unpin`
are never announced, and neither is `close`.

Order of a shared->private conversion (v8 §6.3): argument checks, no-op fast
path, ``'before'`` (stands for "unmap from host page tables"), the pin check
(EAGAIN + ``error_offset`` = first pinned page), store, ``'after'``.  Because
the pin check comes after ``'before'``, an "unmap first" policy can unpin in
its ``'before'`` callback and the conversion then succeeds.

A subscriber may call `pin`, `unpin` and every query from a callback.  It may
not start another punch or conversion of the same file (EBUSY).

Contents on conversion: the model keeps page contents in both directions.  The
v8 documentation says KVM itself does not change contents (platform firmware
may); the RFC "content modes" are not in v8.  Readers that must hide private
data (host faults on private pages are SIGBUS) check `is_private` themselves:
`read` / `write` are raw accessors without policy.

Punch does not change attributes (v8 selftest) nor pin counts; it zeroes the
backing and returns the pages to *hole*.  Each punch increments
``punch_counter`` and, while anyone is subscribed, stamps its range with it
(`punch_epoch_runs`) before ``'after'`` is announced: IOMMU mappings remember
the counter they were made at, so a DMA can tell that its page left the file
after the mapping was made. Without subscribers nothing is stamped (no mapping
can hold an older view), so the stamps cost nothing for unmapped files.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from intervals import RangeCounter, RangeMap

__all__ = [
    "PAGE_SIZE", "GUEST_MEMFD_FLAG_MMAP", "GUEST_MEMFD_FLAG_INIT_SHARED",
    "KVM_MEMORY_ATTRIBUTE_PRIVATE", "FALLOC_FL_KEEP_SIZE", "FALLOC_FL_PUNCH_HOLE",
    "FALLOC_FL_NO_HIDE_STALE", "FALLOC_FL_COLLAPSE_RANGE", "FALLOC_FL_ZERO_RANGE",
    "FALLOC_FL_INSERT_RANGE", "FALLOC_FL_UNSHARE_RANGE", "FALLOC_FL_WRITE_ZEROES",
    "FALLOC_FL_ALLOCATE_RANGE", "FALLOC_FL_MODE_MASK", "LLONG_MAX", "U64_MAX",
    "DEFAULT_SUPPORTED_FLAGS",
    "GmemEvent", "GuestMemfd",
]

log = logging.getLogger(__name__)

PAGE_SIZE = 4096
PAGE_MASK = PAGE_SIZE - 1

GUEST_MEMFD_FLAG_MMAP = 1 << 0
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1
DEFAULT_SUPPORTED_FLAGS = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED

KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3
KVM_MEMORY_ATTRIBUTES2_RESERVED_WORDS = 11

# include/uapi/linux/falloc.h
FALLOC_FL_ALLOCATE_RANGE = 0x00
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_NO_HIDE_STALE = 0x04
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_UNSHARE_RANGE = 0x40
FALLOC_FL_WRITE_ZEROES = 0x80
# include/linux/falloc.h: the exclusive "mode" part of the mode word.
FALLOC_FL_MODE_MASK = (FALLOC_FL_ALLOCATE_RANGE | FALLOC_FL_PUNCH_HOLE |
                       FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE |
                       FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE |
                       FALLOC_FL_WRITE_ZEROES)

LLONG_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1

_KINDS = ("punch", "to_private", "to_shared")
_PHASES = ("before", "after", "abort")


def _locked(fn: Callable) -> Callable:
    """Run a query under the model's lock (callers may use threads)."""
    @functools.wraps(fn)
    def wrapper(self: "GuestMemfd", *args: Any, **kw: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kw)
    return wrapper


def _err(code: int, reason: str, error_offset: Optional[int] = None) -> OSError:
    exc = OSError(code, reason)
    if error_offset is not None:
        exc.error_offset = error_offset
    return exc


# ------------------------------------------------------------ host fallocate

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


def _host_punch(fd: int, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE|KEEP_SIZE) on a host fd; raises OSError."""
    while True:
        if _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      offset, length) == 0:
            return
        code = ctypes.get_errno()
        if code != errno.EINTR:
            raise _err(code, f"host punch of backing memfd failed: {os.strerror(code)}")


# ------------------------------------------------------------------ events

@dataclass(frozen=True)
class GmemEvent:
    """A punch or conversion announcement (see the module docstring)."""

    kind: str      # 'punch' | 'to_private' | 'to_shared'
    offset: int    # byte offset, page aligned
    length: int    # bytes, page aligned, > 0
    phase: str     # 'before' | 'after' | 'abort'
    gmem: Optional["GuestMemfd"] = field(default=None, repr=False, compare=False)

    @property
    def end(self) -> int:
        return self.offset + self.length


Subscriber = Callable[[GmemEvent], Any]


# --------------------------------------------------------------- the model

class GuestMemfd:
    """The state of one guest_memfd (see the module docstring)."""

    # ------------------------------------------------------------ creation

    @classmethod
    def create(cls, size: int, flags: int,
               supported_flags: int = DEFAULT_SUPPORTED_FLAGS,
               reserved: Optional[Iterable[int]] = None) -> "GuestMemfd":
        """KVM_CREATE_GUEST_MEMFD (spec §4.1 steps 4-5).

        ``size`` and ``flags`` are the u64 struct fields; ``size`` is read as
        signed 64-bit like the kernel's ``loff_t``.  ``reserved`` is accepted
        and ignored: the kernel does not validate it.
        """
        return cls(size, flags, supported_flags)

    def __init__(self, size: int, flags: int = 0,
                 supported_flags: int = DEFAULT_SUPPORTED_FLAGS) -> None:
        self._fd: Optional[int] = None  # so __del__ works if we raise below
        # Step 4: a flag bit outside the supported set.
        if flags < 0 or flags > U64_MAX or flags & ~supported_flags:
            raise _err(errno.EINVAL, f"unsupported guest_memfd flags {flags:#x} "
                                     f"(supported {supported_flags:#x})")
        # Step 5: size <= 0 as loff_t, or not page aligned.
        ssize = size
        if 0 <= size <= U64_MAX and size > LLONG_MAX:
            ssize = size - (1 << 64)
        if ssize <= 0 or ssize > LLONG_MAX or ssize & PAGE_MASK:
            raise _err(errno.EINVAL, f"bad guest_memfd size {size:#x}: must be > 0 "
                                     f"and a multiple of {PAGE_SIZE}")
        self.size: int = ssize
        self.flags: int = flags
        self.supported_flags: int = supported_flags
        self._lock = threading.RLock()
        self._changing = False
        self._subscribers: List[Subscriber] = []

        init = 0 if flags & GUEST_MEMFD_FLAG_INIT_SHARED else KVM_MEMORY_ATTRIBUTE_PRIVATE
        self._attrs = RangeMap(0, ssize, init)   # covers [0, size): 0 or PRIVATE
        self._allocated = RangeMap()             # True where a folio exists
        self._populated = RangeMap()             # True where it was used (subset)
        self._pins = RangeCounter()              # int > 0 where pinned
        # punch epochs: every punch takes the next counter value and stamps
        # its range with it, so "was this page punched after X" is one
        # lookup (an IOMMU mapping remembers the counter it was made at)
        self.punch_counter = 0
        self._punch_epochs = RangeMap()          # int > 0: counter of the last punch

        fd = os.memfd_create("gmemfs-guest_memfd", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, ssize)
        except OSError as exc:
            os.close(fd)
            raise _err(errno.ENOMEM, f"cannot size the backing memfd: {exc.strerror}")
        self._fd = fd

    # ------------------------------------------------------------ lifetime

    @property
    def backing_fd(self) -> int:
        """The host memfd holding the contents (offset = file offset).

        The FUSE layer may pread/pwrite it directly; it must then call
        `touch` for pages it populates so `page_state` stays truthful.
        """
        self._check_open()
        return self._fd  # type: ignore[return-value]

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Release the backing memfd.  Idempotent.  Announces nothing.

        Call it when the last user of the file is gone (the kernel frees the
        pages when the last reference to the inode goes).  Later calls raise
        EBADF.
        """
        with self._lock:
            fd, self._fd = self._fd, None
            self._subscribers.clear()
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> "GuestMemfd":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            self._fd = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._attrs)} attr runs"
        return f"<GuestMemfd size={self.size:#x} flags={self.flags:#x} {state}>"

    def _check_open(self) -> None:
        if self._fd is None:
            raise _err(errno.EBADF, "guest_memfd model is closed")

    # --------------------------------------------------------- subscribers

    def subscribe(self, cb: Subscriber) -> Subscriber:
        """Add a subscriber (called with a `GmemEvent`).  Returns ``cb``."""
        with self._lock:
            self._subscribers.append(cb)
        return cb

    def unsubscribe(self, cb: Subscriber) -> None:
        """Remove a subscriber; unknown callbacks are ignored."""
        with self._lock:
            try:
                self._subscribers.remove(cb)
            except ValueError:
                pass
            if not self._subscribers:
                # whoever mapped these pages is gone: no map epoch is left to
                # compare the stamps with (a new mapping starts at punch_counter)
                self._punch_epochs.clear()

    def _announce_before(self, kind: str, offset: int, length: int) -> List[Subscriber]:
        ev = GmemEvent(kind, offset, length, "before", self)
        accepted: List[Subscriber] = []
        for cb in list(self._subscribers):
            try:
                cb(ev)
            except BaseException:
                self._announce_abort(accepted, kind, offset, length)
                raise
            accepted.append(cb)
        return accepted

    def _announce_abort(self, accepted: List[Subscriber], kind: str,
                        offset: int, length: int) -> None:
        ev = GmemEvent(kind, offset, length, "abort", self)
        for cb in accepted:
            if cb not in self._subscribers:
                continue  # unsubscribed meanwhile
            try:
                cb(ev)
            except Exception:  # the original error is what the caller sees
                log.exception("guest_memfd subscriber %r raised on abort", cb)

    def _announce_after(self, accepted: List[Subscriber], kind: str,
                        offset: int, length: int) -> None:
        ev = GmemEvent(kind, offset, length, "after", self)
        first: Optional[BaseException] = None
        for cb in accepted:
            if cb not in self._subscribers:
                continue  # unsubscribed meanwhile
            try:
                cb(ev)
            except Exception as exc:
                log.exception("guest_memfd subscriber %r raised after %s", cb, kind)
                if first is None:
                    first = exc
        if first is not None:
            raise RuntimeError(f"guest_memfd subscriber failed after {kind} "
                               f"[{offset:#x}, {offset + length:#x}) was applied") from first

    def _begin_change(self) -> None:
        self._check_open()
        if self._changing:
            raise _err(errno.EBUSY, "punch/conversion started from a subscriber "
                                    "of the same guest_memfd")
        self._changing = True

    # ------------------------------------------------------------ fallocate

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        """fallocate(2) on the guest_memfd, with the kernel's check order.

        VFS (fs/open.c vfs_fallocate) then kvm_gmem_fallocate, spec §4.3:

        1. ``offset < 0`` or ``length <= 0``                   -> EINVAL
        2. a mode the VFS refuses                              -> EOPNOTSUPP
           (bits outside MODE_MASK|KEEP_SIZE, e.g. NO_HIDE_STALE; more than
           one mode bit; PUNCH_HOLE without KEEP_SIZE; COLLAPSE/INSERT/
           WRITE_ZEROES with KEEP_SIZE)
        3. ``offset + length`` overflows loff_t / > LLONG_MAX  -> EFBIG
        4. KEEP_SIZE not set                                   -> EOPNOTSUPP
        5. not exactly KEEP_SIZE or PUNCH_HOLE|KEEP_SIZE       -> EOPNOTSUPP
        6. offset or length not page aligned                   -> EINVAL
        7. allocate past the size -> EINVAL; punch past the size -> clipped
           (a punch wholly past EOF succeeds and does nothing).

        Allocate marks the range allocated and keeps data.  Punch announces
        ('before'), zeroes the backing, returns the pages to *hole*, keeps
        attributes and pins, and announces ('after').
        """
        # 1
        if offset < 0 or length <= 0:
            raise _err(errno.EINVAL, "fallocate: offset < 0 or len <= 0")
        # 2: vfs_fallocate mode checks
        if mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE):
            raise _err(errno.EOPNOTSUPP, f"fallocate: unknown mode bits in {mode:#x}")
        kind = mode & FALLOC_FL_MODE_MASK
        keep = bool(mode & FALLOC_FL_KEEP_SIZE)
        if kind in (FALLOC_FL_ALLOCATE_RANGE, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE):
            pass
        elif kind == FALLOC_FL_PUNCH_HOLE:
            if not keep:
                raise _err(errno.EOPNOTSUPP, "fallocate: PUNCH_HOLE needs KEEP_SIZE")
        elif kind in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE,
                      FALLOC_FL_WRITE_ZEROES):
            if keep:
                raise _err(errno.EOPNOTSUPP, f"fallocate: mode {kind:#x} with KEEP_SIZE")
        else:
            raise _err(errno.EOPNOTSUPP, f"fallocate: modes are exclusive ({mode:#x})")
        # 3
        if offset + length > LLONG_MAX:
            raise _err(errno.EFBIG, "fallocate: offset + len overflows loff_t")
        # 4 (kvm_gmem_fallocate)
        if not keep:
            raise _err(errno.EOPNOTSUPP, "guest_memfd: fallocate needs KEEP_SIZE")
        # 5
        if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
            raise _err(errno.EOPNOTSUPP, f"guest_memfd: unsupported fallocate mode {mode:#x}")
        # 6
        if offset & PAGE_MASK or length & PAGE_MASK:
            raise _err(errno.EINVAL, "guest_memfd: fallocate range not page aligned")
        with self._lock:
            self._check_open()
            end = offset + length
            if mode & FALLOC_FL_PUNCH_HOLE:
                self._punch(offset, min(end, self.size))
                return
            # 7: kvm_gmem_allocate
            if end > self.size:
                raise _err(errno.EINVAL, "guest_memfd: allocate past the file size")
            self._allocated.set(offset, end, True)

    def _punch(self, start: int, end: int) -> None:
        if start >= end:
            return  # wholly past EOF: nothing to drop, nothing to announce
        self._begin_change()
        try:
            length = end - start
            accepted = self._announce_before("punch", start, length)
            try:
                _host_punch(self._fd, start, length)  # type: ignore[arg-type]
            except BaseException:
                self._announce_abort(accepted, "punch", start, length)
                raise
            self._allocated.clear(start, end)
            self._populated.clear(start, end)
            self.punch_counter += 1
            if self._subscribers:
                # only a subscriber (an IOMMU mapping) can hold an older view
                # of these pages: without one there is nothing to stamp, and
                # the map does not grow with every punched page
                self._punch_epochs.set(start, end, self.punch_counter)
        finally:
            self._changing = False
        self._announce_after(accepted, "punch", start, length)

    # -------------------------------------------------------- conversions

    def set_memory_attributes(self, offset: int, size: int, attributes: int,
                              flags: int = 0,
                              reserved: Iterable[int] = (0,) * KVM_MEMORY_ATTRIBUTES2_RESERVED_WORDS
                              ) -> None:
        """KVM_SET_MEMORY_ATTRIBUTES2 on this guest_memfd (v8, spec §6.3).

        Arguments are the u64 struct fields (negative ints are read as u64).
        Checks, in order, each EINVAL: ``flags != 0``; any reserved word
        != 0; ``attributes`` outside PRIVATE; ``size == 0`` or
        ``offset + size`` wraps u64; offset or size not page aligned;
        ``offset >= file size`` or ``offset + size > file size``.
        (v8's "the VM has no private memory" check sits between reserved and
        attributes; the model has no VM, the caller does that one.)

        Then: the no-op fast path (every page already has ``attributes``:
        return, announce nothing); ``'before'``; for shared->private the pin
        check (EAGAIN, ``error_offset`` = first pinned page >= offset);
        store; ``'after'``.  Nothing is half-applied on failure.
        """
        flags &= U64_MAX
        offset &= U64_MAX
        size &= U64_MAX
        attributes &= U64_MAX
        if flags:
            raise _err(errno.EINVAL, f"set_memory_attributes: flags {flags:#x} != 0")
        if any(r for r in reserved):
            raise _err(errno.EINVAL, "set_memory_attributes: reserved words not zero")
        if attributes & ~KVM_MEMORY_ATTRIBUTE_PRIVATE:
            raise _err(errno.EINVAL, f"set_memory_attributes: unsupported attributes "
                                     f"{attributes:#x}")
        if size == 0 or offset + size > U64_MAX:
            raise _err(errno.EINVAL, "set_memory_attributes: size 0 or range wraps")
        if offset & PAGE_MASK or size & PAGE_MASK:
            raise _err(errno.EINVAL, "set_memory_attributes: range not page aligned")
        end = offset + size
        with self._lock:
            self._check_open()
            if offset >= self.size or end > self.size:
                raise _err(errno.EINVAL, "set_memory_attributes: range past the file size")
            if self._attrs.covers(offset, end, attributes):
                return  # v8 no-op fast path
            kind = "to_private" if attributes else "to_shared"
            self._begin_change()
            try:
                try:
                    accepted = self._announce_before(kind, offset, size)
                except OSError as exc:
                    eo = getattr(exc, "error_offset", None)
                    exc.error_offset = offset if eo is None else max(eo, offset)
                    raise
                if attributes:
                    busy = self._pins.first(offset, end)
                    if busy is not None:
                        self._announce_abort(accepted, kind, offset, size)
                        raise _err(errno.EAGAIN,
                                   f"page {busy[0]:#x} has {busy[2]} pin(s): cannot "
                                   f"make it private", error_offset=busy[0])
                self._attrs.set(offset, end, attributes)
            finally:
                self._changing = False
            self._announce_after(accepted, kind, offset, size)

    # ---------------------------------------------------------------- pins

    def _check_page_range(self, what: str, offset: int, length: int) -> int:
        if (offset < 0 or length <= 0 or offset & PAGE_MASK or length & PAGE_MASK
                or offset + length > self.size):
            raise _err(errno.EINVAL, f"{what}: bad range [{offset:#x}, +{length:#x}) "
                                     f"for a guest_memfd of size {self.size:#x}")
        return offset + length

    def pin(self, offset: int, length: int) -> None:
        """Take one extra reference on every page of the range.

        The range must be page aligned and inside the file (else EINVAL).
        Pins do not allocate pages and survive punches; their owner drops
        them with `unpin`.
        """
        with self._lock:
            self._check_open()
            end = self._check_page_range("pin", offset, length)
            self._pins.add(offset, end, 1)

    def unpin(self, offset: int, length: int) -> None:
        """Drop one reference on every page of the range.

        EINVAL (nothing changes) if the range is bad or any page in it is not
        pinned.
        """
        with self._lock:
            self._check_open()
            end = self._check_page_range("unpin", offset, length)
            for s, _e, v in self._pins.iter(offset, end, holes=True):
                if v is None:
                    raise _err(errno.EINVAL, f"unpin: page {s:#x} is not pinned")
            self._pins.add(offset, end, -1)

    @_locked
    def pin_count(self, offset: int) -> int:
        """Pins on the page containing ``offset``."""
        return self._pins.get(offset, 0)

    @_locked
    def punch_epoch_runs(self, offset: int = 0, length: Optional[int] = None
                         ) -> List[Tuple[int, int, Optional[int]]]:
        """``(start, end, epoch)`` tiling the window; ``epoch`` is the
        `punch_counter` value of the last punch over that range (None: never
        punched).  A punch that happens before any later punch has a smaller
        epoch."""
        s, e = self._window(offset, length)
        return self._punch_epochs.runs(s, e, holes=True)

    @_locked
    def pin_runs(self, offset: int = 0, length: Optional[int] = None) -> List[Tuple[int, int, int]]:
        s, e = self._window(offset, length)
        return self._pins.runs(s, e)

    # ------------------------------------------------------------ contents

    def read(self, offset: int, n: int) -> bytes:
        """Raw read of the backing (no attribute policy).

        Short at EOF like pread; b'' at or past EOF.  Holes read as zero.
        """
        if offset < 0 or n < 0:
            raise _err(errno.EINVAL, "read: negative offset or length")
        with self._lock:
            self._check_open()
            if offset >= self.size or n == 0:
                return b""
            n = min(n, self.size - offset)
            parts = []
            while n:
                chunk = os.pread(self._fd, min(n, 1 << 30), offset)  # type: ignore[arg-type]
                if not chunk:  # cannot happen on a sized memfd
                    raise _err(errno.EIO, "short read from backing memfd")
                parts.append(chunk)
                offset += len(chunk)
                n -= len(chunk)
            return b"".join(parts)

    def write(self, offset: int, data: bytes) -> None:
        """Raw write into the backing (no attribute policy).

        The whole write must be inside the file (else EINVAL: the backing must
        never grow).  Touched pages become allocated and populated.
        """
        n = len(data)
        if offset < 0 or offset + n > self.size:
            raise _err(errno.EINVAL, f"write [{offset:#x}, +{n:#x}) outside the file")
        if n == 0:
            return
        with self._lock:
            self._check_open()
            view = memoryview(data).cast("B")
            pos = 0
            while pos < n:
                done = os.pwrite(self._fd, view[pos:pos + (1 << 30)], offset + pos)  # type: ignore[arg-type]
                pos += done
            self._mark_used(offset, offset + n)

    def touch(self, offset: int, length: int) -> None:
        """Mark the pages overlapping the range allocated + populated.

        For callers that fault pages in through `backing_fd` themselves
        (kernel: first host or guest fault zeroes the folio and marks it
        up-to-date).  Clipped to the file.
        """
        with self._lock:
            self._check_open()
            if offset < 0 or length < 0:
                raise _err(errno.EINVAL, "touch: negative offset or length")
            end = min(offset + length, self.size)
            if offset < end:
                self._mark_used(offset, end)

    def _mark_used(self, start: int, end: int) -> None:
        ps = start & ~PAGE_MASK
        pe = (end + PAGE_MASK) & ~PAGE_MASK
        self._allocated.set(ps, pe, True)
        self._populated.set(ps, pe, True)

    # -------------------------------------------------------------- queries

    def _window(self, offset: int, length: Optional[int]) -> Tuple[int, int]:
        if length is None:
            length = self.size - offset
        if offset < 0 or length < 0 or offset + length > self.size:
            raise _err(errno.EINVAL, f"range [{offset:#x}, +{length:#x}) outside the file")
        return offset, offset + length

    @_locked
    def is_private(self, offset: int, length: int = PAGE_SIZE) -> bool:
        """True if every byte of the range is PRIVATE (range inside the file)."""
        s, e = self._window(offset, length)
        if s == e:
            return False
        return self._attrs.covers(s, e, KVM_MEMORY_ATTRIBUTE_PRIVATE)

    @_locked
    def is_shared(self, offset: int, length: int = PAGE_SIZE) -> bool:
        """True if every byte of the range is shared."""
        s, e = self._window(offset, length)
        if s == e:
            return False
        return self._attrs.covers(s, e, 0)

    @_locked
    def attributes_at(self, offset: int) -> int:
        """The attribute word (0 or PRIVATE) of the page holding ``offset``."""
        self._window(offset, 1)
        return self._attrs.get(offset)

    @_locked
    def private_runs(self, offset: int = 0, length: Optional[int] = None) -> List[Tuple[int, int]]:
        """Private ``(start, end)`` runs inside the window, merged."""
        s, e = self._window(offset, length)
        return [(a, b) for a, b, v in self._attrs.iter(s, e) if v]

    @_locked
    def shared_runs(self, offset: int = 0, length: Optional[int] = None) -> List[Tuple[int, int]]:
        s, e = self._window(offset, length)
        return [(a, b) for a, b, v in self._attrs.iter(s, e) if not v]

    @_locked
    def attribute_runs(self, offset: int = 0, length: Optional[int] = None) -> List[Tuple[int, int, int]]:
        """``(start, end, attributes)`` runs tiling the window."""
        s, e = self._window(offset, length)
        return self._attrs.runs(s, e)

    @_locked
    def allocated_runs(self, offset: int = 0, length: Optional[int] = None) -> List[Tuple[int, int]]:
        """Runs that are allocated or populated (not holes)."""
        s, e = self._window(offset, length)
        return [(a, b) for a, b, _ in self._allocated.iter(s, e)]

    @_locked
    def populated_runs(self, offset: int = 0, length: Optional[int] = None) -> List[Tuple[int, int]]:
        s, e = self._window(offset, length)
        return [(a, b) for a, b, _ in self._populated.iter(s, e)]

    @_locked
    def page_state(self, offset: int) -> Dict[str, Any]:
        """State of the page holding ``offset``: state, private, pins."""
        self._window(offset, 1)
        page = offset & ~PAGE_MASK
        if self._populated.get(page):
            state = "populated"
        elif self._allocated.get(page):
            state = "allocated"
        else:
            state = "hole"
        return {"offset": page, "state": state,
                "private": bool(self._attrs.get(page)),
                "pins": self._pins.get(page, 0)}

    @_locked
    def run_counts(self) -> Dict[str, int]:
        return {"attributes": len(self._attrs), "allocated": len(self._allocated),
                "populated": len(self._populated), "pins": len(self._pins)}

    def describe(self, max_runs: Optional[int] = None) -> Dict[str, Any]:
        """A read-only, JSON-friendly view of the whole state.

        Each list holds ``[start, end, ...]`` entries; with ``max_runs`` each
        list is cut to that many entries and ``truncated`` says which were.
        """
        with self._lock:
            def cut(name: str, items: Iterable[Any]) -> List[Any]:
                out = []
                for item in items:
                    if max_runs is not None and len(out) >= max_runs:
                        truncated.append(name)
                        break
                    out.append(item)
                return out

            truncated: List[str] = []
            names = []
            if self.flags & GUEST_MEMFD_FLAG_MMAP:
                names.append("MMAP")
            if self.flags & GUEST_MEMFD_FLAG_INIT_SHARED:
                names.append("INIT_SHARED")
            return {
                "size": self.size,
                "flags": self.flags,
                "flag_names": names,
                "closed": self.closed,
                "attributes": cut("attributes", ([s, e, "private" if v else "shared"]
                                                 for s, e, v in self._attrs.iter())),
                "allocated": cut("allocated", ([s, e] for s, e, _ in self._allocated.iter())),
                "populated": cut("populated", ([s, e] for s, e, _ in self._populated.iter())),
                "pins": cut("pins", ([s, e, v] for s, e, v in self._pins.iter())),
                "private_bytes": sum(e - s for s, e, v in self._attrs.iter() if v),
                "allocated_bytes": self._allocated.covered_length(),
                "run_counts": self.run_counts(),
                "subscribers": len(self._subscribers),
                "truncated": truncated,
            }
