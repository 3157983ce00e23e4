"""In-process tests of the guest_memfd invalidation policies, the platform
models and the explicit IOPTE runs (iommufd_emu/policy.py, platform.py,
iopte.py, events.py)."""

import errno
import random

import pytest

import ioctl_abi as A
from fakes import FakeFileRef, IommufdHarness
from gmemfs.gmem import (GuestMemfd, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED,
                         FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEMORY_ATTRIBUTE_PRIVATE)
from iommufd_emu import dma, policy
from iommufd_emu.events import EventLog
from iommufd_emu.iopte import HUGE, SMALL, IoptTable
from iommufd_emu.platform import CcConfig

MB = 1 << 20
PS = 4096
PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
PRIV = KVM_MEMORY_ATTRIBUTE_PRIVATE
GPA = 0x2000000


def E(fn, *a, **kw):
    with pytest.raises(OSError) as ei:
        fn(*a, **kw)
    return ei.value


# ====================================================== IoptTable (unit)

def rows(t, s=None, e=None):
    return [(a, b, v.size, v.kind) for a, b, v in t.runs(s, e)]


def test_rewrite_chooses_huge_only_for_aligned_uniform_windows():
    t = IoptTable()
    g = object()
    # area [1 MiB, 7 MiB) of IOVA, delta 0: windows [2,4) and [4,6) are whole
    t.rewrite(1 * MB, 7 * MB, [(1 * MB, 7 * MB, "shared", "shared")], g, 0, 0, 1 * MB, 7 * MB)
    assert rows(t) == [(1 * MB, 2 * MB, SMALL, "shared"), (2 * MB, 6 * MB, HUGE, "shared"),
                       (6 * MB, 7 * MB, SMALL, "shared")]
    assert t.counts() == {"huge": 2, "small": 512, "runs": 3}
    # a delta that is not 2 MiB aligned: never huge
    t2 = IoptTable()
    t2.rewrite(2 * MB, 6 * MB, [(2 * MB, 6 * MB, "shared", "shared")], g, PS, 0, 2 * MB, 6 * MB)
    assert rows(t2) == [(2 * MB, 6 * MB, SMALL, "shared")]
    # a window with two states is 4 KiB
    t3 = IoptTable()
    t3.rewrite(0, 2 * MB, [(0, PS, "private", "private"), (PS, 2 * MB, "shared", "shared")],
               g, 0, 0, 0, 2 * MB)
    assert rows(t3) == [(0, PS, SMALL, "private"), (PS, 2 * MB, SMALL, "shared")]


def test_remove_splits_once_per_window_and_rewrite_merges():
    t = IoptTable()
    g = object()
    t.rewrite(0, 4 * MB, [(0, 4 * MB, "shared", "shared")], g, 0, 0, 0, 4 * MB)
    removed, splits, at = t.remove(0x5000, 0x7000)
    assert (removed, splits, at) == (0x2000, 1, 0)
    assert rows(t) == [(0, 0x5000, SMALL, "shared"), (0x7000, 2 * MB, SMALL, "shared"),
                       (2 * MB, 4 * MB, HUGE, "shared")]
    # a second removal in the already split window is no new split
    assert t.remove(0x9000, 0xA000)[1] == 0
    # a whole window removed is not a split
    assert t.remove(2 * MB, 4 * MB)[1:] == (0, None)
    # putting the pages back merges the first window (one merge)
    changed, splits, _, merges, mat = t.rewrite(0, 2 * MB, [(0, 2 * MB, "shared", "shared")],
                                                g, 0, 1, 0, 4 * MB)
    assert changed and (splits, merges, mat) == (0, 1, 0)
    # the re-added whole window [2, 4) was empty before: no merge
    changed, splits, _, merges, _ = t.rewrite(2 * MB, 4 * MB, [(2 * MB, 4 * MB, "shared", "shared")],
                                              g, 0, 1, 0, 4 * MB)
    assert (splits, merges) == (0, 0)
    assert rows(t) == [(0, 4 * MB, HUGE, "shared")]


def test_remove_with_predicate_and_one_tib_is_one_run():
    t = IoptTable()
    g = object()
    tib = 1 << 40
    t.rewrite(0, tib, [(0, tib, "shared", "shared")], g, 0, 0, 0, tib)
    assert len(t) == 1 and t.counts()["huge"] == tib // HUGE
    assert t.remove(0, tib, lambda v: v.kind == "private")[0] == 0
    removed, splits, at = t.remove(tib // 2, tib // 2 + PS, lambda v: v.kind == "shared")
    assert (removed, splits, at) == (PS, 1, tib // 2)
    assert len(t) == 3


# ============================================================ harness

class Rig:
    def __init__(self, platform="none", policy_name="none", strict=False, size=4 * MB,
                 flags=GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED):
        self.log = EventLog(platform, policy_name)
        self.h = IommufdHarness(options={"platform": platform, "policy": policy_name,
                                         "strict": strict, "events": self.log})
        self.h.caller.mmap(0x60000000, 0x100000)
        self.cc = self.h.ctx.cc
        self.g = GuestMemfd.create(size, flags)
        self.g.name = "g0"
        self.ioas = self.h.ioas_alloc()
        _, _, self.idev = self.h.mock_domain(self.ioas)
        self.fd = self.h.caller.add_fd(FakeFileRef("gmem", gmem=self.g))

    def iova(self, gpa=GPA, shared=True):
        b = self.cc.shared_bit
        return gpa | (1 << b) if b is not None and shared else gpa

    def map(self, off=0, length=None, shared=True):
        length = self.g.size - off if length is None else length
        return self.h.map_file(self.ioas, self.fd, off, length, iova=self.iova(GPA + off, shared))

    def dma(self, iova, n=16, write=False, private=False):
        return dma.device_dma(self.h.ctx, self.h.ctx.lookup(self.idev), iova, n, write,
                              data=b"w" * n if write else None, private=private)

    def kinds(self):
        return [e["kind"] for e in self.log.events()]

    def table(self):
        return policy.state(self.h.ctx.lookup(self.ioas)).iopt

    def close(self):
        self.h.ctx.close()
        self.g.close()


@pytest.fixture
def rig():
    made = []

    def make(*a, **kw):
        r = Rig(*a, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


# ============================================================ options

def test_cc_config_validation():
    assert CcConfig.from_options({}).platform == "none"
    c = CcConfig.from_options({"platform": "tdx", "policy": "mirror", "tdx_shared_bit": "47",
                               "strict": "1"})
    assert (c.platform, c.policy, c.tdx_shared_bit, c.strict) == ("tdx", "mirror", 47, True)
    assert c.iova_kind(1 << 47) == "shared" and c.iova_kind(0x1000) == "private"
    assert CcConfig.from_options({"platform": "snp"}).iova_kind(1 << 47) is None
    for bad in ({"platform": "sev"}, {"policy": "maybe"}, {"tdx_shared_bit": "x"},
                {"cca_shared_bit": "12"}, {"strict": "perhaps"}):
        with pytest.raises(ValueError):
            CcConfig.from_options(bad)


def option(h, op, ioas, val=0, option_id=A.GMEMFS_OPTION_GMEM_POLICY):
    return h.ioctl("IOMMU_OPTION", "iommu_option", option_id=option_id, op=op,
                   object_id=ioas, val64=val).val64


def test_iommu_option_gmem_policy_get_set_errors(rig):
    r = rig("tdx", "revoke")
    h, i = r.h, r.ioas
    assert option(h, A.IOMMU_OPTION_OP_GET, i) == A.GMEMFS_GMEM_POLICY_REVOKE
    option(h, A.IOMMU_OPTION_OP_SET, i, A.GMEMFS_GMEM_POLICY_MIRROR)
    assert option(h, A.IOMMU_OPTION_OP_GET, i) == A.GMEMFS_GMEM_POLICY_MIRROR
    assert E(option, h, A.IOMMU_OPTION_OP_SET, i, 5).errno == errno.EINVAL
    assert E(option, h, A.IOMMU_OPTION_OP_SET, i, 1 << 40).errno == errno.EINVAL
    assert E(option, h, A.IOMMU_OPTION_OP_GET, 99).errno == errno.ENOENT
    assert E(option, h, A.IOMMU_OPTION_OP_SET, r.idev, 0).errno == errno.ENOENT
    assert E(option, h, 7, i).errno == errno.EOPNOTSUPP
    iova = r.map(0, 2 * MB)
    assert E(option, h, A.IOMMU_OPTION_OP_SET, i, A.GMEMFS_GMEM_POLICY_NONE).errno == errno.EBUSY
    option(h, A.IOMMU_OPTION_OP_SET, i, A.GMEMFS_GMEM_POLICY_MIRROR)      # same value: fine
    h.unmap(i, iova, 2 * MB)
    option(h, A.IOMMU_OPTION_OP_SET, i, A.GMEMFS_GMEM_POLICY_NONE)
    # a second IOAS starts with the mount's policy
    assert option(h, A.IOMMU_OPTION_OP_GET, h.ioas_alloc()) == A.GMEMFS_GMEM_POLICY_REVOKE


# ====================================================== scenario (a)

@pytest.mark.parametrize("platform,policy_name,fault,kinds,dead", [
    ("tdx", "none", dma.FAULT_MACHINE_CHECK, ["machine_check"], True),
    ("tdx", "revoke", dma.FAULT_MACHINE_CHECK, ["machine_check"], True),
    ("tdx", "invalidate", dma.FAULT_INVALIDATED, ["invalidate", "split", "io_fault"], False),
    ("tdx", "mirror", dma.FAULT_INVALIDATED, ["split", "io_fault"], False),
    ("snp", "none", dma.FAULT_RMP, ["rmp_fault"], False),
    ("snp", "mirror", dma.FAULT_RMP, ["split", "rmp_fault"], False),
    ("cca", "none", dma.FAULT_GPT, ["gpt_fault"], False),
    ("none", "none", dma.FAULT_NONE, [], False),
])
def test_scenario_a_convert_without_unmap(rig, platform, policy_name, fault, kinds, dead):
    r = rig(platform, policy_name)
    iova = r.map()
    assert r.dma(iova + 0x5000).fault_reason == 0
    r.g.set_memory_attributes(0x5000, PS, PRIV)
    res = r.dma(iova + 0x5000)
    assert res.fault_reason == fault
    assert r.kinds() == kinds
    assert r.log.host_dead == dead
    assert res.events == len([k for k in kinds if k in ("machine_check", "rmp_fault",
                                                        "gpt_fault", "io_fault")])
    if dead:
        ev = r.log.events("machine_check")[0]
        assert ev["iova"] == iova + 0x5000 and ev["offset"] == 0x5000 and ev["gmem"] == "g0"
        assert ev["device"] == r.idev and r.log.counters()["machine_checks"] == 1


def test_pin_refuses_conversion_until_unmap(rig):
    r = rig("tdx", "pin")
    iova = r.map()
    e = E(r.g.set_memory_attributes, 0x5000, PS, PRIV)
    assert e.errno == errno.EAGAIN and e.error_offset == 0x5000
    r.h.unmap(r.ioas, iova, r.g.size)
    r.g.set_memory_attributes(0x5000, PS, PRIV)
    assert r.kinds() == []


def test_strict_tdx_refuses_conversion_and_map(rig):
    r = rig("tdx", "none", strict=True)
    iova = r.map(0, 2 * MB)
    e = E(r.g.set_memory_attributes, 0x3000, 0x4000, PRIV)
    assert e.errno == errno.EAGAIN and e.error_offset == 0x3000
    assert r.kinds() == ["strict_violation"] and r.g.is_shared(0x3000, 0x4000)
    # a private page outside the mapping converts fine; mapping it shared is refused
    r.g.set_memory_attributes(3 * MB, PS, PRIV)
    assert E(r.map, 2 * MB, 2 * MB).errno == errno.EPERM
    r.map(2 * MB, 2 * MB, shared=False)                    # the private half is fine
    r.h.unmap(r.ioas, iova, 2 * MB)
    r.g.set_memory_attributes(0x3000, 0x4000, PRIV)
    # invalidate/mirror IOASes remove the shared IOPTE instead: no violation
    r2 = rig("tdx", "mirror", strict=True)
    r2.map()
    r2.g.set_memory_attributes(0x3000, 0x4000, PRIV)
    assert "strict_violation" not in r2.kinds()


# ====================================================== scenario (b)

@pytest.mark.parametrize("policy_name,fault,data,kinds", [
    ("none", 0, bytes(16), ["use_after_free"]),
    ("revoke", dma.FAULT_REVOKED, b"", ["revoke", "io_fault"]),
    ("invalidate", dma.FAULT_INVALIDATED, b"", ["invalidate", "split", "io_fault"]),
    ("mirror", 0, bytes(16), ["split", "merge"]),
    ("pin", 0, bytes(16), ["stale_page"]),
])
@pytest.mark.parametrize("platform", ["none", "tdx", "snp", "cca"])
def test_scenario_b_punch_inside_mapping(rig, platform, policy_name, fault, data, kinds):
    r = rig(platform, policy_name)
    iova = r.map()
    ioas = r.h.ctx.lookup(r.ioas)
    ranges = ioas.usable_ranges()
    r.g.write(0x5000, b"guest secret 123")
    r.g.fallocate(PUNCH, 0x5000, PS)
    res = r.dma(iova + 0x5000)
    assert res.fault_reason == fault and res.data == data
    assert r.kinds() == kinds
    # a write through the stale IOPTE goes nowhere (not into the file's new page)
    if policy_name in ("none", "pin"):
        r.dma(iova + 0x5000, write=True)
        assert r.g.read(0x5000, 16) == bytes(16)
    assert ioas.usable_ranges() == ranges          # areas never change IOVA_RANGES
    if policy_name == "revoke":
        assert ioas.area_at(iova).revoked
        assert r.h.unmap(r.ioas, iova, r.g.size) == r.g.size
        assert r.table().runs() == []


def test_uaf_is_per_page_and_remap_is_clean(rig):
    r = rig("none", "none")
    iova = r.map()
    r.g.fallocate(PUNCH, 0x5000, PS)
    res = r.dma(iova + 0x4000, 3 * PS)
    assert res.fault_reason == 0 and res.events == 1
    ev = r.log.events("use_after_free")[0]
    assert (ev["iova"], ev["offset"]) == (iova + 0x5000, 0x5000)
    r.h.unmap(r.ioas, iova, r.g.size)
    iova = r.map()
    assert r.dma(iova + 0x5000).events == 0


def test_correct_vmm_produces_no_event_anywhere():
    for platform in ("none", "tdx", "snp", "cca"):
        for pol in ("none", "revoke", "invalidate", "mirror", "pin"):
            r = Rig(platform, pol)
            try:
                a = r.map(0, 2 * MB)
                b = r.map(2 * MB, 2 * MB)
                assert r.dma(a + 0x5000, write=True).fault_reason == 0
                r.h.unmap(r.ioas, a, 2 * MB)                     # unmap before to-private
                r.g.set_memory_attributes(0x5000, PS, PRIV)
                a1 = r.map(0, 0x5000)
                a2 = r.map(0x6000, 2 * MB - 0x6000)
                assert r.dma(a1, 0x5000).fault_reason == 0
                r.g.set_memory_attributes(0x5000, PS, 0)
                a3 = r.map(0x5000, PS)                           # map after to-shared
                assert r.dma(a3).fault_reason == 0
                r.h.unmap(r.ioas, b, 2 * MB)                     # unmap before punch
                r.g.fallocate(PUNCH, 2 * MB, 2 * MB)
                r.map(2 * MB, 2 * MB)
                assert r.dma(a2, 0x1000, write=True).fault_reason == 0
                assert r.kinds() == [], (platform, pol, r.kinds())
            finally:
                r.close()


# ====================================================== mirror (c)

def expected_mirror(cc, g, iova, length, g0):
    """Oracle: the IOPTE rows mirror demands, computed window by window."""
    out = []
    delta = iova - g0
    for ws in range(iova // HUGE * HUGE, iova + length, HUGE):
        s, e = max(ws, iova), min(ws + HUGE, iova + length)
        half = cc.iova_kind(s)
        runs = [(a + delta, b + delta, "private" if v else "shared")
                for a, b, v in g.attribute_runs(s - delta, e - s)]
        whole = (s, e) == (ws, ws + HUGE) and delta % HUGE == 0
        if whole and len(runs) == 1 and (half is None or half == runs[0][2]):
            out.append((s, e, HUGE, runs[0][2]))
            continue
        for a, b, st in runs:
            if half is None or half == st:
                out.append((a, b, SMALL, st))
    return merge_rows(out)


def merge_rows(rows):
    """Rows (start, end, size, kind) with adjacent runs of one size and kind joined."""
    merged = []
    for row in rows:
        if merged and merged[-1][1] == row[0] and merged[-1][2:] == row[2:]:
            merged[-1] = (merged[-1][0], row[1]) + row[2:]
        else:
            merged.append(row)
    return merged


def actual_rows(t):
    return merge_rows((a, b, v.size, v.kind) for a, b, v in t.runs())


def random_op(rnd, g):
    n = g.size // PS
    if rnd.random() < 0.1:          # whole aligned 2 MiB ranges sometimes
        w = rnd.randrange(g.size // HUGE)
        off, ln = w * HUGE, HUGE
    else:
        p = rnd.randrange(n)
        off, ln = p * PS, min(rnd.choice([1, 1, 2, 3, 8, 64]), n - p) * PS
    what = rnd.choice(["to_private", "to_shared", "to_private", "to_shared", "punch"])
    if what == "punch":
        g.fallocate(PUNCH, off, ln)
    else:
        g.set_memory_attributes(off, ln, PRIV if what == "to_private" else 0)


@pytest.mark.parametrize("platform,ops", [("tdx", 10000), ("snp", 10000), ("cca", 2000),
                                          ("none", 2000)])
def test_mirror_follows_random_conversions_and_punches(rig, platform, ops):
    r = rig(platform, "mirror", size=8 * MB)
    iova = r.map()
    t = r.table()
    rnd = random.Random(5)
    for i in range(ops):
        random_op(rnd, r.g)
        assert actual_rows(t) == expected_mirror(r.cc, r.g, iova, r.g.size, 0), f"after op {i}"
        # no IOPTE ever reaches a page punched after it was written
        for a, b, v in t.runs():
            for _s, _e, ep in r.g.punch_epoch_runs(a - v.delta, b - a):
                assert ep is None or ep <= v.epoch
    c = r.log.counters()
    assert c["splits"] > ops // 50 and c["merges"] > ops // 50
    assert c["events"]["use_after_free"] == 0 and not c["host_dead"]
    print(f"{platform}: {ops} ops, {c['splits']} splits, {c['merges']} merges")


def test_mirror_snp_never_leaves_a_huge_iopte_over_mixed_states(rig):
    r = rig("snp", "mirror")
    iova = r.map()
    r.g.set_memory_attributes(0x200000 + 0x5000, PS, PRIV)
    assert r.dma(iova + 0x200000, 16).fault_reason == 0            # shared page, T=0
    assert r.dma(iova + 0x205000, 16, private=True).fault_reason == 0
    # under none the 2 MiB IOPTE stays: any access through it is an RMP size mismatch
    r2 = rig("snp", "none")
    iova2 = r2.map()
    r2.g.set_memory_attributes(0x200000 + 0x5000, PS, PRIV)
    res = r2.dma(iova2 + 0x200000, 16)
    assert res.fault_reason == dma.FAULT_RMP and "size mismatch" in r2.log.events()[-1]["detail"]


def test_describe_shows_runs_with_reach_state(rig):
    r = rig("tdx", "none")
    iova = r.map()
    r.g.set_memory_attributes(0x5000, PS, PRIV)
    r.g.fallocate(PUNCH, 0x8000, PS)
    d = policy.describe([("ctx", r.h.ctx)], r.cc)
    io = d["contexts"][0]["ioas"][0]
    assert io["policy"] == "none" and io["areas"][0]["gmem"] == "g0"
    runs = [(x["iova"] - iova, x["end"] - iova, x["size"], x["kind"], x["reaches"], x["freed"])
            for x in io["iopte_runs"]][:4]
    # 'none' follows nothing: the 2 MiB IOPTE written at MAP time stays
    assert runs == [(0, 0x5000, HUGE, "shared", "shared", False),
                    (0x5000, 0x6000, HUGE, "shared", "private", False),
                    (0x6000, 0x8000, HUGE, "shared", "shared", False),
                    (0x8000, 0x9000, HUGE, "shared", "shared", True)]
