"""Small interval helpers (no per-page objects anywhere).

``RangeCounter`` is an integer step function over ``[0, inf)`` stored as a
SortedDict of breakpoints: key ``k`` -> value valid from ``k`` up to the next
key. Adding a delta over ``[start, end)`` is O(log n + k) where k is the
number of breakpoints inside the range.

``IntervalSet`` is a set of disjoint half-open ranges, merged on insert.
"""

from __future__ import annotations

from sortedcontainers import SortedDict


class RangeCounter:
    def __init__(self) -> None:
        self._d = SortedDict()   # breakpoint -> value from here on (0 default)

    def _value_at(self, x: int) -> int:
        i = self._d.bisect_right(x) - 1
        return self._d.peekitem(i)[1] if i >= 0 else 0

    def _split(self, x: int) -> None:
        if x not in self._d:
            self._d[x] = self._value_at(x)

    def add(self, start: int, end: int, delta: int):
        """Add ``delta`` over [start, end). Returns the sub-ranges whose value
        crossed zero: for delta > 0 the ranges that went 0 -> non-zero, for
        delta < 0 the ranges that went non-zero -> 0."""
        if end <= start or delta == 0:
            return []
        self._split(start)
        self._split(end)
        keys = list(self._d.irange(start, end, inclusive=(True, False)))
        crossed = []
        for i, k in enumerate(keys):
            nxt = keys[i + 1] if i + 1 < len(keys) else end
            old = self._d[k]
            new = old + delta
            if new < 0:
                raise AssertionError("RangeCounter underflow")
            self._d[k] = new
            if (old == 0) != (new == 0):
                if crossed and crossed[-1][1] == k:
                    crossed[-1] = (crossed[-1][0], nxt)
                else:
                    crossed.append((k, nxt))
        self._merge_around(start, end)
        return crossed

    def _merge_around(self, start: int, end: int) -> None:
        # Remove breakpoints that do not change the value (keeps it compact).
        keys = list(self._d.irange(start, end))
        i = self._d.bisect_left(start)
        prev = self._d.peekitem(i - 1)[1] if i > 0 else 0
        for k in keys:
            v = self._d[k]
            if v == prev:
                del self._d[k]
            else:
                prev = v

    def segments(self, start: int, end: int):
        """Yield (s, e, value) pieces covering [start, end)."""
        if end <= start:
            return
        cur = start
        val = self._value_at(start)
        for k in self._d.irange(start, end, inclusive=(False, False)):
            yield (cur, k, val)
            cur, val = k, self._d[k]
        yield (cur, end, val)

    def max(self, start: int, end: int) -> int:
        return max((v for _, _, v in self.segments(start, end)), default=0)

    def is_zero(self) -> bool:
        return all(v == 0 for v in self._d.values())


class IntervalSet:
    """Disjoint half-open intervals [s, e), adjacent ones merged."""

    def __init__(self) -> None:
        self._d = SortedDict()   # start -> end

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        i = self._d.bisect_right(start) - 1
        if i >= 0:
            s, e = self._d.peekitem(i)
            if e >= start:
                start = s
                end = max(end, e)
        for s in list(self._d.irange(start, end)):
            end = max(end, self._d.pop(s))
        self._d[start] = end

    def remove(self, start: int, end: int) -> None:
        if end <= start:
            return
        i = self._d.bisect_right(start) - 1
        if i >= 0:
            s, e = self._d.peekitem(i)
            if e > start:
                del self._d[s]
                if s < start:
                    self._d[s] = start
                if e > end:
                    self._d[end] = e
        for s in list(self._d.irange(start, end, inclusive=(True, False))):
            e = self._d.pop(s)
            if e > end:
                self._d[end] = e

    def overlaps(self, start: int, end: int):
        """Yield the clipped (s, e) pieces inside [start, end)."""
        if end <= start:
            return
        i = self._d.bisect_right(start) - 1
        keys = []
        if i >= 0:
            keys.append(self._d.peekitem(i)[0])
        keys.extend(k for k in self._d.irange(start, end, inclusive=(False, False)))
        for s in keys:
            e = self._d[s]
            if e > start and s < end:
                yield (max(s, start), min(e, end))

    def clear(self) -> None:
        self._d.clear()

    def __iter__(self):
        return iter(list(self._d.items()))

    def __bool__(self) -> bool:
        return bool(self._d)
