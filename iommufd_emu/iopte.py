"""Explicit IOPTEs of guest_memfd-backed areas, as interval runs.

`IoptTable` is the I/O page table of one IOAS for its guest_memfd areas (every
domain of an IOAS translates the same areas, so one table serves them all).
It is an `intervals.RangeMap` keyed by IOVA whose values are `Iopte`
tuples; a run ``[s, e) -> Iopte(size, kind, gmem, delta, epoch)`` stands for
``(e - s) / size`` IOPTEs of that size: no per-page objects, a 1 TiB area is
one run until something splits it.

* ``size``: `SMALL` (4 KiB) or `HUGE` (2 MiB).  A run of HUGE entries is
  always 2 MiB aligned in IOVA.
* ``kind``: ``'shared'`` or ``'private'`` -- which kind of IOPTE it is (on
  tdx/cca the IOVA half, on snp/none the page state it was written for).
* ``gmem``: the `GuestMemfd` it reaches; ``delta = iova - gmem offset`` (one
  value per area, so adjacent runs of one area merge).
* ``epoch``: the guest_memfd's punch counter when the IOPTE was written.  A
  page punched later has a larger punch epoch: the IOPTE then reaches memory
  that has left the file (use-after-free).

Two operations change the table; both keep the sizes right and count, per
2 MiB window, every split (a window held one HUGE IOPTE and now holds 4 KiB
ones) and every merge (a window held 4 KiB IOPTEs and now holds one HUGE):

* `remove(s, e, pred)`: drop the IOPTEs of ``[s, e)`` (those whose value
  matches ``pred``); what stays of a HUGE IOPTE becomes 4 KiB ones.
* `rewrite(s, e, desired, ...)`: replace ``[s, e)`` by the given presence
  runs, choosing HUGE wherever a whole 2 MiB window is one uniform run with
  a 2 MiB aligned ``delta`` inside the area.
"""

from __future__ import annotations

from typing import Callable, Iterable, List, NamedTuple, Optional, Tuple

from intervals import RangeMap, spans

SMALL = 4096
HUGE = 2 << 20


class Iopte(NamedTuple):
    size: int
    kind: str
    gmem: object
    delta: int
    epoch: int


def _down(x: int) -> int:
    return x // HUGE * HUGE


def _up(x: int) -> int:
    return -(-x // HUGE) * HUGE


def _windows_touched(runs: Iterable[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Merged window-aligned spans of the windows that the runs touch."""
    return spans.merge((_down(s), _up(e)) for s, e in runs)


def _count_windows(windows: List[Tuple[int, int]], touching: List[Tuple[int, int]]) -> Tuple[int, Optional[int]]:
    """How many 2 MiB windows of the (window-aligned) ``windows`` intersect
    ``touching``; and the first such window."""
    hit = spans.intersect(windows, _windows_touched(touching))
    n = sum((e - s) // HUGE for s, e in hit)
    return n, (hit[0][0] if hit else None)


class IoptTable:
    """IOPTE runs of one IOAS (see the module docstring)."""

    def __init__(self) -> None:
        self.map = RangeMap()

    # ------------------------------------------------------------ queries
    def runs(self, start: Optional[int] = None, end: Optional[int] = None, holes: bool = False):
        return self.map.runs(start, end, holes)

    def iter(self, start: int, end: int, holes: bool = False):
        return self.map.iter(start, end, holes)

    def __len__(self) -> int:
        return len(self.map)

    def counts(self) -> dict:
        huge = small = 0
        for s, e, v in self.map.iter():
            if v.size == HUGE:
                huge += (e - s) // HUGE
            else:
                small += (e - s) // SMALL
        return {"huge": huge, "small": small, "runs": len(self.map)}

    def _spans(self, s: int, e: int, size: int) -> List[Tuple[int, int]]:
        return spans.merge((a, b) for a, b, v in self.map.iter(_down(s), _up(e)) if v.size == size)

    # ------------------------------------------------------------ updates
    def clear(self, s: int, e: int) -> None:
        """Drop everything in [s, e) without split accounting (unmap/revoke of
        whole areas: HUGE runs never cross an area boundary)."""
        self.map.clear(s, e)

    def remove(self, s: int, e: int, pred: Optional[Callable[[Iopte], bool]] = None
               ) -> Tuple[int, int, Optional[int]]:
        """Remove the IOPTEs in [s, e) (matching ``pred``).

        Returns ``(bytes removed, splits, first split window)``.
        """
        victims = [(a, b, v) for a, b, v in self.map.iter(s, e) if pred is None or pred(v)]
        if not victims:
            return 0, 0, None
        huge_hit = []
        for a, b, v in victims:
            if v.size == HUGE:
                huge_hit.append((_down(a), _up(b)))
        huge_hit = spans.merge(huge_hit)
        old_huge = self._spans(s, e, HUGE)
        removed = 0
        for a, b, v in victims:
            self.map.clear(a, b)
            removed += b - a
        # what stays of a HUGE IOPTE that lost pages becomes 4 KiB IOPTEs
        remain = []
        for ws, we in huge_hit:
            for a, b, v in self.map.runs(ws, we):
                if v.size == HUGE:
                    remain.append((a, b))
                    self.map.set(a, b, v._replace(size=SMALL))
        splits, first = _count_windows(spans.intersect(old_huge, huge_hit), remain)
        return removed, splits, first

    def rewrite(self, s: int, e: int, desired: Iterable[Tuple[int, int, str, object]],
                gmem, delta: int, epoch: int, area_start: int, area_end: int
                ) -> Tuple[int, int, Optional[int], int, Optional[int]]:
        """Replace [s, e) by ``desired`` presence runs ``(a, b, kind, state)``
        (sorted, inside [s, e)); ``state`` is what the pages are (uniformity
        decides HUGE).  ``[area_start, area_end)`` bounds where HUGE may be.

        Returns ``(changed, splits, first split window, merges, first
        merge window)``.
        """
        old_huge = self._spans(s, e, HUGE)
        old_small = [(a, b) for a, b, v in self.map.iter(_down(s), _up(e)) if v.size == SMALL]
        new_runs = []
        aligned = delta % HUGE == 0
        merged: List[list] = []
        for a, b, kind, state in desired:
            if merged and merged[-1][1] == a and merged[-1][2:] == [kind, state]:
                merged[-1][1] = b
            elif b > a:
                merged.append([a, b, kind, state])
        for a, b, kind, state in merged:
            hs, he = (_up(max(a, area_start)), _down(min(b, area_end))) if aligned else (0, 0)
            val = Iopte(SMALL, kind, gmem, delta, epoch)
            if hs < he:
                if a < hs:
                    new_runs.append((a, hs, val))
                new_runs.append((hs, he, val._replace(size=HUGE)))
                if he < b:
                    new_runs.append((he, b, val))
            else:
                new_runs.append((a, b, val))
        before = self.map.runs(s, e)
        self.map.clear(s, e)
        for a, b, v in new_runs:
            self.map.set(a, b, v)
        changed = before != self.map.runs(s, e)
        new_huge = self._spans(s, e, HUGE)
        new_small = [(a, b) for a, b, v in self.map.iter(_down(s), _up(e)) if v.size == SMALL]
        splits, split_at = _count_windows(spans.subtract(old_huge, new_huge), new_small)
        merges, merge_at = _count_windows(spans.subtract(new_huge, old_huge), old_small)
        return changed, splits, split_at, merges, merge_at
