"""Pages objects ("iopt_pages"), pin registry and memlock accounting.

Spec §3 (pages objects shared by COPY), §4.7/§11 (which files pin), §4.11
(pinning and accounting), §10.5 MD_CHECK_REFS.

A *pages object* is the memory source of one MAP / MAP_FILE: a page-aligned
window ``[start, start + npages*PAGE_SIZE)`` of a process address space, a
host file, or a gmemfs guest_memfd. Every area created from it (the MAP
itself, COPYs of it) shares it.

Pinning model (mirrors iopt_pages): a page of a pages object is pinned once
while *anything* holds it - an area that is filled into at least one domain,
or an access item. ``Pages.holders`` is an interval counter over page
indices; a 0 -> 1 transition pins (``System.pins`` +1 for the backing
pages, memlock charge), 1 -> 0 unpins and uncharges. Two MAPs of the same
buffer are two pages objects and give two pins, like the kernel.

guest_memfd (FileRef.kind == 'gmem'): by default the RFC semantics (spec
§11.2): no pin is taken (the pin registry is not touched) but memlock is
still charged. With context option ``gmem_map='kernel'`` a guest_memfd fails
at pin time with EINVAL like today's kernel (spec §11.3).
"""

from __future__ import annotations

import errno
import os

from intervals import RangeCounter

from .errors import err

PAGE_SIZE = 4096
ULONG_MAX = (1 << 64) - 1


class System:
    """State shared by every context of one server ("the machine")."""

    def __init__(self, memlock_limit: int | None = None) -> None:
        self.pins: dict = {}          # backing key -> RangeCounter(page index)
        self.locked: dict = {}        # ('user', uid) / ('mm', pid) -> pages
        self.pinned_vm: dict = {}     # pid -> pages
        self.memlock_limit = memlock_limit   # bytes, None = unlimited
        self.temp_memory_limit = 65536

    # --- long-term pins, counted per backing page --------------------------
    def pin(self, key, first: int, end: int, delta: int = 1) -> None:
        rc = self.pins.get(key)
        if rc is None:
            rc = self.pins[key] = RangeCounter()
        rc.add(first, end, delta)
        if delta < 0 and rc.is_zero():
            del self.pins[key]

    def pin_count(self, key, page: int) -> int:
        rc = self.pins.get(key)
        if rc is None:
            return 0
        return rc.count_at(page)

    def first_pin_count_not(self, counters, n: int, want: int):
        """For pages i in [0, n): the sum over ``counters`` [(key, first page)]
        of the pins on page first + i. The first (i, sum) with sum != want,
        else None. Walks the counters' segments, not the pages."""
        cuts = {0, n}
        for key, first in counters:
            rc = self.pins.get(key)
            if rc is not None:
                cuts.update(min(max(s - first, 0), n) for s, _e, _v in rc.segments(first, first + n))
        for i in sorted(cuts):
            if i >= n:
                break
            got = sum(self.pin_count(key, first + i) for key, first in counters)
            if got != want:
                return i, got
        return None

    # --- memlock accounting -------------------------------------------------
    def charge(self, acct, npages: int) -> None:
        if acct is None or npages == 0:
            return
        key, limit, pid = acct
        cur = self.locked.get(key, 0)
        if limit is not None and (cur + npages) * PAGE_SIZE > limit:
            raise err(errno.ENOMEM, "RLIMIT_MEMLOCK exceeded")
        self.locked[key] = cur + npages
        self.pinned_vm[pid] = self.pinned_vm.get(pid, 0) + npages

    def uncharge(self, acct, npages: int) -> None:
        if acct is None or npages == 0:
            return
        key, _limit, pid = acct
        self.locked[key] -= npages
        if not self.locked[key]:
            del self.locked[key]
        self.pinned_vm[pid] -= npages
        if not self.pinned_vm[pid]:
            del self.pinned_vm[pid]


_DEFAULT = None


def default_system() -> System:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = System()
    return _DEFAULT


def _caller_has_cap(caller, cap: str) -> bool:
    fn = getattr(caller, "has_cap", None)
    if fn is not None:
        return bool(fn(cap))
    return getattr(caller, "uid", 1) == 0


def make_account(ctx, caller):
    """Accounting record fixed at pages creation (spec §4.11)."""
    if _caller_has_cap(caller, "CAP_IPC_LOCK"):
        return None
    limit = None
    fn = getattr(caller, "memlock_limit", None)
    limit = fn() if fn is not None else ctx.system.memlock_limit
    if ctx.account_mode == "mm":
        return (("mm", caller.pid), limit, caller.pid)
    return (("user", caller.uid), limit, caller.pid)


def file_identity(ref):
    """A stable identity of the file behind a FileRef (for pins/CHECK_MAP)."""
    if getattr(ref, "gmem", None) is not None:
        return ("gmem", id(ref.gmem))
    ident = getattr(ref, "identity", None)
    if ident is not None:
        return ("file", ident)
    if getattr(ref, "fd", None) is not None:
        st = os.fstat(ref.fd)
        return ("file", (st.st_dev, st.st_ino))
    return ("file", id(ref))


class Pages:
    """One memory source. ``start`` is page aligned; byte ``b`` of the pages
    object is the source byte ``start + b``."""

    kind = "base"

    def __init__(self, system: System, start: int, length_bytes: int,
                 writable: bool, account) -> None:
        self.system = system
        self.start = start
        self.npages = (length_bytes + PAGE_SIZE - 1) // PAGE_SIZE
        self.writable = writable
        self.account = account
        self.holders = RangeCounter()
        self.refs = 0                 # areas using it
        self.areas = set()            # those areas
        self.revoked = False
        self.charged = 0              # pages currently charged

    # --- identity of backing bytes (MD_CHECK_MAP, MD_CHECK_REFS) ----------
    backing_key = None
    takes_pins = True

    def backing(self, byte: int):
        """(backing key, absolute source address) of pages byte ``byte``."""
        return (self.backing_key, self.start + byte)

    # --- pinning ------------------------------------------------------------
    def check_pinnable(self, first: int, end: int) -> None:
        """Raise the pin-time error for pages [first, end) (page indices)."""

    def hold(self, first: int, end: int) -> None:
        """Add a holder over page indices [first, end); pin what is new.
        Validation and charging happen before anything changes, so a failure
        leaves the object untouched."""
        if self.revoked:
            return
        fresh = [(s, e) for s, e, v in self.holders.segments(first, end) if v == 0]
        for s, e in fresh:
            self.check_pinnable(s, e)
        n = sum(e - s for s, e in fresh)
        self.system.charge(self.account, n)
        self.holders.add(first, end, 1)
        self.charged += n
        if self.takes_pins:
            base = self.start // PAGE_SIZE
            for s, e in fresh:
                self.system.pin(self.backing_key, base + s, base + e, 1)
                self._backing_pin(s, e, True)

    def release(self, first: int, end: int) -> None:
        crossed = self.holders.add(first, end, -1)
        n = sum(e - s for s, e in crossed)
        self.system.uncharge(self.account, n)
        self.charged -= n
        if self.takes_pins:
            base = self.start // PAGE_SIZE
            for s, e in crossed:
                self.system.pin(self.backing_key, base + s, base + e, -1)
                self._backing_pin(s, e, False)

    def _backing_pin(self, first: int, end: int, pin: bool) -> None:
        """Hook for backings that count pins themselves (guest_memfd)."""

    # --- byte access (DMA, ACCESS_RW) ----------------------------------------
    def read(self, byte: int, n: int) -> bytes:
        raise NotImplementedError

    def write(self, byte: int, data: bytes) -> None:
        raise NotImplementedError

    def free(self) -> None:
        """Last area gone."""


class UserPages(Pages):
    """Memory of a process, by user address. The emulator cannot pin another
    process's pages; what a pin keeps alive in the kernel is kept here where
    it can be: when pages become pinned, the files behind MAP_SHARED mappings
    of the range (shared anonymous memory included) are held
    (``mem.pin_shared``) and the range is reached through them from then on,
    so pinned shared memory stays valid after the process unmaps it, execs
    or exits (the selftest's fork rules). Private anonymous memory is reached
    in the process only (a dead process's private pages are gone: EFAULT)."""

    kind = "user"

    def __init__(self, system, uptr, length, writable, account, mem):
        start = uptr - uptr % PAGE_SIZE
        super().__init__(system, start, uptr + length - start, writable, account)
        self.mem = mem
        self.backing_key = ("mm", mem.pid)
        self.held_files: list = []         # [(va start, va end, FileRef, offset)], sorted

    def hold(self, first, end):
        fresh = [(s, e) for s, e, v in self.holders.segments(first, end) if v == 0]
        super().hold(first, end)
        pin = getattr(self.mem, "pin_shared", None)
        if pin is None:
            return
        for s, e in fresh:
            lo, hi = self.start + s * PAGE_SIZE, self.start + e * PAGE_SIZE
            if any(a <= lo and hi <= b for a, b, _, _ in self.held_files):
                continue
            for seg in pin(lo, hi - lo):
                if any(a == seg[0] and b == seg[1] for a, b, _, _ in self.held_files):
                    seg[2].close()
                else:
                    self.held_files.append(seg)
        self.held_files.sort(key=lambda x: x[0])

    def _split(self, addr: int, n: int):
        """[(addr, n, (FileRef, offset) or None)] covering [addr, addr + n)."""
        out = []
        end = addr + n
        cur = addr
        for lo, hi, ref, off in self.held_files:
            if hi <= cur or lo >= end:
                continue
            if lo > cur:
                out.append((cur, lo - cur, None))
                cur = lo
            stop = min(hi, end)
            out.append((cur, stop - cur, (ref, off + (cur - lo))))
            cur = stop
        if cur < end:
            out.append((cur, end - cur, None))
        return out

    def check_pinnable(self, first, end):
        addr = self.start + first * PAGE_SIZE
        size = (end - first) * PAGE_SIZE
        chk = getattr(self.mem, "check_access", None)
        if chk is not None:
            chk(addr, size, self.writable)       # raises OSError(EFAULT)
            return
        # Fallback: probe readability page by page (cannot probe writability
        # without side effects).
        for a in range(addr, addr + size, PAGE_SIZE):
            self.mem.read(a, 1)

    def read(self, byte, n):
        if not self.held_files:
            return self.mem.read(self.start + byte, n)
        parts = []
        for addr, m, f in self._split(self.start + byte, n):
            if f is None:
                parts.append(self.mem.read(addr, m))
            else:
                data = f[0].pread(f[1], m)
                parts.append(data + bytes(m - len(data)))
        return b"".join(parts)

    def write(self, byte, data):
        if not self.held_files:
            self.mem.write(self.start + byte, data)
            return
        pos = 0
        for addr, m, f in self._split(self.start + byte, len(data)):
            if f is None:
                self.mem.write(addr, data[pos:pos + m])
            else:
                f[0].pwrite(f[1], bytes(data[pos:pos + m]))
            pos += m

    def free(self):
        held, self.held_files = self.held_files, []
        for _, _, ref, _ in held:
            ref.close()
        close = getattr(self.mem, "close", None)
        if close is not None and getattr(self, "owns_mem", False):
            close()


class FilePages(Pages):
    kind = "file"

    def __init__(self, system, ref, offset, length, writable, account,
                 gmem_mode="rfc"):
        start = offset - offset % PAGE_SIZE
        super().__init__(system, start, offset + length - start, writable, account)
        self.ref = ref
        self.gmem = getattr(ref, "gmem", None) if ref.kind == "gmem" else None
        self.gmem_mode = gmem_mode
        self.backing_key = file_identity(ref)
        # RFC: guest_memfd folios are not pinned (spec §11.2). Mode 'pin'
        # (the Feb 2025 v2 RFC) pins them through the model's pin counts.
        self.gmem_pins = self.gmem is not None and gmem_mode == "pin"
        self.takes_pins = self.gmem is None or self.gmem_pins
        self._unsub = None

    def check_pinnable(self, first, end):
        kind = self.ref.kind
        if kind == "gmem":
            if self.gmem_mode not in ("rfc", "pin"):
                raise err(errno.EINVAL, "guest_memfd cannot be pinned by the "
                          "memfd pinning helper (kernel mode)")
        elif kind not in ("shmem", "hugetlb"):
            raise err(errno.EINVAL, f"file kind {kind!r} is not shmem/hugetlbfs; "
                      "the memfd pinning helper refuses it")
        # A page that starts at or beyond EOF has no folio to pin.
        if self.start + end * PAGE_SIZE > _page_up(self.ref.size()):
            raise err(errno.EINVAL, "file range extends past EOF at pin time")

    def _backing_pin(self, first, end, pin):
        if self.gmem_pins and not self.gmem.closed:
            off, n = self.start + first * PAGE_SIZE, (end - first) * PAGE_SIZE
            (self.gmem.pin if pin else self.gmem.unpin)(off, n)

    def read(self, byte, n):
        off = self.start + byte
        if self.gmem is not None:
            data = self.gmem.read(off, n)
        else:
            data = self.ref.pread(off, n)
        return bytes(data) + bytes(n - len(data))

    def write(self, byte, data):
        off = self.start + byte
        if self.gmem is not None:
            self.gmem.write(off, bytes(data))
        else:
            self.ref.pwrite(off, bytes(data))

    def free(self):
        if self._unsub is not None:
            try:
                self._unsub()
            finally:
                self._unsub = None
        close = getattr(self.ref, "close", None)
        if close is not None:
            close()


def _page_up(x: int) -> int:
    return (x + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


# --- what memory pages bytes are (MD_CHECK_MAP, ACCESS_PAGES' check_pages) ---

def runs_of(pages, byte: int, n: int):
    """Runs (start, end, key, base) of pages bytes [byte, byte + n), in the
    canonical identities of ProcessMemory.backing (start/end are offsets)."""
    key, addr = pages.backing(byte)
    if pages.kind == "user":
        try:
            runs = pages.mem.backing(addr, n)
        except OSError:
            runs = [(addr, addr + n, key, addr)]
        return [(s - addr, e - addr, k, b) for s, e, k, b in runs]
    return [(0, n, key, addr)]


def same_memory(theirs, mine, uptr: int) -> bool:
    """``theirs`` (offsets from 0) names the same bytes as ``mine`` (runs of
    the caller's addresses) from ``uptr`` on."""
    for s, e, key, base in theirs:
        cur = uptr + s
        while cur < uptr + e:
            run = next((r for r in mine if r[0] <= cur < r[1]), None)
            if run is None or run[2] != key:
                return False
            if run[3] + (cur - run[0]) != base + (cur - uptr - s):
                return False
            cur = min(run[1], uptr + e)
    return True
