"""Tests for the guest_memfd model (gmemfs/gmem.py).

Each unit test names the rule it checks: spec guest_memfd.md §4.1 (create),
§4.3 (fallocate check order, from fs/open.c vfs_fallocate and
virt/kvm/guest_memfd.c kvm_gmem_fallocate), §5 (errno table), §6.3 (v8
KVM_SET_MEMORY_ATTRIBUTES2), plus the event contract of the module docstring.
A hypothesis state machine then drives random allocate/punch/convert/pin/write
sequences against a per-page reference model.
"""

import errno
import os

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gmemfs.gmem import (
    FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_NO_HIDE_STALE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_UNSHARE_RANGE,
    FALLOC_FL_WRITE_ZEROES, FALLOC_FL_ZERO_RANGE, GUEST_MEMFD_FLAG_INIT_SHARED,
    GUEST_MEMFD_FLAG_MMAP, KVM_MEMORY_ATTRIBUTE_PRIVATE, LLONG_MAX, PAGE_SIZE,
    U64_MAX, GmemEvent, GuestMemfd,
)

KEEP = FALLOC_FL_KEEP_SIZE
PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
PRIV = KVM_MEMORY_ATTRIBUTE_PRIVATE
SHARED_FLAGS = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
MiB = 1 << 20
TiB = 1 << 40
MAXSIZE = 0x7FFFFFFFFFFFF000


def errno_of(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as exc:
        return exc.errno
    return 0


@pytest.fixture
def g():
    m = GuestMemfd.create(2 * MiB, SHARED_FLAGS)
    yield m
    m.close()


@pytest.fixture
def gp():
    """A file whose pages start private (MMAP without INIT_SHARED)."""
    m = GuestMemfd.create(2 * MiB, GUEST_MEMFD_FLAG_MMAP)
    yield m
    m.close()


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, ev):
        assert isinstance(ev, GmemEvent)
        self.events.append((ev.kind, ev.offset, ev.length, ev.phase))


# =================================================================== §4.1

@pytest.mark.parametrize("bit", [2, 3, 7, 31, 32, 62, 63])
def test_create_step4_flag_bit_outside_supported_set_is_EINVAL(bit):
    assert errno_of(GuestMemfd.create, 4096, 1 << bit) == errno.EINVAL


def test_create_step4_all_ones_flags_is_EINVAL():
    assert errno_of(GuestMemfd.create, 4096, U64_MAX) == errno.EINVAL


def test_create_step4_uses_the_given_supported_set():
    # A VM that only offers MMAP (x86 CoCo VM in 6.18) refuses INIT_SHARED.
    assert errno_of(GuestMemfd.create, 4096, GUEST_MEMFD_FLAG_INIT_SHARED,
                    supported_flags=GUEST_MEMFD_FLAG_MMAP) == errno.EINVAL
    GuestMemfd.create(4096, GUEST_MEMFD_FLAG_MMAP,
                      supported_flags=GUEST_MEMFD_FLAG_MMAP).close()


@pytest.mark.parametrize("size", [0, 1, 512, 4095, 4097, 1 << 63,
                                  0xFFFFFFFFFFFFF000, U64_MAX, -4096, 1 << 64])
def test_create_step5_size_not_positive_signed_or_unaligned_is_EINVAL(size):
    assert errno_of(GuestMemfd.create, size, 0) == errno.EINVAL


@pytest.mark.parametrize("flags", [0, 1, 2, 3])
def test_create_accepts_flags_0_1_2_3(flags):
    m = GuestMemfd.create(4096, flags)
    assert m.flags == flags and m.size == 4096
    m.close()


@pytest.mark.parametrize("size", [4096, 2 * MiB, TiB, 256 * TiB, MAXSIZE])
def test_create_has_no_upper_size_limit_and_commits_nothing(size):
    m = GuestMemfd.create(size, SHARED_FLAGS)
    st_ = os.fstat(m.backing_fd)
    assert st_.st_size == size
    assert st_.st_blocks == 0
    assert m.run_counts()["attributes"] == 1
    m.close()


def test_create_reserved_words_are_not_validated():
    m = GuestMemfd.create(4096, 0, reserved=[U64_MAX] * 6)
    m.close()


def test_create_initial_attributes_all_private_without_INIT_SHARED(gp):
    assert gp.is_private(0, gp.size)
    assert gp.attribute_runs() == [(0, gp.size, PRIV)]


def test_create_initial_attributes_all_shared_with_INIT_SHARED(g):
    assert g.is_shared(0, g.size)
    assert not g.is_private(0, PAGE_SIZE)
    assert g.private_runs() == []


def test_create_INIT_SHARED_without_MMAP_is_accepted():
    m = GuestMemfd.create(4096, GUEST_MEMFD_FLAG_INIT_SHARED)
    assert m.is_shared(0, 4096)
    m.close()


# =================================================================== §4.3

FALLOC_TABLE = [
    # step 1: offset < 0 or len <= 0 -> EINVAL, before any mode check
    ("s1_len0_zero_range", FALLOC_FL_ZERO_RANGE | KEEP, 0, 0, errno.EINVAL),
    ("s1_len0_bad_mode", 0x100, 0, 0, errno.EINVAL),
    ("s1_negative_len", KEEP, 0, -4096, errno.EINVAL),
    ("s1_negative_offset", PUNCH, -4096, 4096, errno.EINVAL),
    # step 2: VFS mode checks -> EOPNOTSUPP
    ("s2_unknown_bit_0x100", 0x100, 0, 4096, errno.EOPNOTSUPP),
    ("s2_0xff", 0xFF, 0, 4096, errno.EOPNOTSUPP),
    ("s2_minus_one", -1, 0, 4096, errno.EOPNOTSUPP),
    ("s2_no_hide_stale", FALLOC_FL_NO_HIDE_STALE | PUNCH, 0, 4096, errno.EOPNOTSUPP),
    ("s2_punch_without_keep", FALLOC_FL_PUNCH_HOLE, 0, 4096, errno.EOPNOTSUPP),
    ("s2_collapse_keep", FALLOC_FL_COLLAPSE_RANGE | KEEP, 0, 4096, errno.EOPNOTSUPP),
    ("s2_insert_keep", FALLOC_FL_INSERT_RANGE | KEEP, 0, 4096, errno.EOPNOTSUPP),
    ("s2_write_zeroes_keep", FALLOC_FL_WRITE_ZEROES | KEEP, 0, 4096, errno.EOPNOTSUPP),
    ("s2_punch_zero_keep_exclusive", FALLOC_FL_ZERO_RANGE | PUNCH, 0, 4096, errno.EOPNOTSUPP),
    ("s2_before_s3_punch_no_keep_overflow", FALLOC_FL_PUNCH_HOLE, LLONG_MAX - 4095, 8192,
     errno.EOPNOTSUPP),
    ("s2_before_s3_modes_exclusive_overflow", FALLOC_FL_ZERO_RANGE | PUNCH,
     LLONG_MAX - 4095, 8192, errno.EOPNOTSUPP),
    # step 3: offset + len overflows loff_t -> EFBIG
    ("s3_keep_overflow", KEEP, LLONG_MAX - 4095, 8192, errno.EFBIG),
    ("s3_punch_overflow", PUNCH, LLONG_MAX - 4095, 8192, errno.EFBIG),
    ("s3_before_s4_mode0_overflow", 0, LLONG_MAX - 4095, 8192, errno.EFBIG),
    ("s3_before_s6_unaligned_overflow", KEEP, LLONG_MAX, 1, errno.EFBIG),
    # step 4: no KEEP_SIZE -> EOPNOTSUPP
    ("s4_mode0", 0, 0, 4096, errno.EOPNOTSUPP),
    ("s4_zero_range", FALLOC_FL_ZERO_RANGE, 0, 4096, errno.EOPNOTSUPP),
    ("s4_collapse", FALLOC_FL_COLLAPSE_RANGE, 0, 4096, errno.EOPNOTSUPP),
    ("s4_insert", FALLOC_FL_INSERT_RANGE, 0, 4096, errno.EOPNOTSUPP),
    ("s4_unshare", FALLOC_FL_UNSHARE_RANGE, 0, 4096, errno.EOPNOTSUPP),
    ("s4_write_zeroes", FALLOC_FL_WRITE_ZEROES, 0, 4096, errno.EOPNOTSUPP),
    ("s4_before_s6_mode0_unaligned", 0, 1, 1, errno.EOPNOTSUPP),
    # step 5: anything but KEEP or PUNCH|KEEP -> EOPNOTSUPP
    ("s5_zero_keep", FALLOC_FL_ZERO_RANGE | KEEP, 0, 4096, errno.EOPNOTSUPP),
    ("s5_unshare_keep", FALLOC_FL_UNSHARE_RANGE | KEEP, 0, 4096, errno.EOPNOTSUPP),
    ("s5_before_s6_unaligned", FALLOC_FL_ZERO_RANGE | KEEP, 1, 1, errno.EOPNOTSUPP),
    ("s5_before_s7_past_eof", FALLOC_FL_UNSHARE_RANGE | KEEP, 4 * MiB, 4096,
     errno.EOPNOTSUPP),
    # step 6: unaligned -> EINVAL
    ("s6_unaligned_offset", KEEP, 1, 4096, errno.EINVAL),
    ("s6_unaligned_len", KEEP, 0, 4097, errno.EINVAL),
    ("s6_len_llong_max", KEEP, 0, LLONG_MAX, errno.EINVAL),
    ("s6_punch_unaligned", PUNCH, 4096, 100, errno.EINVAL),
    ("s6_before_s7_punch_unaligned_past_eof", PUNCH, 4 * MiB + 1, 4096, errno.EINVAL),
    ("s6_before_s7_alloc_unaligned_past_eof", KEEP, 4 * MiB, 1, errno.EINVAL),
    # step 7: allocate past size -> EINVAL; punch has no size check
    ("s7_alloc_at_eof", KEEP, 2 * MiB, 4096, errno.EINVAL),
    ("s7_alloc_straddling_eof", KEEP, 2 * MiB - 4096, 8192, errno.EINVAL),
    ("s7_alloc_past_eof", KEEP, 8 * MiB, 4096, errno.EINVAL),
    ("s7_alloc_1TiB_on_2MiB", KEEP, 0, TiB, errno.EINVAL),
    ("s7_punch_at_eof_ok", PUNCH, 2 * MiB, 4096, 0),
    ("s7_punch_across_eof_ok", PUNCH, 2 * MiB - 4096, 8192, 0),
    ("s7_punch_far_past_eof_ok", PUNCH, TiB, 4096, 0),
    ("s7_punch_max_len_ok", PUNCH, 0, MAXSIZE, 0),
    # success
    ("ok_allocate_whole_file", KEEP, 0, 2 * MiB, 0),
    ("ok_allocate_last_page", KEEP, 2 * MiB - 4096, 4096, 0),
]


@pytest.mark.parametrize("name,mode,offset,length,expect", FALLOC_TABLE,
                         ids=[row[0] for row in FALLOC_TABLE])
def test_fallocate_check_order_spec_4_3(g, name, mode, offset, length, expect):
    assert errno_of(g.fallocate, mode, offset, length) == expect


@pytest.mark.parametrize("name,mode,offset,length,expect",
                         [r for r in FALLOC_TABLE if r[4] != 0],
                         ids=[r[0] for r in FALLOC_TABLE if r[4] != 0])
def test_fallocate_errors_change_nothing_and_announce_nothing(g, name, mode, offset,
                                                              length, expect):
    g.write(0, b"x" * 8192)
    rec = g.subscribe(Recorder())
    before = g.describe()
    with pytest.raises(OSError):
        g.fallocate(mode, offset, length)
    assert g.describe() == before
    assert rec.events == []


def test_fallocate_allocate_last_page_of_1TiB_and_max_size_file():
    for size in (TiB, MAXSIZE):
        m = GuestMemfd.create(size, SHARED_FLAGS)
        m.fallocate(KEEP, size - 4096, 4096)
        assert m.allocated_runs() == [(size - 4096, size)]
        assert m.page_state(size - 4096)["state"] == "allocated"
        m.close()


def test_fallocate_allocate_keeps_populated_data(g):
    g.write(4096, b"keep me")
    g.fallocate(KEEP, 0, 2 * MiB)
    assert g.read(4096, 7) == b"keep me"
    assert g.page_state(4096)["state"] == "populated"
    assert g.page_state(0)["state"] == "allocated"


def test_fallocate_allocate_announces_nothing(g):
    rec = g.subscribe(Recorder())
    g.fallocate(KEEP, 0, 8192)
    assert rec.events == []


def test_fallocate_punch_zeroes_only_punched_pages(g):
    g.write(0, b"A" * 3 * PAGE_SIZE)
    g.fallocate(PUNCH, PAGE_SIZE, PAGE_SIZE)
    assert g.read(0, PAGE_SIZE) == b"A" * PAGE_SIZE
    assert g.read(PAGE_SIZE, PAGE_SIZE) == bytes(PAGE_SIZE)
    assert g.read(2 * PAGE_SIZE, PAGE_SIZE) == b"A" * PAGE_SIZE


def test_fallocate_punch_returns_pages_to_hole_and_frees_backing(g):
    g.write(0, b"B" * 4 * PAGE_SIZE)
    assert os.fstat(g.backing_fd).st_blocks > 0
    g.fallocate(PUNCH, 0, 4 * PAGE_SIZE)
    assert g.page_state(0)["state"] == "hole"
    assert g.allocated_runs() == [] and g.populated_runs() == []
    assert os.fstat(g.backing_fd).st_blocks == 0


def test_fallocate_punch_does_not_change_attributes_v8(g):
    g.set_memory_attributes(0, 4 * PAGE_SIZE, PRIV)
    g.fallocate(PUNCH, 0, 2 * MiB)
    assert g.private_runs() == [(0, 4 * PAGE_SIZE)]


def test_fallocate_punch_keeps_pin_counts(g):
    g.pin(0, PAGE_SIZE)
    g.fallocate(PUNCH, 0, PAGE_SIZE)
    assert g.pin_count(0) == 1


def test_fallocate_punch_event_range_is_clipped_to_size(g):
    rec = g.subscribe(Recorder())
    g.fallocate(PUNCH, 2 * MiB - PAGE_SIZE, 16 * PAGE_SIZE)
    assert rec.events == [("punch", 2 * MiB - PAGE_SIZE, PAGE_SIZE, "before"),
                          ("punch", 2 * MiB - PAGE_SIZE, PAGE_SIZE, "after")]


def test_fallocate_punch_wholly_past_eof_announces_nothing(g):
    rec = g.subscribe(Recorder())
    g.fallocate(PUNCH, 4 * MiB, PAGE_SIZE)
    assert rec.events == []


def test_punch_before_event_sees_old_state_after_event_sees_new(g):
    g.write(0, b"C" * PAGE_SIZE)
    seen = []

    def cb(ev):
        seen.append((ev.phase, g.read(0, 1), g.page_state(0)["state"]))

    g.subscribe(cb)
    g.fallocate(PUNCH, 0, PAGE_SIZE)
    assert seen == [("before", b"C", "populated"), ("after", b"\0", "hole")]


def test_punch_refused_by_subscriber_changes_nothing(g):
    g.write(0, b"D" * PAGE_SIZE)
    rec = g.subscribe(Recorder())

    def refuse(ev):
        raise OSError(errno.EBUSY, "no")

    g.subscribe(refuse)
    assert errno_of(g.fallocate, PUNCH, 0, PAGE_SIZE) == errno.EBUSY
    assert g.read(0, 1) == b"D"
    assert g.page_state(0)["state"] == "populated"
    assert rec.events == [("punch", 0, PAGE_SIZE, "before"),
                          ("punch", 0, PAGE_SIZE, "abort")]


# =================================================================== §6.3

def test_attr2_check1_flags_nonzero_is_EINVAL_first(g):
    # flags wins over every later check (all of which are also violated here).
    with pytest.raises(OSError) as ei:
        g.set_memory_attributes(1, 0, 0xFF, flags=1, reserved=(1,) * 11)
    assert ei.value.errno == errno.EINVAL and "flags" in ei.value.strerror
    assert not hasattr(ei.value, "error_offset")


def test_attr2_check2_reserved_nonzero_is_EINVAL_before_attributes(g):
    for i in range(11):
        res = [0] * 11
        res[i] = 1
        with pytest.raises(OSError) as ei:
            g.set_memory_attributes(1, 0, 0xFF, reserved=res)
        assert ei.value.errno == errno.EINVAL and "reserved" in ei.value.strerror


def test_attr2_check3_attributes_outside_PRIVATE_is_EINVAL_before_size(g):
    for attr in (1, 2, 4, 0x10, PRIV | 1, U64_MAX):
        with pytest.raises(OSError) as ei:
            g.set_memory_attributes(1, 0, attr)
        assert ei.value.errno == errno.EINVAL and "attributes" in ei.value.strerror


def test_attr2_check4_size_zero_or_u64_wrap_is_EINVAL_before_alignment(g):
    for off, size in ((1, 0), (0, 0), (U64_MAX - 4095, 8192), (U64_MAX, 1)):
        with pytest.raises(OSError) as ei:
            g.set_memory_attributes(off, size, PRIV)
        assert ei.value.errno == errno.EINVAL and "wraps" in ei.value.strerror


def test_attr2_check5_unaligned_is_EINVAL_before_bounds(g):
    for off, size in ((1, 4096), (0, 4095), (4 * MiB + 1, 4096)):
        with pytest.raises(OSError) as ei:
            g.set_memory_attributes(off, size, PRIV)
        assert ei.value.errno == errno.EINVAL and "aligned" in ei.value.strerror


def test_attr2_check6_offset_at_or_past_size_or_end_past_size_is_EINVAL(g):
    for off, size in ((2 * MiB, 4096), (4 * MiB, 4096), (2 * MiB - 4096, 8192), (0, 4 * MiB)):
        with pytest.raises(OSError) as ei:
            g.set_memory_attributes(off, size, PRIV)
        assert ei.value.errno == errno.EINVAL and "file size" in ei.value.strerror


def test_attr2_argument_errors_change_nothing_and_announce_nothing(g):
    rec = g.subscribe(Recorder())
    before = g.describe()
    for args, kw in [((0, 4096, PRIV), {"flags": 1}),
                     ((0, 4096, PRIV), {"reserved": [0] * 10 + [1]}),
                     ((0, 4096, 9), {}), ((0, 0, PRIV), {}),
                     ((0, 100, PRIV), {}), ((2 * MiB, 4096, PRIV), {})]:
        assert errno_of(g.set_memory_attributes, *args, **kw) == errno.EINVAL
    assert g.describe() == before and rec.events == []


def test_attr2_shared_to_private_and_back(g):
    rec = g.subscribe(Recorder())
    g.set_memory_attributes(8192, 8192, PRIV)
    assert g.private_runs() == [(8192, 16384)]
    assert g.is_private(8192, 8192) and not g.is_private(4096, 8192)
    g.set_memory_attributes(8192, 4096, 0)
    assert g.private_runs() == [(12288, 16384)]
    assert rec.events == [("to_private", 8192, 8192, "before"),
                          ("to_private", 8192, 8192, "after"),
                          ("to_shared", 8192, 4096, "before"),
                          ("to_shared", 8192, 4096, "after")]


def test_attr2_noop_fast_path_returns_0_and_announces_nothing(gp):
    rec = gp.subscribe(Recorder())
    gp.pin(0, 4096)  # pins do not matter when nothing changes
    gp.set_memory_attributes(0, 2 * MiB, PRIV)
    assert rec.events == []


def test_attr2_conversion_announces_requested_range_even_if_partly_converted(g):
    g.set_memory_attributes(0, 4096, PRIV)
    rec = g.subscribe(Recorder())
    g.set_memory_attributes(0, 3 * 4096, PRIV)
    assert rec.events == [("to_private", 0, 3 * 4096, "before"),
                          ("to_private", 0, 3 * 4096, "after")]


def test_attr2_to_private_with_pinned_page_is_EAGAIN_with_error_offset(g):
    g.pin(5 * 4096, 4096)
    g.pin(6 * 4096, 4096)
    with pytest.raises(OSError) as ei:
        g.set_memory_attributes(2 * 4096, 8 * 4096, PRIV)
    assert ei.value.errno == errno.EAGAIN
    assert ei.value.error_offset == 5 * 4096
    assert g.private_runs() == []


def test_attr2_EAGAIN_error_offset_never_below_requested_offset(g):
    g.pin(0, 4 * 4096)  # pinned run starts before the requested range
    with pytest.raises(OSError) as ei:
        g.set_memory_attributes(2 * 4096, 4096, PRIV)
    assert ei.value.error_offset == 2 * 4096


def test_attr2_EAGAIN_applies_nothing_and_aborts_subscribers(g):
    g.write(0, b"E" * 4096)
    g.set_memory_attributes(16 * 4096, 4096, PRIV)
    g.pin(3 * 4096, 4096)
    rec = g.subscribe(Recorder())
    before = g.describe()
    assert errno_of(g.set_memory_attributes, 0, 32 * 4096, PRIV) == errno.EAGAIN
    assert g.describe() == before
    assert rec.events == [("to_private", 0, 32 * 4096, "before"),
                          ("to_private", 0, 32 * 4096, "abort")]


def test_attr2_pin_outside_range_does_not_block(g):
    g.pin(0, 4096)
    g.set_memory_attributes(4096, 4096, PRIV)
    assert g.private_runs() == [(4096, 8192)]


def test_attr2_private_to_shared_ignores_pins(gp):
    gp.pin(0, 4096)
    gp.set_memory_attributes(0, 8192, 0)
    assert gp.shared_runs() == [(0, 8192)]


def test_attr2_unpin_then_retry_succeeds(g):
    g.pin(0, 4096)
    assert errno_of(g.set_memory_attributes, 0, 4096, PRIV) == errno.EAGAIN
    g.unpin(0, 4096)
    g.set_memory_attributes(0, 4096, PRIV)
    assert g.is_private(0, 4096)


def test_attr2_unmap_first_policy_can_unpin_in_before_phase(g):
    g.pin(0, 4096)

    def unmap_first(ev):
        if ev.kind == "to_private" and ev.phase == "before":
            g.unpin(0, 4096)

    g.subscribe(unmap_first)
    g.set_memory_attributes(0, 4096, PRIV)
    assert g.is_private(0, 4096) and g.pin_count(0) == 0


def test_attr2_subscriber_refusal_keeps_state_and_sets_error_offset(g):
    first = g.subscribe(Recorder())
    third = Recorder()

    def refuse(ev):
        raise OSError(errno.EAGAIN, "iommu maps it")

    g.subscribe(refuse)
    g.subscribe(third)
    with pytest.raises(OSError) as ei:
        g.set_memory_attributes(4096, 4096, PRIV)
    assert ei.value.errno == errno.EAGAIN and ei.value.error_offset == 4096
    assert g.private_runs() == []
    assert first.events == [("to_private", 4096, 4096, "before"),
                            ("to_private", 4096, 4096, "abort")]
    assert third.events == []


def test_attr2_subscriber_error_offset_is_kept_but_clamped(g):
    def refuse(ev):
        exc = OSError(errno.EAGAIN, "busy")
        exc.error_offset = 0
        raise exc

    g.subscribe(refuse)
    with pytest.raises(OSError) as ei:
        g.set_memory_attributes(8192, 4096, PRIV)
    assert ei.value.error_offset == 8192


def test_attr2_conversion_keeps_contents_both_ways(g):
    g.write(0, b"secret")
    g.set_memory_attributes(0, 4096, PRIV)
    assert g.read(0, 6) == b"secret"
    g.set_memory_attributes(0, 4096, 0)
    assert g.read(0, 6) == b"secret"


def test_attr2_before_event_sees_old_attributes_after_sees_new(g):
    seen = []
    g.subscribe(lambda ev: seen.append((ev.phase, g.is_private(0, 4096))))
    g.set_memory_attributes(0, 4096, PRIV)
    assert seen == [("before", False), ("after", True)]


def test_attr2_negative_ints_are_read_as_u64(g):
    # offset -4096 == 0xFFFF...F000 as u64: +4096 wraps -> EINVAL (check 4)
    assert errno_of(g.set_memory_attributes, -4096, 4096, PRIV) == errno.EINVAL
    assert errno_of(g.set_memory_attributes, -4096, 8192, PRIV) == errno.EINVAL


# ============================================================= event contract

def test_events_every_before_paired_with_after_and_carry_gmem(g):
    got = []
    g.subscribe(got.append)
    g.fallocate(PUNCH, 0, 4096)
    assert [e.phase for e in got] == ["before", "after"]
    assert all(e.gmem is g for e in got)
    assert got[0].end == 4096


def test_events_unsubscribe_stops_delivery(g):
    rec = g.subscribe(Recorder())
    g.unsubscribe(rec)
    g.unsubscribe(rec)  # unknown callbacks are ignored
    g.fallocate(PUNCH, 0, 4096)
    assert rec.events == []


def test_events_subscriber_unsubscribing_in_before_gets_no_after(g):
    got = []

    def once(ev):
        got.append(ev.phase)
        g.unsubscribe(once)

    g.subscribe(once)
    rec = g.subscribe(Recorder())
    g.fallocate(PUNCH, 0, 4096)
    assert got == ["before"]
    assert [e[3] for e in rec.events] == ["before", "after"]


def test_events_reentrant_change_from_subscriber_is_EBUSY(g):
    errs = []

    def nested(ev):
        if ev.phase == "before":
            errs.append(errno_of(g.set_memory_attributes, 0, 4096, PRIV))

    g.subscribe(nested)
    g.fallocate(PUNCH, 0, 4096)
    assert errs == [errno.EBUSY]
    assert g.private_runs() == []


def test_events_exception_in_after_is_a_bug_but_change_is_applied(g):
    late = g.subscribe(Recorder())

    def broken(ev):
        if ev.phase == "after":
            raise ValueError("bug")

    g.subscribe(broken)
    late2 = g.subscribe(Recorder())
    with pytest.raises(RuntimeError):
        g.set_memory_attributes(0, 4096, PRIV)
    assert g.is_private(0, 4096)
    assert late.events[-1][3] == "after" and late2.events[-1][3] == "after"


def test_events_non_oserror_in_before_propagates_and_aborts(g):
    rec = g.subscribe(Recorder())

    def bug(ev):
        raise KeyError("bug")

    g.subscribe(bug)
    with pytest.raises(KeyError):
        g.set_memory_attributes(0, 4096, PRIV)
    assert g.private_runs() == []
    assert rec.events[-1][3] == "abort"


# ======================================================== pins, raw access

@pytest.mark.parametrize("off,length", [(1, 4096), (0, 4095), (0, 0), (-4096, 4096),
                                        (2 * MiB, 4096), (2 * MiB - 4096, 8192)])
def test_pin_bad_range_is_EINVAL(g, off, length):
    assert errno_of(g.pin, off, length) == errno.EINVAL
    assert g.pin_runs() == []


def test_pin_counts_stack_and_unpin_drops_them(g):
    g.pin(0, 8192)
    g.pin(4096, 8192)
    assert g.pin_runs() == [(0, 4096, 1), (4096, 8192, 2), (8192, 12288, 1)]
    g.unpin(0, 8192)
    assert g.pin_runs() == [(4096, 12288, 1)]


def test_unpin_of_unpinned_page_is_EINVAL_and_changes_nothing(g):
    g.pin(0, 4096)
    assert errno_of(g.unpin, 0, 8192) == errno.EINVAL
    assert g.pin_runs() == [(0, 4096, 1)]


def test_write_past_eof_is_EINVAL_and_never_grows_backing(g):
    assert errno_of(g.write, 2 * MiB - 2, b"abc") == errno.EINVAL
    assert errno_of(g.write, -1, b"a") == errno.EINVAL
    assert os.fstat(g.backing_fd).st_size == 2 * MiB


def test_read_is_short_at_eof_and_empty_past_it(g):
    g.write(2 * MiB - 3, b"xyz")
    assert g.read(2 * MiB - 3, 100) == b"xyz"
    assert g.read(2 * MiB, 10) == b""
    assert g.read(0, 0) == b""
    assert errno_of(g.read, -1, 1) == errno.EINVAL


def test_write_marks_pages_populated_across_page_boundary(g):
    g.write(4095, b"ab")
    assert g.populated_runs() == [(0, 8192)]
    assert g.allocated_runs() == [(0, 8192)]


def test_touch_marks_populated_and_clips_to_size(g):
    g.touch(2 * MiB - 4096, 10 * 4096)
    assert g.populated_runs() == [(2 * MiB - 4096, 2 * MiB)]


def test_raw_access_has_no_attribute_policy(gp):
    gp.write(0, b"p")
    assert gp.read(0, 1) == b"p"


def test_page_state_and_describe(g):
    g.fallocate(KEEP, 0, 8192)
    g.write(0, b"z")
    g.set_memory_attributes(8192, 4096, PRIV)
    g.pin(8192, 4096)
    assert g.page_state(0) == {"offset": 0, "state": "populated", "private": False, "pins": 0}
    assert g.page_state(4097) == {"offset": 4096, "state": "allocated", "private": False,
                                  "pins": 0}
    assert g.page_state(8192) == {"offset": 8192, "state": "hole", "private": True, "pins": 1}
    d = g.describe()
    assert d["size"] == 2 * MiB and d["flags"] == SHARED_FLAGS
    assert d["flag_names"] == ["MMAP", "INIT_SHARED"]
    assert d["attributes"] == [[0, 8192, "shared"], [8192, 12288, "private"],
                               [12288, 2 * MiB, "shared"]]
    assert d["allocated"] == [[0, 8192]] and d["populated"] == [[0, 4096]]
    assert d["pins"] == [[8192, 12288, 1]]
    assert d["private_bytes"] == 4096
    short = g.describe(max_runs=1)
    assert short["attributes"] == [[0, 8192, "shared"]]
    assert short["truncated"] == ["attributes"]


def test_queries_outside_file_are_EINVAL(g):
    assert errno_of(g.is_private, 2 * MiB, 4096) == errno.EINVAL
    assert errno_of(g.page_state, 2 * MiB) == errno.EINVAL
    assert errno_of(g.private_runs, 0, 4 * MiB) == errno.EINVAL


def test_close_releases_backing_and_later_calls_are_EBADF():
    m = GuestMemfd.create(4096, SHARED_FLAGS)
    fd = m.backing_fd
    m.close()
    m.close()
    assert m.closed
    with pytest.raises(OSError) as ei:
        os.fstat(fd)
    assert ei.value.errno == errno.EBADF
    for call in (lambda: m.read(0, 1), lambda: m.write(0, b"a"),
                 lambda: m.fallocate(PUNCH, 0, 4096), lambda: m.pin(0, 4096),
                 lambda: m.set_memory_attributes(0, 4096, PRIV), lambda: m.backing_fd):
        assert errno_of(call) == errno.EBADF


# ===================================================== stateful vs reference

NPAGES = 8
SIZE = NPAGES * PAGE_SIZE

# offsets/lengths: mostly page multiples in and a bit beyond the file, some odd
page_off = st.integers(0, NPAGES + 2).map(lambda p: p * PAGE_SIZE)
odd_off = st.sampled_from([1, PAGE_SIZE - 1, PAGE_SIZE + 7])
any_off = st.one_of(page_off, page_off, page_off, odd_off)
any_len = st.one_of(st.integers(0, NPAGES + 2).map(lambda p: p * PAGE_SIZE),
                    st.integers(0, NPAGES + 2).map(lambda p: p * PAGE_SIZE),
                    st.sampled_from([1, PAGE_SIZE + 1]))
modes = st.sampled_from([KEEP, KEEP, PUNCH, PUNCH, 0, FALLOC_FL_PUNCH_HOLE,
                         FALLOC_FL_ZERO_RANGE | KEEP])


def ref_fallocate_errno(mode, off, length, size):
    """The §4.3 table, restricted to the modes the machine draws."""
    if off < 0 or length <= 0:
        return errno.EINVAL
    if mode == FALLOC_FL_PUNCH_HOLE:
        return errno.EOPNOTSUPP
    if not mode & KEEP:
        return errno.EOPNOTSUPP
    if mode not in (KEEP, PUNCH):
        return errno.EOPNOTSUPP
    if off % PAGE_SIZE or length % PAGE_SIZE:
        return errno.EINVAL
    if mode == KEEP and off + length > size:
        return errno.EINVAL
    return 0


class GmemMachine(RuleBasedStateMachine):
    """Random operations on an 8-page file vs a per-page reference."""

    def __init__(self):
        super().__init__()
        self.init_shared = True
        self.g = GuestMemfd.create(SIZE, SHARED_FLAGS)
        self.rec = self.g.subscribe(Recorder())
        self.refuse = None  # None or the event kind the refuser refuses
        self.g.subscribe(self._refuser)
        self.private = [False] * NPAGES
        self.alloc = [False] * NPAGES
        self.popul = [False] * NPAGES
        self.pins = [0] * NPAGES
        self.data = bytearray(SIZE)
        self.expect_events = []

    def _refuser(self, ev):
        if ev.phase == "before" and ev.kind == self.refuse:
            raise OSError(errno.EAGAIN, "refused by test subscriber")

    def teardown(self):
        self.g.close()

    def _announce(self, kind, off, length, ok_after):
        self.expect_events.append((kind, off, length, "before"))
        self.expect_events.append((kind, off, length, "after" if ok_after else "abort"))

    @rule(kind=st.sampled_from([None, "punch", "to_private", "to_shared"]))
    def set_refuser(self, kind):
        self.refuse = kind

    @rule(mode=modes, off=any_off, length=any_len)
    def fallocate(self, mode, off, length):
        exp = ref_fallocate_errno(mode, off, length, SIZE)
        end = min(off + length, SIZE)
        punch = exp == 0 and mode == PUNCH
        if punch and off < end:
            refused = self.refuse == "punch"
            self._announce("punch", off, end - off, not refused)
            if refused:
                exp = errno.EAGAIN
        got = errno_of(self.g.fallocate, mode, off, length)
        assert got == exp, (mode, off, length)
        if exp:
            return
        for p in range(off // PAGE_SIZE, end // PAGE_SIZE):
            if punch:
                self.alloc[p] = self.popul[p] = False
                self.data[p * PAGE_SIZE:(p + 1) * PAGE_SIZE] = bytes(PAGE_SIZE)
            else:
                self.alloc[p] = True

    @rule(off=any_off, length=any_len, private=st.booleans())
    def convert(self, off, length, private):
        attr = PRIV if private else 0
        if length == 0 or off % PAGE_SIZE or length % PAGE_SIZE or off >= SIZE \
                or off + length > SIZE:
            exp, eoff = errno.EINVAL, None
        else:
            pages = range(off // PAGE_SIZE, (off + length) // PAGE_SIZE)
            if all(self.private[p] == private for p in pages):
                exp, eoff = 0, None
            else:
                kind = "to_private" if private else "to_shared"
                exp, eoff = 0, None
                if self.refuse == kind:
                    exp, eoff = errno.EAGAIN, off
                elif private:
                    pinned = [p for p in pages if self.pins[p]]
                    if pinned:
                        exp, eoff = errno.EAGAIN, pinned[0] * PAGE_SIZE
                self._announce(kind, off, length, exp == 0)
                if exp == 0:
                    for p in pages:
                        self.private[p] = private
        try:
            self.g.set_memory_attributes(off, length, attr)
            got, goff = 0, None
        except OSError as exc:
            got, goff = exc.errno, getattr(exc, "error_offset", None)
        assert (got, goff) == (exp, eoff), (off, length, private)

    @rule(off=any_off, length=any_len, unpin=st.booleans())
    def pin(self, off, length, unpin):
        ok = (length > 0 and off % PAGE_SIZE == 0 and length % PAGE_SIZE == 0
              and off + length <= SIZE)
        pages = range(off // PAGE_SIZE, (off + length) // PAGE_SIZE) if ok else []
        if ok and unpin and any(self.pins[p] == 0 for p in pages):
            ok = False
        got = errno_of(self.g.unpin if unpin else self.g.pin, off, length)
        assert got == (0 if ok else errno.EINVAL)
        if ok:
            for p in pages:
                self.pins[p] += -1 if unpin else 1

    @rule(off=st.integers(0, SIZE + 10), data=st.binary(min_size=0, max_size=2 * PAGE_SIZE + 2))
    def write(self, off, data):
        ok = off + len(data) <= SIZE
        assert errno_of(self.g.write, off, data) == (0 if ok else errno.EINVAL)
        if ok and data:
            self.data[off:off + len(data)] = data
            for p in range(off // PAGE_SIZE, (off + len(data) - 1) // PAGE_SIZE + 1):
                self.alloc[p] = self.popul[p] = True

    @invariant()
    def state_matches_reference(self):
        g = self.g
        for p in range(NPAGES):
            st_ = g.page_state(p * PAGE_SIZE)
            assert st_["private"] == self.private[p], p
            assert st_["pins"] == self.pins[p], p
            want = "populated" if self.popul[p] else "allocated" if self.alloc[p] else "hole"
            assert st_["state"] == want, p
        assert g.read(0, SIZE) == bytes(self.data)
        assert self.rec.events == self.expect_events
        for name in ("_attrs", "_allocated", "_populated", "_pins"):
            getattr(g, name).check_invariants()


TestGmemMachine = GmemMachine.TestCase
TestGmemMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
