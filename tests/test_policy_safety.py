"""The safety property of the guest_memfd <-> IOMMU policies, as a hypothesis
stateful test over the models in-process: random sequences of MAP_FILE,
UNMAP, PUNCH_HOLE, conversions and device DMA under every policy x platform.

* revoke, invalidate, mirror: no DMA ever reaches memory that has left the
  guest_memfd (no use_after_free event, and no IOPTE ever reaches a page
  punched after the IOPTE was written);
* tdx with invalidate or mirror, and tdx strict under any policy: no shared
  IOPTE ever reaches a private page, so no machine check ever happens;
* none: every such access is detected: a DMA reaching a page punched since
  the MAP raises a use_after_free event, and a DMA that breaks a platform
  rule raises that platform's event (tdx: machine check, host dead).
* mirror: after every step the IOPTEs are exactly what the page states
  demand (same oracle as test_policy_models).
"""

import errno

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, \
    run_state_machine_as_test

import ioctl_abi as A
from gmemfs.gmem import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEMORY_ATTRIBUTE_PRIVATE
from iommufd_emu import dma, policy
from test_policy_models import Rig, actual_rows, expected_mirror, merge_rows

PS = 4096
NPAGES = 1024                     # a 4 MiB guest_memfd: two 2 MiB windows
GPA = 0x2000000
PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE

COMBOS = [(pol, plat, False) for plat in ("none", "tdx", "snp", "cca")
          for pol in ("none", "revoke", "invalidate", "mirror", "pin")]
COMBOS += [(pol, "tdx", True) for pol in ("none", "revoke", "pin")]


def machine_for(pol, plat, strict):
    class PolicySafety(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            # the set-up of test_policy_models: events, harness, MMAP|INIT_SHARED
            # guest_memfd, an IOAS with a mock domain, the gmem fd in the caller
            r = self.rig = Rig(plat, pol, strict, size=NPAGES * PS)
            self.log, self.h, self.cc, self.g = r.log, r.h, r.cc, r.g
            self.ioas, self.idev, self.fd = r.ioas, r.idev, r.fd
            self.dev = self.h.ctx.lookup(self.idev)
            self.areas = {}           # iova -> (gmem offset, length, punch counter at map)
            self.n = 0

        def teardown(self):
            self.rig.close()

        def iova_of(self, off, shared):
            b = self.cc.shared_bit
            return GPA + off + ((1 << b) if b is not None and shared else 0)

        # ------------------------------------------------------------ rules
        @rule(p=st.integers(0, NPAGES - 1), n=st.sampled_from([1, 2, 5, 64, 512, 1024]),
              shared=st.booleans())
        def map(self, p, n, shared):
            n = min(n, NPAGES - p)
            off, ln = p * PS, n * PS
            iova = self.iova_of(off, shared)
            try:
                self.h.map_file(self.ioas, self.fd, off, ln, iova=iova)
            except OSError as e:
                assert e.errno in (errno.EEXIST, errno.EPERM), e
                assert e.errno != errno.EPERM or (strict and plat == "tdx")
                return
            self.areas[iova] = (off, ln, self.g.punch_counter)

        @precondition(lambda self: self.areas)
        @rule(i=st.integers(0, 1 << 30))
        def unmap(self, i):
            iova = sorted(self.areas)[i % len(self.areas)]
            off, ln, _ = self.areas.pop(iova)
            assert self.h.unmap(self.ioas, iova, ln) == ln

        @rule(p=st.integers(0, NPAGES - 1), n=st.sampled_from([1, 3, 512]))
        def punch(self, p, n):
            self.g.fallocate(PUNCH, p * PS, min(n, NPAGES - p) * PS)

        @rule(p=st.integers(0, NPAGES - 1), n=st.sampled_from([1, 3, 512]), private=st.booleans())
        def convert(self, p, n, private):
            try:
                self.g.set_memory_attributes(p * PS, min(n, NPAGES - p) * PS,
                                             KVM_MEMORY_ATTRIBUTE_PRIVATE if private else 0)
            except OSError as e:
                assert e.errno == errno.EAGAIN and (pol == "pin" or strict), e
                assert e.error_offset >= p * PS

        @precondition(lambda self: self.areas and not self.log.host_dead)
        @rule(i=st.integers(0, 1 << 30), page=st.integers(0, NPAGES - 1), write=st.booleans(),
              t_bit=st.booleans())
        def dma(self, i, page, write, t_bit):
            iova = sorted(self.areas)[i % len(self.areas)]
            off, ln, epoch = self.areas[iova]
            page = page % (ln // PS)
            at, goff = iova + page * PS, off + page * PS
            self.n += 1
            data = bytes([self.n % 251 + 1]) * 64
            seq0 = self.log.seq
            freed = any(ep is not None and ep > epoch
                        for _, _, ep in self.g.punch_epoch_runs(goff, PS))
            private = self.g.is_private(goff)
            res = dma.device_dma(self.h.ctx, self.dev, at, 64, write,
                                 data=data if write else None, private=t_bit)
            kinds = [e["kind"] for e in self.log.events(since=seq0)]
            assert res.events == len(kinds)
            if pol in ("revoke", "invalidate", "mirror"):
                assert "use_after_free" not in kinds
                if write and not res.faulted:
                    # the write reached the file's page, not a freed one
                    assert self.g.read(goff, 64) == data
            if pol == "none":
                half = self.cc.iova_kind(at)
                if freed:
                    assert kinds and kinds[0] == "use_after_free", kinds
                    assert not write or self.g.read(goff, 64) != data or not res.transferred
                elif plat == "tdx" and half == "shared" and private:
                    assert kinds == ["machine_check"] and self.log.host_dead
                    assert res.fault_reason == dma.FAULT_MACHINE_CHECK
                elif plat == "tdx" and half == "private" and not private:
                    assert kinds == ["sept_fault"]
                elif plat == "cca" and (half == "private") != private:
                    assert kinds == ["gpt_fault"]
                elif plat == "snp" and t_bit != private:
                    assert kinds == ["rmp_fault"]
                elif plat != "snp":
                    assert kinds == [] and not res.faulted
            if pol == "pin" and freed and not res.faulted:
                assert "stale_page" in kinds

        # ------------------------------------------------------- invariants
        @invariant()
        def safety(self):
            c = self.log.counters()
            if pol in ("revoke", "invalidate", "mirror"):
                assert c["events"]["use_after_free"] == 0
            if plat == "tdx" and (pol in ("invalidate", "mirror") or strict):
                assert c["machine_checks"] == 0 and not c["host_dead"]
            st_ = policy.state(self.h.ctx.lookup(self.ioas))
            for s, e, v in st_.iopt.runs():
                if pol in ("revoke", "invalidate", "mirror"):
                    # no IOPTE reaches a page punched after it was written
                    for _, _, ep in self.g.punch_epoch_runs(s - v.delta, e - s):
                        assert ep is None or ep <= v.epoch, (s, e, v)
                if plat == "tdx" and v.kind == "shared" and (
                        pol in ("invalidate", "mirror") or strict):
                    assert not self.g.private_runs(s - v.delta, e - s), (s, e, v)
            if pol == "mirror":
                want = []
                for iova in sorted(self.areas):
                    off, ln, _ = self.areas[iova]
                    want += expected_mirror(self.cc, self.g, iova, ln, off)
                assert actual_rows(st_.iopt) == merge_rows(want)

    PolicySafety.__name__ = f"PolicySafety_{pol}_{plat}{'_strict' if strict else ''}"
    return PolicySafety


@pytest.mark.parametrize("pol,plat,strict", COMBOS,
                         ids=[f"{p}-{q}{'-strict' if s else ''}" for p, q, s in COMBOS])
def test_policy_safety(pol, plat, strict):
    run_state_machine_as_test(
        machine_for(pol, plat, strict),
        settings=settings(max_examples=60, stateful_step_count=30, deadline=None,
                          suppress_health_check=list(HealthCheck)))
