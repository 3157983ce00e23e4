"""The map of the interval library: half-open integer ranges to values.

`RangeMap` maps ranges ``[start, end)`` of integers (bytes or page indices, the
map does not care) to values.  It stores *runs*: maximal ranges with one
value.  A position with no value is a *hole*; ``None`` is never stored, so
``set(s, e, None)`` punches a hole.  Two adjacent runs never carry equal
values (they are merged on every update), so the number of runs is the number
of value changes, whatever the history.

Storage is a ``sortedcontainers.SortedDict`` ``start -> (end, value)``.  There
are no per-position objects: a 1 TiB range with one value is one entry.

Costs, with n = number of runs and k = runs inside the touched range:

* ``get``, ``run_at``, ``covers``                    O(log n)
* ``set``, ``add``                                    O(log n + k)
* ``iter`` (lazily)                                   O(log n) + O(1) per run

Values are compared with ``==`` to decide merging, so use immutable values
with a sane equality (ints, strings, tuples, frozen objects).  ``add`` treats
holes as 0 and requires values that support ``+``; runs whose value becomes 0
are dropped (so a counter map holds only non-zero counts).

Do not mutate a map while iterating over one of its ``iter`` generators.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

from sortedcontainers import SortedDict

__all__ = ["RangeMap"]

Run = Tuple[int, int, Any]


class RangeMap:
    """A map ``[start, end) -> value`` stored as merged runs (see module doc)."""

    __slots__ = ("_d",)

    def __init__(self, start: Optional[int] = None, end: Optional[int] = None,
                 value: Any = None) -> None:
        self._d: SortedDict = SortedDict()
        if start is not None or end is not None:
            if start is None or end is None:
                raise ValueError("give both start and end, or neither")
            self.set(start, end, value)

    # ------------------------------------------------------------------ helpers
    #
    # Only key-based SortedDict operations are used (irange, get, set, del).
    # Positional ones (bisect + peekitem/index) make sortedcontainers build
    # and maintain a positional index tree, which costs far more per update.

    @staticmethod
    def _check_range(start: int, end: int) -> bool:
        """True if the range is non-empty; ValueError if it is reversed."""
        if end < start:
            raise ValueError(f"reversed range [{start:#x}, {end:#x})")
        return end > start

    def _floor_lt(self, pos: int) -> Optional[int]:
        """Start of the last run starting strictly before ``pos``, or None."""
        return next(self._d.irange(None, pos, (True, False), True), None)

    def _floor_le(self, pos: int) -> Optional[int]:
        """Start of the last run starting at or before ``pos``, or None."""
        return next(self._d.irange(None, pos, (True, True), True), None)

    def _keys_in(self, start: int, end: int) -> list:
        return list(self._d.irange(start, end, (True, False)))

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._d)

    def count(self) -> int:
        """Number of runs (maximal ranges with one non-None value)."""
        return len(self._d)

    def __bool__(self) -> bool:
        return bool(self._d)

    def run_at(self, pos: int) -> Optional[Run]:
        """The whole run ``(s, e, value)`` containing ``pos``, or None in a hole."""
        s = self._floor_le(pos)
        if s is None:
            return None
        e, v = self._d[s]
        if pos < e:
            return (s, e, v)
        return None

    def get(self, pos: int, default: Any = None) -> Any:
        """Value at ``pos`` (``default`` in a hole)."""
        run = self.run_at(pos)
        return default if run is None else run[2]

    def span(self) -> Optional[Tuple[int, int]]:
        """``(first start, last end)`` over all runs, or None if empty."""
        if not self._d:
            return None
        first = self._d.peekitem(0)[0]
        last_end = self._d.peekitem(-1)[1][0]
        return (first, last_end)

    def iter(self, start: Optional[int] = None, end: Optional[int] = None,
             holes: bool = False) -> Iterator[Run]:
        """Yield ``(s, e, value)`` runs clipped to ``[start, end)``, in order.

        ``start``/``end`` default to the span of the map.  With ``holes=True``
        the gaps are yielded too, as ``(s, e, None)``, so the output tiles
        ``[start, end)`` exactly.  Consecutive yielded items never have equal
        values.
        """
        d = self._d
        if start is None or end is None:
            sp = self.span()
            if sp is None:
                if holes and start is not None and end is not None and end > start:
                    yield (start, end, None)
                return
            if start is None:
                start = sp[0]
            if end is None:
                end = sp[1]
        if not self._check_range(start, end):
            return
        pos = start
        lk = self._floor_lt(start)
        if lk is not None:
            e, v = d[lk]
            if e > start:
                ce = e if e < end else end
                yield (start, ce, v)
                pos = ce
        for s in d.irange(start, end, (True, False)):
            e, v = d[s]
            ce = e if e < end else end
            if holes and pos < s:
                yield (pos, s, None)
            yield (s, ce, v)
            pos = ce
        if holes and pos < end:
            yield (pos, end, None)

    def __iter__(self) -> Iterator[Run]:
        return self.iter()

    def runs(self, start: Optional[int] = None, end: Optional[int] = None,
             holes: bool = False) -> list:
        """``list(self.iter(...))``."""
        return list(self.iter(start, end, holes))

    def first(self, start: int, end: int) -> Optional[Run]:
        """First non-hole run clipped to ``[start, end)``, or None.  O(log n)."""
        if not self._check_range(start, end) or not self._d:
            return None
        return next(self.iter(start, end), None)

    def covers(self, start: int, end: int, value: Any) -> bool:
        """True if every position of ``[start, end)`` has ``value``.

        ``value=None`` asks "is it all hole".  An empty range is covered.
        O(log n): runs are merged, so one run either spans the range or the
        answer is False.
        """
        if not self._check_range(start, end):
            return True
        run = self.run_at(start)
        if run is None:
            if value is not None:
                return False
            return next(self._d.irange(start, end, (True, False)), None) is None
        return value is not None and run[1] >= end and run[2] == value

    def covered_length(self, start: Optional[int] = None,
                       end: Optional[int] = None) -> int:
        """Total length of the non-hole runs inside ``[start, end)``."""
        return sum(e - s for s, e, _ in self.iter(start, end))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeMap):
            return NotImplemented
        return list(self._d.items()) == list(other._d.items())

    __hash__ = None  # mutable

    def copy(self) -> "RangeMap":
        new = RangeMap()
        new._d = self._d.copy()
        return new

    def __repr__(self) -> str:
        shown = ", ".join(f"[{s:#x},{e:#x})={v!r}" for s, e, v in
                          (self.runs()[:8]))
        more = "" if len(self) <= 8 else f", ... ({len(self)} runs)"
        return f"RangeMap({shown}{more})"

    # ---------------------------------------------------------------- updates

    def set(self, start: int, end: int, value: Any) -> None:
        """Give ``[start, end)`` the value ``value`` (None: make it a hole).

        One floor lookup, one range scan, then O(1) dict updates per run.
        """
        if not self._check_range(start, end):
            return
        d = self._d
        new_s, new_e = start, end
        tail = None           # piece of an old run beyond ``end`` to keep
        lk = self._floor_lt(start)
        if lk is not None:
            le, lv = d[lk]
            if le > start:                       # left run overlaps start
                if value is not None and lv == value:
                    new_s = lk                   # extend the left run
                    if le > new_e:
                        new_e = le
                else:
                    d[lk] = (start, lv)          # keep its head
                    if le > end:
                        tail = (le, lv)
            elif le == start and value is not None and lv == value:
                new_s = lk                       # touches start, same value
        for k in list(d.irange(start, end, (True, True))):
            ke, kv = d[k]
            if k == end:                         # run touching end
                if value is not None and kv == value:
                    del d[k]
                    if ke > new_e:
                        new_e = ke
                break
            del d[k]
            if ke > end:                         # run crossing end
                if value is not None and kv == value:
                    if ke > new_e:
                        new_e = ke
                else:
                    tail = (ke, kv)
        if value is not None:
            d[new_s] = (new_e, value)
        if tail is not None:
            d[end] = tail

    def clear(self, start: Optional[int] = None, end: Optional[int] = None) -> None:
        """Make ``[start, end)`` a hole (everything when no bounds are given)."""
        if start is None and end is None:
            self._d.clear()
            return
        if start is None or end is None:
            raise ValueError("give both start and end, or neither")
        self.set(start, end, None)

    def add(self, start: int, end: int, delta: Any, floor: Any = None) -> list:
        """Add ``delta`` to every position of ``[start, end)``.

        Holes count as 0; runs that end up equal to 0 become holes.
        Adding 0 changes nothing.  With ``floor``, a position that would end
        below it raises ValueError and nothing changes (a counter that must
        not go negative passes ``floor=0``).

        Returns the sub-ranges that crossed zero (0 -> non-zero or
        non-zero -> 0), in order, adjacent ones merged: what a pin counter
        needs to know to take or drop the real pins.
        """
        if not self._check_range(start, end) or delta == 0:
            return []
        d = self._d
        # Old pieces inside [start, end), clipped; nothing changes until the
        # new runs are known (and checked against ``floor``).
        pieces = []
        head = tail = None
        lk = self._floor_lt(start)
        if lk is not None:
            le, lv = d[lk]
            if le > start:
                head = (lk, lv)                  # left run keeps [lk, start)
                pieces.append((start, min(le, end), lv))
                if le > end:
                    tail = (le, lv)
        keys = self._keys_in(start, end)
        for k in keys:
            ke, kv = d[k]
            pieces.append((k, min(ke, end), kv))
            if ke > end:
                tail = (ke, kv)
        new = []
        crossed = []

        def emit(s: int, e: int, old: Any) -> None:
            v = old + delta
            if floor is not None and v < floor:
                raise ValueError(f"[{s:#x}, {e:#x}) would go below {floor!r}")
            if (old == 0) != (v == 0):
                if crossed and crossed[-1][1] == s:
                    crossed[-1] = (crossed[-1][0], e)
                else:
                    crossed.append((s, e))
            if v == 0:
                return
            if new and new[-1][1] == s and new[-1][2] == v:
                new[-1] = (new[-1][0], e, v)
            else:
                new.append((s, e, v))

        pos = start
        for s, e, v in pieces:
            if pos < s:
                emit(pos, s, 0)
            emit(s, e, v)
            pos = e
        if pos < end:
            emit(pos, end, 0)
        for k in keys:
            del d[k]
        # Re-attach the outside pieces, merging where values meet.
        if head is not None:
            d[head[0]] = (start, head[1])
        if tail is not None:
            d[end] = tail
        for s, e, v in new:
            d[s] = (e, v)
        self._merge_at(start)
        self._merge_at(end)
        return crossed

    def _merge_at(self, pos: int) -> None:
        """Merge the run ending at ``pos`` with the run starting there if equal."""
        d = self._d
        right = d.get(pos)
        if right is None:
            return
        lk = self._floor_lt(pos)
        if lk is None:
            return
        le, lv = d[lk]
        if le == pos and lv == right[1]:
            d[lk] = (right[0], lv)
            del d[pos]

    # ------------------------------------------------------------ diagnostics

    def check_invariants(self) -> None:
        """Raise AssertionError if the internal representation is broken."""
        prev_end = None
        prev_val = None
        for s, (e, v) in self._d.items():
            assert s < e, f"empty or reversed run [{s}, {e})"
            assert v is not None, f"stored None at [{s}, {e})"
            if prev_end is not None:
                assert prev_end <= s, f"overlap at {s}"
                assert not (prev_end == s and prev_val == v), f"unmerged runs at {s}"
            prev_end, prev_val = e, v
