"""Tests of the interval library (intervals/): RangeMap unit tests plus
hypothesis properties against a naive per-position reference on a small
space, and the same for its counter and set views and for span lists."""

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from intervals import IntervalSet, RangeCounter, RangeMap, spans

SPACE = 48  # positions 0..47 in the reference


# ----------------------------------------------------------------- reference

def ref_runs(arr, start=0, end=None, holes=False):
    """Maximal runs of equal values in arr[start:end] (None = hole)."""
    end = len(arr) if end is None else end
    out = []
    for i in range(start, end):
        v = arr[i]
        if out and out[-1][1] == i and out[-1][2] == v and (out[-1][2] is None) == (v is None):
            out[-1] = (out[-1][0], i + 1, v)
        else:
            out.append((i, i + 1, v))
    if not holes:
        out = [r for r in out if r[2] is not None]
    return out


# ----------------------------------------------------------------- unit tests

def test_empty_map_has_no_runs_and_get_returns_default():
    m = RangeMap()
    assert len(m) == 0 and m.count() == 0 and not m
    assert m.get(5) is None
    assert m.get(5, "d") == "d"
    assert m.runs() == []
    assert m.span() is None


def test_set_single_range_and_point_queries_at_edges():
    m = RangeMap()
    m.set(10, 20, "a")
    assert m.get(9) is None
    assert m.get(10) == "a"
    assert m.get(19) == "a"
    assert m.get(20) is None
    assert m.run_at(15) == (10, 20, "a")
    assert m.span() == (10, 20)


def test_adjacent_equal_values_merge_left_and_right():
    m = RangeMap()
    m.set(0, 10, 1)
    m.set(20, 30, 1)
    assert m.count() == 2
    m.set(10, 20, 1)
    assert m.runs() == [(0, 30, 1)]


def test_adjacent_different_values_do_not_merge():
    m = RangeMap()
    m.set(0, 10, 1)
    m.set(10, 20, 2)
    assert m.runs() == [(0, 10, 1), (10, 20, 2)]


def test_set_inside_run_splits_into_three():
    m = RangeMap(0, 100, "x")
    m.set(40, 60, "y")
    assert m.runs() == [(0, 40, "x"), (40, 60, "y"), (60, 100, "x")]
    m.set(40, 60, "x")
    assert m.runs() == [(0, 100, "x")]


def test_set_none_punches_hole_and_holes_are_reported_only_on_request():
    m = RangeMap(0, 100, 7)
    m.set(30, 50, None)
    assert m.runs() == [(0, 30, 7), (50, 100, 7)]
    assert m.runs(0, 100, holes=True) == [(0, 30, 7), (30, 50, None), (50, 100, 7)]
    assert m.get(30) is None


def test_iter_clips_runs_to_requested_window():
    m = RangeMap()
    m.set(0, 10, "a")
    m.set(10, 20, "b")
    m.set(30, 40, "c")
    assert m.runs(5, 35) == [(5, 10, "a"), (10, 20, "b"), (30, 35, "c")]
    assert m.runs(5, 35, holes=True) == [(5, 10, "a"), (10, 20, "b"),
                                         (20, 30, None), (30, 35, "c")]
    assert m.runs(21, 29) == []
    assert m.runs(21, 29, holes=True) == [(21, 29, None)]


def test_iter_window_on_empty_map_with_holes_is_one_hole():
    assert RangeMap().runs(3, 9, holes=True) == [(3, 9, None)]


def test_reversed_range_is_a_programming_error():
    m = RangeMap()
    with pytest.raises(ValueError):
        m.set(5, 4, 1)
    with pytest.raises(ValueError):
        m.add(5, 4, 1)


def test_empty_range_is_a_noop():
    m = RangeMap(0, 10, 1)
    m.set(5, 5, 2)
    m.add(5, 5, 2)
    assert m.runs() == [(0, 10, 1)]
    assert m.covers(5, 5, 99)


def test_add_counts_drop_zero_runs():
    m = RangeMap()
    m.add(0, 10, 1)
    m.add(5, 15, 1)
    assert m.runs() == [(0, 5, 1), (5, 10, 2), (10, 15, 1)]
    m.add(0, 10, -1)
    assert m.runs() == [(5, 15, 1)]
    m.add(5, 15, -1)
    assert m.runs() == [] and m.count() == 0


def test_add_merges_with_neighbours_when_equal():
    m = RangeMap()
    m.add(0, 10, 1)
    m.add(20, 30, 1)
    m.add(10, 20, 1)
    assert m.runs() == [(0, 30, 1)]


def test_covers_is_true_only_for_uniform_value():
    m = RangeMap(0, 100, 0)
    m.set(50, 51, 8)
    assert m.covers(0, 50, 0)
    assert not m.covers(0, 51, 0)
    assert m.covers(50, 51, 8)
    assert not m.covers(49, 51, 8)
    assert not m.covers(100, 101, 0)
    assert m.covers(100, 101, None)


def test_first_returns_first_clipped_run():
    m = RangeMap()
    m.set(40, 50, 3)
    m.set(70, 80, 1)
    assert m.first(0, 100) == (40, 50, 3)
    assert m.first(45, 100) == (45, 50, 3)
    assert m.first(50, 70) is None


def test_huge_ranges_cost_one_entry():
    m = RangeMap(0, 0x7FFFFFFFFFFFF000, 0)
    m.set(0x7FFFFFFFFFFFE000, 0x7FFFFFFFFFFFF000, 8)
    assert m.count() == 2
    assert m.get(0x7FFFFFFFFFFFEFFF) == 8


def test_covered_length_and_copy_equality():
    m = RangeMap()
    m.set(0, 10, 1)
    m.set(20, 25, 2)
    assert m.covered_length() == 15
    assert m.covered_length(5, 22) == 7
    c = m.copy()
    assert c == m
    c.set(0, 1, 9)
    assert c != m


def test_invariant_checker_detects_unmerged_runs():
    m = RangeMap()
    m.set(0, 10, 1)
    # Corrupt the internals on purpose: the checker must catch it.
    m._d[10] = (20, 1)
    with pytest.raises(AssertionError):
        m.check_invariants()


# ----------------------------------------------------------- property tests

pos = st.integers(0, SPACE)
ranges = st.tuples(pos, pos).map(sorted)
values = st.one_of(st.none(), st.integers(-2, 3))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ranges, values), max_size=25))
def test_set_matches_per_position_reference(ops):
    m = RangeMap()
    ref = [None] * SPACE
    for (s, e), v in ops:
        m.set(s, e, v)
        for i in range(s, e):
            ref[i] = v
        m.check_invariants()
    assert m.runs() == ref_runs(ref)
    assert m.count() == len(ref_runs(ref))
    for i in range(SPACE):
        assert m.get(i) == ref[i]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ranges, st.integers(-3, 3)), max_size=25))
def test_add_matches_per_position_counter_reference(ops):
    m = RangeMap()
    ref = [0] * SPACE
    for (s, e), dlt in ops:
        m.add(s, e, dlt)
        for i in range(s, e):
            ref[i] += dlt
        m.check_invariants()
    as_holes = [None if x == 0 else x for x in ref]
    assert m.runs() == ref_runs(as_holes)


class RangeMapMachine(RuleBasedStateMachine):
    """Random interleavings of set/add/clear, checked against a list."""

    def __init__(self):
        super().__init__()
        self.m = RangeMap()
        self.ref = [None] * SPACE

    @rule(r=ranges, v=values)
    def do_set(self, r, v):
        s, e = r
        self.m.set(s, e, v)
        for i in range(s, e):
            self.ref[i] = v

    @rule(r=ranges, d=st.integers(-2, 2))
    def do_add(self, r, d):
        s, e = r
        self.m.add(s, e, d)
        if d == 0:  # documented: adding 0 changes nothing
            return
        for i in range(s, e):
            nv = (self.ref[i] or 0) + d
            self.ref[i] = None if nv == 0 else nv

    @rule(r=ranges)
    def do_clear(self, r):
        s, e = r
        self.m.clear(s, e)
        for i in range(s, e):
            self.ref[i] = None

    @rule(r=ranges)
    def window_queries(self, r):
        s, e = r
        assert self.m.runs(s, e) == ref_runs(self.ref, s, e)
        assert self.m.runs(s, e, holes=True) == ref_runs(self.ref, s, e, holes=True)
        if e > s:
            for v in set(self.ref[s:e]) | {None, 0, 1}:
                expect = all(x == v and (x is None) == (v is None) for x in self.ref[s:e])
                assert self.m.covers(s, e, v) == expect
            first = next(iter(ref_runs(self.ref, s, e)), None)
            assert self.m.first(s, e) == first

    @invariant()
    def matches_reference(self):
        self.m.check_invariants()
        assert self.m.runs() == ref_runs(self.ref)


TestRangeMapMachine = RangeMapMachine.TestCase
TestRangeMapMachine.settings = settings(max_examples=150, stateful_step_count=40,
                                        deadline=None)


# ------------------------------------------------- the counter and the set

@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 60), st.sampled_from([1, -1])),
                max_size=30))
def test_range_counter_matches_naive(ops_):
    rc = RangeCounter()
    naive = [0] * 300
    for s, n, d in ops_:
        e = s + n
        if d < 0 and any(naive[x] == 0 for x in range(s, e)):
            continue
        before = naive[s:e]
        crossed = rc.add(s, e, d)
        for x in range(s, e):
            naive[x] += d
        flips = {s + k for k, v in enumerate(before) if (v == 0) != (naive[s + k] == 0)}
        assert {x for cs, ce in crossed for x in range(cs, ce)} == flips
        for cs, ce, v in rc.segments(0, 300):
            assert all(naive[x] == v for x in range(cs, ce))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 200), st.integers(0, 40)), max_size=30))
def test_interval_set_matches_naive(ops_):
    iv = IntervalSet()
    naive = set()
    for add, s, n in ops_:
        if add:
            iv.add(s, s + n)
            naive |= set(range(s, s + n))
        else:
            iv.remove(s, s + n)
            naive -= set(range(s, s + n))
        items = list(iv)
        assert {x for a, b in items for x in range(a, b)} == naive
        for (a1, b1), (a2, b2) in zip(items, items[1:]):
            assert b1 < a2                       # merged and disjoint
        assert {x for a, b in iv.overlaps(50, 120) for x in range(a, b)} == naive & set(range(50, 120))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ranges, st.integers(-3, 3)), max_size=25))
def test_add_reports_zero_crossings_and_floor_refuses_without_change(ops):
    """RangeMap.add returns the ranges that crossed zero; with floor=0 an add
    that would take a position below zero raises ValueError and leaves the
    map as it was (a pin counter never goes negative, even on a bug)."""
    m = RangeMap()
    ref = [0] * SPACE
    for (s, e), dlt in ops:
        before = m.runs()
        if any(ref[i] + dlt < 0 for i in range(s, e)):
            with pytest.raises(ValueError):
                m.add(s, e, dlt, floor=0)
            assert m.runs() == before
            continue
        crossed = m.add(s, e, dlt, floor=0)
        flips = {i for i in range(s, e) if (ref[i] == 0) != (ref[i] + dlt == 0)}
        for i in range(s, e):
            ref[i] += dlt
        assert {i for cs, ce in crossed for i in range(cs, ce)} == flips
        for (_, e1), (s2, _) in zip(crossed, crossed[1:]):
            assert e1 < s2                      # merged: adjacent crossings are one range
        m.check_invariants()


# ------------------------------------------------------------------ spans

def _disjoint(pairs):
    """Sorted disjoint half-open spans covering exactly the positions of pairs."""
    pos = sorted({i for s, e in pairs for i in range(s, e)})
    out = []
    for i in pos:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


span_lists = st.lists(ranges, max_size=8)


@settings(max_examples=300, deadline=None)
@given(span_lists, span_lists)
def test_spans_merge_intersect_subtract_match_sets(a, b):
    """merge gives sorted disjoint spans with no two touching; intersect and
    subtract of disjoint span lists are the set operations on positions."""
    def points(sp):
        return {i for s, e in sp for i in range(s, e)}
    m = spans.merge(sorted(p for p in a if p[0] < p[1]))
    assert points(m) == points(a) and all(s < e for s, e in m)
    for (_, e1), (s2, _) in zip(m, m[1:]):
        assert e1 < s2                            # disjoint, touching ones merged
    da, db = _disjoint(a), _disjoint(b)
    assert points(spans.intersect(da, db)) == points(da) & points(db)
    assert points(spans.subtract(da, db)) == points(da) - points(db)
    for out in (spans.intersect(da, db), spans.subtract(da, db)):
        assert out == sorted(out) and all(s < e for s, e in out)
