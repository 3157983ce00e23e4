"""Lists of spans: sorted, disjoint half-open ranges ``[s, e)`` as tuples.

For the few spans a computation makes and drops again (the 2 MiB windows an
IOPTE update touches, the union of an IOAS's reserved ranges, its allowed
windows); what lives on is kept in a `RangeMap`. Every function takes its
inputs sorted by start and returns a new sorted list of disjoint spans, in
O(len(a) + len(b)).

* `merge(spans)`: overlapping or touching spans become one;
* `intersect(a, b)`, `subtract(a, b)`: of two lists of disjoint spans.
"""

from __future__ import annotations

from typing import Iterable, List, Tuple

__all__ = ["merge", "intersect", "subtract"]

Span = Tuple[int, int]


def merge(spans: Iterable[Span]) -> List[Span]:
    """Spans sorted by start -> disjoint spans, touching ones merged."""
    out: List[List[int]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def intersect(a: List[Span], b: List[Span]) -> List[Span]:
    """What two lists of disjoint spans have in common."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: List[Span], b: List[Span]) -> List[Span]:
    """What of ``a`` is not in ``b`` (both disjoint spans)."""
    out = []
    j = 0
    for s, e in a:
        cur = s
        while j < len(b) and b[j][1] <= cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < e:
            out.append((cur, e))
    return out
