"""Hypothesis property tests of the IOAS model (the interval library has its
own: tests/test_intervals.py).

Oracles are naive re-statements of the spec over plain lists: §4.5 (the
allocator), §4.9 (UNMAP with partial effect), disjoint areas.
"""

import errno

from hypothesis import HealthCheck, given, settings, strategies as st

import ioctl_abi as A
from fakes import IommufdHarness

PS = 4096
U64 = (1 << 64) - 1
RW = A.IOMMU_IOAS_MAP_READABLE | A.IOMMU_IOAS_MAP_WRITEABLE
FIXED = A.IOMMU_IOAS_MAP_FIXED_IOVA
BUF = 0x40000000
SPACE = 1 << 24          # keep the interesting part of the IOVA space small
HUGE = 2 << 20

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# ------------------------------------------------------------------ oracles

def oracle_alloc(length, addr, G, reserved, areas, allowed):
    """Spec §4.5 over plain lists of inclusive (start, last)."""
    if length == 0 or length >= U64 // 2:
        return errno.EOVERFLOW
    off = addr % PS
    a = 1 << (length - 1).bit_length() if length > 1 else 1
    if addr:
        a = min(a, addr & -addr)
    a = min(a, HUGE)
    if a < G:
        return errno.EINVAL
    lo, hi = PS, U64 - PS
    if allowed:
        merged = []
        for s, l in sorted(allowed):
            if merged and s <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], l)
            else:
                merged.append([s, l])
        windows = [(max(s, lo), min(l, hi)) for s, l in merged if max(s, lo) <= min(l, hi)]
    else:
        windows = [(lo, hi)]
    used = sorted(reserved + areas)

    def up(x):
        return (x + a - 1) // a * a

    for ws, wl in windows:
        c = up(ws)
        if c > U64:
            continue
        c |= off
        if c >= wl or wl - c < length - 1:
            continue
        # holes of `used` inside [c, wl]
        cur = c
        holes = []
        for s, l in used:
            if l < cur or s > wl:
                continue
            if s > cur:
                holes.append((cur, s - 1))
            cur = max(cur, l + 1)
        if cur <= wl:
            holes.append((cur, wl))
        for hs, hl in holes:
            c2 = up(hs)
            if c2 > U64:
                continue
            c2 |= off
            if c2 < hl and hl - c2 >= length - 1:
                return c2
    return errno.ENOSPC


def oracle_unmap(shadow, start, last):
    """Spec §4.9: returns (errno or None, removed bytes), mutates shadow."""
    removed = 0
    for iova in sorted(shadow):
        ln = shadow[iova]
        if iova + ln - 1 < start or iova > last:
            continue
        if iova < start or iova + ln - 1 > last:
            return errno.ENOENT, removed
        del shadow[iova]
        removed += ln
    if not removed:
        return errno.ENOENT, 0
    return None, removed


# ------------------------------------------------------------------ helpers

def fresh():
    h = IommufdHarness()
    h.caller.mmap(BUF, 0x100000)
    return h, h.ioas_alloc()


def try_(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except OSError as e:
        return e


ranges = st.tuples(st.integers(0, SPACE), st.integers(1, 1 << 20)).map(
    lambda t: (t[0], t[0] + t[1] - 1))


@SETTINGS
@given(reserved=st.lists(ranges, max_size=4),
       fixed=st.lists(ranges, max_size=6),
       allowed=st.lists(ranges, max_size=3),
       length=st.integers(1, 1 << 21),
       addr=st.one_of(st.just(0), st.integers(0, 1 << 40)),
       huge_off=st.booleans())
def test_allocator_matches_spec_oracle_and_result_is_valid(reserved, fixed, allowed, length,
                                                            addr, huge_off):
    h, i = fresh()
    ioas = h.ctx.lookup(i)
    for s, l in reserved:
        try_(ioas.add_reserved, s, l, None)
    if huge_off:
        ioas.disable_large_pages = True
        ioas.recalc_alignment()
    for s, l in fixed:
        if l - s + 1 >= ioas.iova_alignment:
            try_(h.map, i, BUF, (l - s + 1) // ioas.iova_alignment * ioas.iova_alignment,
                 iova=s // ioas.iova_alignment * ioas.iova_alignment)
    # allowed list: keep a non-overlapping subset that does not hit reserved
    ok = []
    for s, l in sorted(allowed):
        if s < l and all(l < os or s > ol for os, ol in ok):
            ok.append((s, l))
    try_(ioas.set_allowed, ok)
    res_list = [(r.start, r.last) for r in ioas.reserved]
    area_list = [(a.iova, a.last) for a in ioas.areas.values()]
    expect = oracle_alloc(length, addr, ioas.iova_alignment, res_list, area_list, ioas.allowed)
    got = try_(ioas.alloc_iova, length, addr)
    if isinstance(got, OSError):
        assert got.errno == expect
        return
    assert got == expect
    last = got + length - 1
    assert PS <= got and last <= U64 - PS
    assert not ioas.intersects_reserved(got, last) and not ioas.intersects_area(got, last)
    a = min(1 << (length - 1).bit_length(), HUGE)
    if addr:
        a = min(a, addr & -addr)
    assert got % a == (addr % PS) % a
    if ioas.allowed:
        assert any(s <= got and last <= l for s, l in ioas.windows())
    h.ctx.close()


ops = st.lists(st.one_of(
    st.tuples(st.just("map"), st.integers(0, 64), st.integers(1, 16), st.booleans()),
    st.tuples(st.just("unmap"), st.integers(0, 64), st.integers(1, 32)),
    st.tuples(st.just("copy"), st.integers(0, 64), st.integers(1, 8)),
), max_size=25)


@SETTINGS
@given(seq=ops, with_domain=st.booleans())
def test_ioas_operations_keep_areas_disjoint_and_unmap_returns_what_was_mapped(seq, with_domain):
    h, i = fresh()
    if with_domain:
        h.mock_domain(i)
    base = 0x1000000
    ioas = h.ctx.lookup(i)
    shadow = {}
    for op in seq:
        if op[0] == "map":
            _, slot, pages, fixed = op
            ln = pages * PS
            if fixed:
                r = try_(h.map, i, BUF, ln, iova=base + slot * PS)
            else:
                r = try_(h.map, i, BUF, ln)
            if not isinstance(r, OSError):
                assert r not in shadow
                shadow[r] = ln
            else:
                assert r.errno in (errno.EEXIST, errno.ENOSPC, errno.EINVAL)
        elif op[0] == "unmap":
            _, slot, pages = op
            start, ln = base + slot * PS, pages * PS
            exp_err, exp_len = oracle_unmap(shadow, start, start + ln - 1)
            r = try_(h.unmap, i, start, ln)
            if exp_err:
                assert isinstance(r, OSError) and r.errno == exp_err
            else:
                assert r == exp_len
        else:
            _, slot, pages = op
            src = base + slot * PS
            r = try_(h.ioctl, "IOMMU_IOAS_COPY", "iommu_ioas_copy", flags=RW, dst_ioas_id=i,
                     src_ioas_id=i, length=pages * PS, src_iova=src)
            if not isinstance(r, OSError):
                # one new area per covered source piece, contiguous from dst_iova
                cur = r.dst_iova
                end = cur + pages * PS
                while cur < end:
                    a = ioas.area_at(cur)
                    assert a is not None and a.iova == cur
                    shadow[cur] = a.length
                    cur += a.length
            else:
                assert r.errno in (errno.ENOENT, errno.ENOSPC, errno.EINVAL)
        # invariants
        got = [(a.iova, a.length) for a in ioas.areas.values()]
        assert got == sorted(shadow.items())
        for (s1, l1), (s2, _) in zip(got, got[1:]):
            assert s1 + l1 <= s2
        if with_domain:
            assert all(a.held for a in ioas.areas.values())
    h.ctx.close()
    assert h.system.pins == {} and h.system.locked == {}
