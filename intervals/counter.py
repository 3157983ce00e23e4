"""The counter of the interval library, and the set it degenerates to.

Both are views of the one map (`intervals.rangemap.RangeMap`): they add no
interval logic of their own, only the names their users think in.

* `RangeCounter`: a non-negative integer per position, 0 where nothing is
  counted (a hole of the map).  `add` refuses to go below zero and returns
  the sub-ranges that crossed zero: a page pinned for the first time, or
  released by its last holder.  Pin registries and holder counts use it.
* `IntervalSet`: membership only (a position is in the set or not), adjacent
  and overlapping ranges merged.  The dirty bits of a mock IOMMU domain use it.

Costs are the map's: O(log n + k) per update, O(log n) + O(1) per run for
queries, n = runs, k = runs inside the touched range.
"""

from __future__ import annotations

from typing import Iterator, Tuple

from .rangemap import RangeMap

__all__ = ["RangeCounter", "IntervalSet"]


class RangeCounter(RangeMap):
    """Counts over ``[start, end)`` ranges: a `RangeMap` of positive ints."""

    __slots__ = ()

    def add(self, start: int, end: int, delta: int) -> list:
        """Add ``delta`` over [start, end). Returns the sub-ranges whose value
        crossed zero: for delta > 0 the ranges that went 0 -> non-zero, for
        delta < 0 the ranges that went non-zero -> 0. A count that would go
        negative raises ValueError and nothing changes."""
        return super().add(start, end, delta, floor=0)

    def count_at(self, pos: int) -> int:
        return self.get(pos, 0)

    def segments(self, start: int, end: int) -> Iterator[Tuple[int, int, int]]:
        """Yield (s, e, count) pieces tiling [start, end), 0 included."""
        for s, e, v in self.iter(start, end, holes=True):
            yield (s, e, 0 if v is None else v)

    def is_zero(self) -> bool:
        return not self


class IntervalSet:
    """Disjoint half-open intervals [s, e), adjacent ones merged."""

    __slots__ = ("_map",)

    def __init__(self) -> None:
        self._map = RangeMap()

    def add(self, start: int, end: int) -> None:
        if end > start:
            self._map.set(start, end, True)

    def remove(self, start: int, end: int) -> None:
        if end > start:
            self._map.clear(start, end)

    def overlaps(self, start: int, end: int) -> Iterator[Tuple[int, int]]:
        """Yield the clipped (s, e) pieces inside [start, end)."""
        if end > start:
            for s, e, _ in self._map.iter(start, end):
                yield (s, e)

    def clear(self) -> None:
        self._map.clear()

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        return iter([(s, e) for s, e, _ in self._map.runs()])

    def __bool__(self) -> bool:
        return bool(self._map)
