"""IOAS model and the IOAS-family ioctl handlers (spec §3, §4, §5).

Model (no per-page objects):

* ``Ioas.areas``: SortedDict iova -> Area; areas never overlap, so the area
  that could intersect ``[s, l]`` is found with one bisect (O(log n)).
* ``Ioas.reserved``: list of ``Reserved(start, last, owner)`` (few entries:
  apertures, device regions, ADD_RESERVED) plus a cached merged union for the
  allocator and intersection checks.
* ``Ioas.allowed``: sorted disjoint list of (start, last).
* ``Ioas.iova_alignment`` (G), recomputed like iopt_calculate_iova_alignment.
* ``Ioas.domains``: attached paging HWPTs (objects with ``min_page`` and
  ``aperture``); while at least one exists, every non-revoked area holds its
  pages (pinned, charged - see pages.py).

The automatic IOVA allocator (§4.5) is ``Ioas.alloc_iova``; windows are the
maximal runs of the allowed list (adjacent allowed ranges form one window,
as the kernel's span iterator merges them), clipped to
``[PAGE_SIZE, ULONG_MAX - PAGE_SIZE]``.

guest_memfd areas (MAP_FILE of a FileRef with kind 'gmem'): the pages object
subscribes to the guest_memfd's event hook and the IOAS's invalidation
policy (policy.py: none, revoke, invalidate, mirror, pin; IOMMU_OPTION
GMEMFS_OPTION_GMEM_POLICY per IOAS) decides what happens to the IOPTEs of
its areas on a punch or a conversion.  A revoked area leaves every domain
(DMA faults), its IOVA stays occupied and UNMAP still removes it (the
dma-buf revoke model of spec §11.3).
"""

from __future__ import annotations

import errno
import heapq
from dataclasses import dataclass

from sortedcontainers import SortedDict

from intervals import spans

from . import context as C
from .context import IommufdObject
from .errors import err
from .pages import (PAGE_SIZE, ULONG_MAX, FilePages, UserPages, _caller_has_cap,
                    make_account)
from . import policy as gmem_policy

U64_MAX = (1 << 64) - 1
SIZE_MAX = ULONG_MAX

IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0
IOMMU_IOAS_MAP_WRITEABLE = 1 << 1
IOMMU_IOAS_MAP_READABLE = 1 << 2
MAP_FLAGS = 0x7
COPY_SYZ_FLAG = 1 << 16          # test kernels only (spec §4.8 step 1)

IOMMU_OPTION_RLIMIT_MODE = 0
IOMMU_OPTION_HUGE_PAGES = 1
IOMMU_OPTION_OP_SET = 0
IOMMU_OPTION_OP_GET = 1

IOMMU_VFIO_IOAS_GET = 0
IOMMU_VFIO_IOAS_SET = 1
IOMMU_VFIO_IOAS_CLEAR = 2

HUGE_PAGE_SIZE = 2 << 20         # THP size used as the allocator cap (§4.5 step 4)


def roundup_pow2(x: int) -> int:
    return 1 << (x - 1).bit_length() if x > 1 else 1


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _merge_inclusive(ranges) -> list[tuple[int, int]]:
    """(start, last) ranges -> sorted disjoint ones, adjacent ones merged."""
    return [(s, e - 1) for s, e in spans.merge(sorted((s, l + 1) for s, l in ranges))]


def _hold_all(areas) -> None:
    """Hold (pin) every area, or none: on a failure the areas already held
    are released again."""
    done = []
    try:
        for a in areas:
            a.hold()
            done.append(a)
    except BaseException:
        for a in done:
            a.release()
        raise


@dataclass
class Reserved:
    start: int
    last: int
    owner: object


class Area:
    __slots__ = ("iova", "length", "pages", "start_byte", "readable",
                 "writable", "revoked", "held", "ioas", "locks", "accesses")

    def __init__(self, ioas, iova, length, pages, start_byte, readable, writable):
        self.ioas = ioas
        self.iova = iova
        self.length = length
        self.pages = pages
        self.start_byte = start_byte       # byte offset inside pages
        self.readable = readable
        self.writable = writable
        self.revoked = False
        self.held = False                  # holds its pages for the domains
        self.locks = 0                     # pins of internal accesses (HW queues): no UNMAP
        self.accesses = 0                  # pins of any access: no split

    @property
    def last(self) -> int:
        return self.iova + self.length - 1

    @property
    def page_offset(self) -> int:
        return self.start_byte % PAGE_SIZE

    def page_range(self):
        first = self.start_byte // PAGE_SIZE
        return first, (self.start_byte + self.length - 1) // PAGE_SIZE + 1

    def hold(self):
        if not self.held and not self.revoked:
            self.pages.hold(*self.page_range())
            self.held = True

    def release(self):
        if self.held:
            self.held = False
            self.pages.release(*self.page_range())

    def __repr__(self):
        return (f"<Area iova={self.iova:#x} len={self.length:#x} "
                f"{self.pages.kind}{' revoked' if self.revoked else ''}>")


class Ioas(IommufdObject):
    kind = C.IOAS

    def __init__(self, options=None) -> None:
        super().__init__()
        opts = options or {}
        self._areas = None     # SortedDict iova -> Area, made on first use (it costs
                               # ~2.5 us, a third of a trivial IOAS_ALLOC round trip)
        self.reserved: list[Reserved] = []
        self._resv_union: list[tuple[int, int]] = []
        self.allowed: list[tuple[int, int]] = []
        self.iova_alignment = 1
        self.disable_large_pages = False
        self.domains: list = []
        self.accesses: list = []
        self.huge_page_size = opts.get("huge_page_size", HUGE_PAGE_SIZE)

    # ------------------------------------------------------------------ query

    @property
    def areas(self) -> SortedDict:
        a = self._areas
        if a is None:
            a = self._areas = SortedDict()
        return a
    def area_at(self, iova: int):
        i = self.areas.bisect_right(iova) - 1
        if i < 0:
            return None
        a = self.areas.peekitem(i)[1]
        return a if a.last >= iova else None

    def areas_in(self, start: int, last: int):
        """Areas intersecting [start, last], ascending."""
        out = []
        first = self.area_at(start)
        if first is not None:
            out.append(first)
        for k in self.areas.irange(start, last, inclusive=(False, True)):
            out.append(self.areas[k])
        return out

    def _first_area_in(self, start: int, last: int):
        """The lowest area intersecting [start, last], or None."""
        first = self.area_at(start)
        if first is not None:
            return first
        for k in self.areas.irange(start, last, inclusive=(False, True)):
            return self.areas[k]
        return None

    def intersects_area(self, start: int, last: int) -> bool:
        i = self.areas.bisect_right(last) - 1
        return i >= 0 and self.areas.peekitem(i)[1].last >= start

    def intersects_reserved(self, start: int, last: int) -> bool:
        return any(s <= last and l >= start for s, l in self._resv_union)

    def intersects_allowed(self, start: int, last: int) -> bool:
        return any(s <= last and l >= start for s, l in self.allowed)

    def translate(self, iova: int):
        """(area, byte offset in pages) of a mapped, non-revoked IOVA."""
        a = self.area_at(iova)
        if a is None or a.revoked:
            return None
        return a, a.start_byte + (iova - a.iova)

    # ---------------------------------------------------------------- reserved
    def _rebuild_union(self) -> None:
        self._resv_union = _merge_inclusive((r.start, r.last) for r in self.reserved)

    def add_reserved(self, start: int, last: int, owner) -> None:
        if self.intersects_area(start, last) or self.intersects_allowed(start, last):
            raise err(errno.EADDRINUSE, f"reserving [{start:#x}, {last:#x}] "
                      "intersects an area or an allowed range")
        self.reserved.append(Reserved(start, last, owner))
        self._rebuild_union()

    def remove_reserved(self, owner) -> None:
        self.reserved = [r for r in self.reserved if r.owner is not owner]
        self._rebuild_union()

    def usable_ranges(self):
        """Gaps between reserved ranges over [0, ULONG_MAX] (§4.4)."""
        out = []
        cur = 0
        for s, l in self._resv_union:
            if s > cur:
                out.append((cur, s - 1))
            cur = l + 1
        if cur <= ULONG_MAX:
            out.append((cur, ULONG_MAX))
        return out

    def set_allowed(self, ranges) -> None:
        for s, l in ranges:
            if self.intersects_reserved(s, l):
                raise err(errno.EADDRINUSE, "allowed range intersects a "
                          "reserved range")
        self.allowed = sorted(ranges)

    # --------------------------------------------------------------- alignment
    def _wanted_alignment(self, extra_domains=(), extra_accesses=()) -> int:
        g = PAGE_SIZE if self.disable_large_pages else 1
        for d in list(self.domains) + list(extra_domains):
            g = max(g, d.min_page)
        for a in list(self.accesses) + list(extra_accesses):
            g = max(g, a.iova_alignment)
        return g

    def _check_alignment(self, g: int) -> None:
        m = g - 1
        for a in self.areas.values():
            if (a.iova & m) or (a.length & m) or (a.page_offset & m):
                raise err(errno.EADDRINUSE, f"{a!r} is not aligned to the new "
                          f"IOVA alignment {g:#x}")

    def add_access(self, acc) -> None:
        """iopt_add_access: the access's alignment joins the IOAS's (areas
        that no longer fit -> EADDRINUSE, nothing changed)."""
        g = self._wanted_alignment(extra_accesses=(acc,))
        if g > self.iova_alignment:
            self._check_alignment(g)
        self.accesses.append(acc)
        self.iova_alignment = g

    def remove_access(self, acc) -> None:
        self.accesses.remove(acc)
        self.iova_alignment = self._wanted_alignment()       # shrinking never fails

    def _notify_accesses(self, a) -> None:
        """Before an area goes (UNMAP, revoke): every access that pinned part
        of it is told to unpin (iommufd_access_notify_unmap)."""
        for acc in list(self.accesses):
            acc.notify_unmap(a.iova, a.last)

    def recalc_alignment(self) -> None:
        g = self._wanted_alignment()
        if g > self.iova_alignment:
            self._check_alignment(g)
        self.iova_alignment = g

    # ------------------------------------------------------------- allocator
    def _used_spans(self, lo: int, hi: int):
        """Merged spans of reserved ∪ areas intersecting [lo, hi]."""
        resv = ((s, l) for s, l in self._resv_union if l >= lo and s <= hi)
        areas = ((a.iova, a.last) for a in self.areas_in(lo, hi))
        cur = None
        for s, l in heapq.merge(resv, areas):
            if cur is not None and s <= cur[1] + 1:
                if l > cur[1]:
                    cur[1] = l
                continue
            if cur is not None:
                yield tuple(cur)
            cur = [s, l]
        if cur is not None:
            yield tuple(cur)

    def holes(self, lo: int, hi: int):
        cur = lo
        for s, l in self._used_spans(lo, hi):
            if s > cur:
                yield (cur, min(s - 1, hi))
            cur = max(cur, l + 1)
            if cur > hi:
                return
        if cur <= hi:
            yield (cur, hi)

    def windows(self):
        lo, hi = PAGE_SIZE, ULONG_MAX - PAGE_SIZE
        if not self.allowed:
            return [(lo, hi)]
        merged = _merge_inclusive(self.allowed)
        out = []
        for s, l in merged:
            s, l = max(s, lo), min(l, hi)
            if s <= l:
                out.append((s, l))
        return out

    def alloc_iova(self, length: int, addr: int) -> int:
        """Spec §4.5, step by step."""
        if length == 0 or length >= ULONG_MAX // 2:
            raise err(errno.EOVERFLOW, "length too large for automatic IOVA")
        off = addr % PAGE_SIZE
        a = roundup_pow2(length)
        if addr != 0:
            a = min(a, addr & -addr)
        if a >= self.huge_page_size:
            a = self.huge_page_size
        if a < self.iova_alignment:
            raise err(errno.EINVAL, f"source alignment {a:#x} below IOVA "
                      f"alignment {self.iova_alignment:#x}")
        for ws, wl in self.windows():
            c = align_up(ws, a)
            if c > ULONG_MAX:
                continue
            c |= off
            if c >= wl or wl - c < length - 1:
                continue
            for hs, hl in self.holes(c, wl):
                c2 = align_up(hs, a)
                if c2 > ULONG_MAX:
                    continue
                c2 |= off
                if c2 < hl and hl - c2 >= length - 1:
                    return c2
        raise err(errno.ENOSPC, f"no free IOVA range of length {length:#x}")

    def check_iova(self, iova: int, length: int) -> None:
        if iova & (self.iova_alignment - 1):
            raise err(errno.EINVAL, f"iova {iova:#x} not aligned to "
                      f"{self.iova_alignment:#x}")
        last = iova + length - 1
        if last > ULONG_MAX:
            raise err(errno.EOVERFLOW, "iova + length overflows")
        if self.intersects_reserved(iova, last):
            raise err(errno.EINVAL, f"[{iova:#x}, {last:#x}] intersects a "
                      "reserved range")
        if self.intersects_area(iova, last):
            raise err(errno.EEXIST, f"[{iova:#x}, {last:#x}] intersects an "
                      "existing area")

    # ----------------------------------------------------------------- map
    def map_pages(self, pieces, length: int, iova: int, fixed: bool,
                  readable: bool, writable: bool) -> int:
        """Insert one area per piece (pages, start_byte, length), contiguous
        from ``iova`` (or an allocated IOVA). Returns the IOVA."""
        g = self.iova_alignment
        if length % g or not length:
            raise err(errno.EINVAL, f"length {length:#x} not a multiple of "
                      f"the IOVA alignment {g:#x}")
        if fixed:
            self.check_iova(iova, length)
        else:
            pages0, sb0, _ = pieces[0]
            iova = self.alloc_iova(length, pages0.start + sb0)
        new = []
        cur = iova
        for pages, start_byte, plen in pieces:
            if writable and not pages.writable:
                raise err(errno.EPERM, "WRITEABLE requested on read-only pages")
            if (start_byte % PAGE_SIZE) & (g - 1):
                raise err(errno.EINVAL, "source page offset not a multiple of "
                          f"the IOVA alignment {g:#x}")
            new.append(Area(self, cur, plen, pages, start_byte, readable, writable))
            cur += plen
        gmem_policy.check_map(self, new)
        if self.domains:
            _hold_all(new)
        for a in new:
            self.areas[a.iova] = a
            a.pages.refs += 1
            a.pages.areas.add(a)
        for d in self.domains:
            d.on_map(new)
        gmem_policy.on_map(self, new)
        return iova

    def get_pieces(self, iova: int, length: int):
        """Pieces covering [iova, iova+length) with no hole (COPY, access)."""
        if not length:
            raise err(errno.EINVAL, "length is 0")
        last = iova + length - 1
        if last > ULONG_MAX:
            raise err(errno.EOVERFLOW, "range end overflows")
        pieces = []
        cur = iova
        while True:
            a = self.area_at(cur)
            if a is None:
                raise err(errno.ENOENT, f"IOVA {cur:#x} is not mapped")
            end = min(last, a.last)
            pieces.append((a, cur, end))
            if end == last:
                return pieces
            cur = end + 1

    # ---------------------------------------------------------------- unmap
    def _remove_area(self, a: Area) -> None:
        self._notify_accesses(a)
        for d in self.domains:
            d.on_unmap(a)
        gmem_policy.on_area_gone(a)
        a.release()
        del self.areas[a.iova]
        p = a.pages
        p.refs -= 1
        p.areas.discard(a)
        if p.refs == 0:
            p.free()

    def unmap_walk(self, start: int, last: int):
        """iopt_unmap_iova_range: remove the whole areas inside [start, last]
        in ascending order. Returns (bytes removed, error or None): an area
        locked by an internal access stops the walk with EBUSY, one sticking
        out of the range with ENOENT, after the areas before it are gone."""
        removed = 0
        while True:
            a = self._first_area_in(start, last)    # O(log n): no list of all of them
            if a is None:
                return removed, None
            if a.locks:
                return removed, err(errno.EBUSY, f"{a!r} is locked by a HW queue")
            if a.iova < start or a.last > last:
                return removed, err(errno.ENOENT, f"{a!r} is not fully inside the range")
            self._remove_area(a)
            removed += a.length

    def unmap(self, start: int, last: int) -> int:
        """Whole-area unmap with the kernel's partial effect (§4.9); nothing
        removed is ENOENT (ioas.c)."""
        removed, e = self.unmap_walk(start, last)
        if e is not None:
            raise e
        if not removed:
            raise err(errno.ENOENT, "nothing mapped in the range")
        return removed

    def unmap_all(self) -> int:
        removed, e = self.unmap_walk(0, ULONG_MAX)
        if e is not None:
            raise e
        return removed

    # ------------------------------------------------------------- split
    def split_at(self, iova: int) -> None:
        """iopt_area_split (io_pagetable.c) for iopt_cut_iova: make ``iova``
        the last byte of an area. Nothing to do outside areas or at an area's
        edge; a revoked area EOPNOTSUPP (like a dma-buf); the new start and
        its source offset must be multiples of the IOVA alignment (EINVAL);
        an area with access pins EINVAL; an area whose pages a domain holds,
        unless huge pages are disabled (the domain then has no IOPTE larger
        than PAGE_SIZE), EINVAL."""
        a = self.area_at(iova)
        if a is None or iova == a.iova or iova == a.last:
            return
        if a.revoked:
            raise err(errno.EOPNOTSUPP, f"{a!r} is revoked")
        g = self.iova_alignment
        cut = iova + 1 - a.iova
        if (iova + 1) & (g - 1) or (a.start_byte + cut) & (g - 1):
            raise err(errno.EINVAL, f"cannot split {a!r} at {iova + 1:#x}: alignment {g:#x}")
        if a.accesses:
            raise err(errno.EINVAL, f"{a!r} has access pins")
        if a.held and not self.disable_large_pages:
            raise err(errno.EINVAL, f"{a!r} may be mapped with huge pages")
        lhs = Area(self, a.iova, cut, a.pages, a.start_byte, a.readable, a.writable)
        rhs = Area(self, iova + 1, a.length - cut, a.pages, a.start_byte + cut,
                   a.readable, a.writable)
        if a.held:
            _hold_all((lhs, rhs))           # the pins stay: holders +1 then -1
            a.release()
        p = a.pages
        p.areas.discard(a)
        p.areas.update((lhs, rhs))
        p.refs += 1
        self.areas[lhs.iova] = lhs
        self.areas[rhs.iova] = rhs
        # guest_memfd IOPTE runs (policy.py) are kept by IOVA: unchanged

    # ------------------------------------------------------------- accesses
    def access_pin(self, iova: int, length: int, write: bool, lock: bool):
        """iommufd_access_pin_pages for an access attached to this IOAS:
        [iova, iova + length) covered by contiguous areas (ENOENT), each piece
        starting on a page of its source and interior area ends ending one
        (EINVAL), readable / writable (EPERM); the pages are held (pinned and
        charged) and the areas counted (locked too for an internal access:
        UNMAP EBUSY). Returns the token for access_unpin."""
        if not length:
            raise err(errno.EINVAL, "length is 0")
        last = iova + length - 1
        if last > ULONG_MAX:
            raise err(errno.EOVERFLOW, "iova + length overflows")
        pieces = self.get_pieces(iova, length)
        token = []
        try:
            for a, s, e in pieces:
                if a.revoked:
                    raise err(errno.EINVAL, f"{a!r} is revoked")
                b0 = a.start_byte + (s - a.iova)
                if b0 % PAGE_SIZE or (e < last and (a.start_byte + (e - a.iova)) % PAGE_SIZE
                                      != PAGE_SIZE - 1):
                    raise err(errno.EINVAL, "access range not page aligned in the source")
                if not (a.writable if write else a.readable):
                    raise err(errno.EPERM, f"{a!r} is not {'writ' if write else 'read'}able")
                first = b0 // PAGE_SIZE
                end = (a.start_byte + (e - a.iova)) // PAGE_SIZE + 1
                a.pages.hold(first, end)
                a.accesses += 1
                a.locks += bool(lock)
                token.append((a, first, end, bool(lock)))
        except BaseException:
            self.access_unpin(token)
            raise
        return token

    def access_unpin(self, token) -> None:
        for a, first, end, lock in token:
            a.pages.release(first, end)
            a.accesses -= 1
            a.locks -= lock

    def pins_contiguous(self, token) -> bool:
        """Would the pinned pages be physically contiguous (the HW queue rule)?
        One page always is; more only inside one huge page of a hugetlbfs
        file (the emulator knows no physical addresses of anything else)."""
        npages = sum(end - first for _, first, end, _ in token)
        if npages <= 1:
            return True
        if len(token) != 1:
            return False
        a, first, end, _ = token[0]
        if getattr(getattr(a.pages, "ref", None), "kind", None) != "hugetlb":
            return False
        huge = 512                          # 2 MiB of 4 KiB pages
        base = a.pages.start // PAGE_SIZE
        return (base + first) // huge == (base + end - 1) // huge

    def disable_large_pages_set(self, disable: bool) -> None:
        """IOMMU_OPTION_HUGE_PAGES / VFIO_SET_IOMMU(TYPE1): iopt_disable_large_pages
        refuses (EINVAL) while a domain holds mappings and raises the alignment
        to PAGE_SIZE (EADDRINUSE for a misaligned area, unchanged then);
        iopt_enable_large_pages always succeeds."""
        if not disable:
            self.disable_large_pages = False
            self.recalc_alignment()
            return
        if self.disable_large_pages:
            return
        if self.domains and self.areas:
            raise err(errno.EINVAL, "domain with mappings present")
        self.disable_large_pages = True
        try:
            self.recalc_alignment()
        except BaseException:
            self.disable_large_pages = False
            raise

    # --------------------------------------------------------------- domains
    def attach_domain(self, dom) -> None:
        """iopt_table_add_domain: alignment, aperture reservations, fill."""
        g = max(dom.min_page, self.iova_alignment)
        if g > PAGE_SIZE:
            raise err(errno.EINVAL, "domain page size above PAGE_SIZE")
        if g != self.iova_alignment:
            self._check_alignment(g)
        ap_start, ap_last = dom.aperture
        try:
            if ap_start != 0:
                self.add_reserved(0, ap_start - 1, dom)
            if ap_last != ULONG_MAX:
                self.add_reserved(ap_last + 1, ULONG_MAX, dom)
            if not self.domains:
                _hold_all(self.areas.values())
        except BaseException:
            self.remove_reserved(dom)
            raise
        self.iova_alignment = g
        self.domains.append(dom)

    def detach_domain(self, dom) -> None:
        self.domains.remove(dom)
        if not self.domains:
            for a in self.areas.values():
                a.release()
        self.remove_reserved(dom)
        g = self._wanted_alignment()
        self.iova_alignment = g       # shrinking never fails

    # ---------------------------------------------------------------- revoke
    def revoke_area(self, a: Area) -> None:
        if a.revoked:
            return
        self._notify_accesses(a)
        for d in self.domains:
            d.on_unmap(a)
        a.release()
        a.revoked = True
        gmem_policy.on_area_gone(a)

    # --------------------------------------------------------------- destroy
    def destroy(self) -> None:
        if self._areas:
            for a in list(self._areas.values()):
                self._remove_area(a)
        self.reserved.clear()
        self._resv_union = []
        self.allowed = []


# ===========================================================================
# ioctl handlers
# ===========================================================================

def _reserved(cmd):
    return getattr(cmd, "__reserved")


def h_ioas_alloc(ctx, cmd, ucmd):
    if cmd.flags:
        raise err(errno.EOPNOTSUPP, "IOAS_ALLOC: flags must be 0")
    ioas = Ioas(ctx.options)
    cmd.out_ioas_id = ctx.add(ioas)
    ucmd.respond()
    return 0


def _read_ranges(caller, uptr: int, n: int):
    """Read n iommu_iova_range entries; yields (start, last); EFAULT."""
    CH = 4096
    for base in range(0, n, CH):
        cnt = min(CH, n - base)
        try:
            blob = caller.read(uptr + base * 16, cnt * 16)
        except OSError:
            blob = None
        for i in range(cnt):
            if blob is None:
                e = caller.read(uptr + (base + i) * 16, 16)
            else:
                e = blob[i * 16:(i + 1) * 16]
            yield (int.from_bytes(e[0:8], "little"), int.from_bytes(e[8:16], "little"))


def h_allow_iovas(ctx, cmd, ucmd):
    if _reserved(cmd):
        raise err(errno.EOPNOTSUPP, "ALLOW_IOVAS: __reserved must be 0")
    ioas = ctx.lookup(cmd.ioas_id, C.IOAS)
    ranges: list[tuple[int, int]] = []
    for s, l in _read_ranges(ucmd.caller, cmd.allowed_iovas, cmd.num_iovas):
        if s >= l:
            raise err(errno.EINVAL, f"allowed range start {s:#x} >= last {l:#x}")
        if any(s <= rl and l >= rs for rs, rl in ranges):
            raise err(errno.EINVAL, "allowed ranges overlap")
        ranges.append((s, l))
    ioas.set_allowed(ranges)
    return 0


def h_iova_ranges(ctx, cmd, ucmd):
    if _reserved(cmd):
        raise err(errno.EOPNOTSUPP, "IOVA_RANGES: __reserved must be 0")
    ioas = ctx.lookup(cmd.ioas_id, C.IOAS)
    ranges = ioas.usable_ranges()
    cap = cmd.num_iovas
    out = b"".join(s.to_bytes(8, "little") + l.to_bytes(8, "little")
                   for s, l in ranges[:cap])
    if out:
        ucmd.caller.write(cmd.allowed_iovas, out)
    cmd.num_iovas = len(ranges)
    cmd.out_iova_alignment = ioas.iova_alignment
    ucmd.respond()
    if len(ranges) > cap:
        raise err(errno.EMSGSIZE, f"{len(ranges)} ranges, room for {cap}")
    return 0


def _common_map_checks(flags: int, iova: int, length: int):
    if iova == U64_MAX or length == U64_MAX:
        raise err(errno.EOVERFLOW, "iova/length is U64_MAX")
    if not flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE):
        raise err(errno.EINVAL, "neither READABLE nor WRITEABLE")


def h_map(ctx, cmd, ucmd):
    flags = cmd.flags
    if flags & ~MAP_FLAGS or _reserved(cmd):
        raise err(errno.EOPNOTSUPP, "MAP: unknown flags or __reserved set")
    _common_map_checks(flags, cmd.iova, cmd.length)
    ioas = ctx.lookup(cmd.ioas_id, C.IOAS)
    cmd.iova = map_user(ctx, ioas, ucmd.caller, cmd.user_va, cmd.length, cmd.iova,
                        bool(flags & IOMMU_IOAS_MAP_FIXED_IOVA),
                        bool(flags & IOMMU_IOAS_MAP_READABLE),
                        bool(flags & IOMMU_IOAS_MAP_WRITEABLE))
    ucmd.respond()
    return 0


def map_user(ctx, ioas, caller, uva: int, length: int, iova: int, fixed: bool,
             readable: bool, writable: bool) -> int:
    """iopt_map_user_pages: user_va + length overflow (EOVERFLOW), length 0
    or > SIZE_MAX - PAGE_SIZE (EINVAL), then the area at ``iova`` (or an
    allocated one); IOMMU_IOAS_MAP and VFIO_IOMMU_MAP_DMA share it."""
    if uva + length > ULONG_MAX:
        raise err(errno.EOVERFLOW, "user_va + length overflows")
    if length == 0 or length > SIZE_MAX - PAGE_SIZE:
        raise err(errno.EINVAL, "bad length")
    mem = caller.memory()
    pages = UserPages(ctx.system, uva, length, writable, make_account(ctx, caller), mem)
    pages.owns_mem = True
    return _map_new_pages(ioas, pages, uva - pages.start, length, iova, fixed,
                          readable, writable)


def h_map_file(ctx, cmd, ucmd):
    flags = cmd.flags
    if flags & ~MAP_FLAGS:
        raise err(errno.EOPNOTSUPP, "MAP_FILE: unknown flags")
    _common_map_checks(flags, cmd.iova, cmd.length)
    ioas = ctx.lookup(cmd.ioas_id, C.IOAS)
    start, length = cmd.start, cmd.length
    if length == 0:
        raise err(errno.EINVAL, "length is 0")
    if start + length - 1 > ULONG_MAX:
        raise err(errno.EOVERFLOW, "start + length overflows")
    caller = ucmd.caller
    ref = caller.get_file(cmd.fd)                  # EBADF
    writable = bool(flags & IOMMU_IOAS_MAP_WRITEABLE)
    try:
        # Spec §12.1: WRITEABLE on a file not open for writing -> EPERM. We
        # enforce it: DMA writes reach the file through the server's fd.
        if writable and not getattr(ref, "writable", True):
            raise err(errno.EPERM, "WRITEABLE map of a file not open for write")
        pages = FilePages(ctx.system, ref, start, length, writable,
                          make_account(ctx, caller),
                          _gmem_map_mode(ctx, ioas, ref))
    except BaseException:
        ref.close()
        raise
    iova = _map_new_pages(ioas, pages, start - pages.start, length, cmd.iova,
                          bool(flags & IOMMU_IOAS_MAP_FIXED_IOVA),
                          bool(flags & IOMMU_IOAS_MAP_READABLE), writable)
    if pages.gmem is not None:
        _subscribe_gmem(ctx, pages)
    cmd.iova = iova
    ucmd.respond()
    return 0


def _map_new_pages(ioas, pages, offset: int, length: int, iova: int, fixed: bool,
                   readable: bool, writable: bool) -> int:
    """MAP / MAP_FILE / MAP_DMA: ``length`` bytes of a new pages object from
    ``offset`` as one area at ``iova`` (or an allocated one); returns the
    IOVA. A pages object that no area took is freed."""
    try:
        return ioas.map_pages([(pages, offset, length)], length, iova, fixed,
                              readable, writable)
    except BaseException:
        if pages.refs == 0:
            pages.free()
        raise


def _gmem_map_mode(ctx, ioas, ref) -> str:
    """'rfc' (no pin), 'pin' (the pin policy, or the gmem_map option) or
    'kernel' (EINVAL at pin time, today's kernel)."""
    mode = ctx.options.get("gmem_map", "rfc")
    if mode == "rfc" and getattr(ref, "kind", None) == "gmem" and \
            gmem_policy.policy_of(ioas) == "pin":
        return "pin"
    return mode


def _revoke_area(a: Area) -> None:
    """The revoke hook the invalidation policy is handed."""
    a.ioas.revoke_area(a)


def _subscribe_gmem(ctx, pages) -> None:
    """The protective notifier: the guest_memfd tells this pages object about
    punches and conversions; the IOAS policies decide (policy.py)."""
    def on_event(event):
        gmem_policy.gmem_event(ctx, pages, event, _revoke_area)

    gmem = pages.gmem
    ret = gmem.subscribe(on_event)
    if hasattr(gmem, "unsubscribe"):
        pages._unsub = lambda: gmem.unsubscribe(on_event)
    elif callable(ret) and ret is not on_event:
        pages._unsub = ret


def h_copy(ctx, cmd, ucmd):
    flags = cmd.flags
    src_iova = cmd.src_iova
    if ctx.test_kernel and flags & COPY_SYZ_FLAG:
        flags &= ~COPY_SYZ_FLAG
        syz = True
    else:
        syz = False
    if flags & ~MAP_FLAGS:
        raise err(errno.EOPNOTSUPP, "COPY: unknown flags")
    if U64_MAX in (cmd.length, src_iova, cmd.dst_iova):
        raise err(errno.EOVERFLOW, "length/src_iova/dst_iova is U64_MAX")
    if not flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE):
        raise err(errno.EINVAL, "neither READABLE nor WRITEABLE")
    src = ctx.lookup(cmd.src_ioas_id, C.IOAS)
    if syz:
        src_iova = syz_iova(src, src_iova)
    length = cmd.length
    src_pieces = src.get_pieces(src_iova, length)
    dst = ctx.lookup(cmd.dst_ioas_id, C.IOAS)
    pieces = [(a.pages, a.start_byte + (s - a.iova), e - s + 1)
              for a, s, e in src_pieces]
    iova = dst.map_pages(pieces, length, cmd.dst_iova,
                         bool(flags & IOMMU_IOAS_MAP_FIXED_IOVA),
                         bool(flags & IOMMU_IOAS_MAP_READABLE),
                         bool(flags & IOMMU_IOAS_MAP_WRITEABLE))
    cmd.dst_iova = iova
    ucmd.respond()
    return 0


def syz_iova(ioas: Ioas, v: int) -> int:
    """Syzkaller form {u32 nth_area, u32 offset} -> IOVA (0 if no such area)."""
    nth, offset = v & 0xFFFFFFFF, v >> 32
    if nth >= len(ioas.areas):
        return 0
    a = ioas.areas.peekitem(nth)[1]
    return a.iova + offset


def h_unmap(ctx, cmd, ucmd):
    ioas = ctx.lookup(cmd.ioas_id, C.IOAS)
    iova, length = cmd.iova, cmd.length
    if iova == 0 and length == U64_MAX:
        cmd.length = ioas.unmap_all()
    else:
        if iova == U64_MAX or length == U64_MAX:
            raise err(errno.EOVERFLOW, "iova/length is U64_MAX")
        if length == 0:
            raise err(errno.EINVAL, "length is 0")
        if iova + length - 1 > ULONG_MAX:
            raise err(errno.EOVERFLOW, "iova + length overflows")
        cmd.length = ioas.unmap(iova, iova + length - 1)
    ucmd.respond()
    return 0


def h_option(ctx, cmd, ucmd):
    if _reserved(cmd):
        raise err(errno.EOPNOTSUPP, "OPTION: __reserved must be 0")
    if cmd.option_id == IOMMU_OPTION_RLIMIT_MODE:
        if cmd.object_id:
            raise err(errno.EOPNOTSUPP, "RLIMIT_MODE is context global")
        if cmd.op == IOMMU_OPTION_OP_GET:
            cmd.val64 = 1 if ctx.account_mode == "mm" else 0
        elif cmd.op == IOMMU_OPTION_OP_SET:
            if not _caller_has_cap(ucmd.caller, "CAP_SYS_RESOURCE"):
                raise err(errno.EPERM, "RLIMIT_MODE SET needs CAP_SYS_RESOURCE")
            if len(ctx):
                raise err(errno.EBUSY, "context already has objects")
            if cmd.val64 == 0:
                ctx.account_mode = "user"
            elif cmd.val64 == 1:
                ctx.account_mode = "mm"
            else:
                raise err(errno.EINVAL, "RLIMIT_MODE value must be 0 or 1")
        else:
            raise err(errno.EOPNOTSUPP, "unknown option op")
    elif cmd.option_id == gmem_policy.GMEMFS_OPTION_GMEM_POLICY:
        ioas = ctx.lookup(cmd.object_id, C.IOAS)
        st = gmem_policy.state(ioas)
        if cmd.op == IOMMU_OPTION_OP_GET:
            cmd.val64 = gmem_policy.policy_id(st)
        elif cmd.op == IOMMU_OPTION_OP_SET:
            gmem_policy.set_policy(st, cmd.val64, ioas.areas.values())
        else:
            raise err(errno.EOPNOTSUPP, "unknown option op")
    elif cmd.option_id == IOMMU_OPTION_HUGE_PAGES:
        ioas = ctx.lookup(cmd.object_id, C.IOAS)
        if cmd.op == IOMMU_OPTION_OP_GET:
            cmd.val64 = 0 if ioas.disable_large_pages else 1
        elif cmd.op == IOMMU_OPTION_OP_SET:
            if cmd.val64 in (0, 1):
                ioas.disable_large_pages_set(cmd.val64 == 0)
            else:
                raise err(errno.EINVAL, "HUGE_PAGES value must be 0 or 1")
        else:
            raise err(errno.EOPNOTSUPP, "unknown option op")
    else:
        raise err(errno.EOPNOTSUPP, f"unknown option {cmd.option_id}")
    ucmd.write_back(16, 8)          # only val64 (§2.4)
    return 0


def h_vfio_ioas(ctx, cmd, ucmd):
    if _reserved(cmd):
        raise err(errno.EOPNOTSUPP, "VFIO_IOAS: __reserved must be 0")
    if cmd.op == IOMMU_VFIO_IOAS_GET:
        if ctx.vfio_ioas is None:
            raise err(errno.ENODEV, "no compat IOAS")
        cmd.ioas_id = ctx.vfio_ioas.id
        ucmd.respond()
    elif cmd.op == IOMMU_VFIO_IOAS_SET:
        ctx.vfio_ioas = ctx.lookup(cmd.ioas_id, C.IOAS)
    elif cmd.op == IOMMU_VFIO_IOAS_CLEAR:
        ctx.vfio_ioas = None
    else:
        raise err(errno.EOPNOTSUPP, "unknown VFIO_IOAS op")
    return 0


def h_change_process(ctx, cmd, ucmd):
    if _reserved(cmd):
        raise err(errno.EOPNOTSUPP, "CHANGE_PROCESS: __reserved must be 0")
    pages_set = {}
    for ioas in ctx.objects(C.IOAS):
        for a in ioas.areas.values():
            if a.pages.kind != "file":
                raise err(errno.EINVAL, "CHANGE_PROCESS: an area is not file "
                          "backed")
            pages_set[id(a.pages)] = a.pages
    if not pages_set:
        return 0
    caller = ucmd.caller
    new_acct = make_account(ctx, caller)
    sysm = ctx.system
    done = []
    try:
        for p in pages_set.values():
            sysm.charge(new_acct, p.charged)
            done.append(p)
    except BaseException:
        for p in done:
            sysm.uncharge(new_acct, p.charged)
        raise
    for p in pages_set.values():
        sysm.uncharge(p.account, p.charged)
        p.account = new_acct
    return 0
