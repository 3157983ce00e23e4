"""The interval library at the bottom of the house (no gmemfs, no iommufd).

Ranges of integers -- bytes, page indices, IOVAs -- and what holds over them,
with no per-position objects and O(log n) lookups (n = number of runs):

* `RangeMap` (rangemap.py): the one map of ranges to values, split on update
  and merged where equal neighbours meet;
* `RangeCounter`, `IntervalSet` (counter.py): the counter and the set, thin
  views of the same map.

Used by the guest_memfd model (gmemfs/gmem.py) and by the iommufd model
(iommufd_emu: pins, holders, IOPTE runs, dirty bits).
"""

from .counter import IntervalSet, RangeCounter
from .rangemap import RangeMap

__all__ = ["RangeMap", "RangeCounter", "IntervalSet"]
