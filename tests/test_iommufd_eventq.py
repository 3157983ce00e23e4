"""Fault queues (iommufd.md §6.7, §10.5 TRIGGER_IOPF; kernel eventq.c), in
process. The file behind the new fd is a FakeInstaller entry here; the
end-to-end tests drive the same objects through `gmemfs exec`."""

import errno
import struct

import pytest

import ioctl_abi as A
from fakes import FakeInstaller, IommufdHarness, errno_of as E

AP = 0x1000000
REC = struct.Struct("<IIIIIIQII")     # struct iommu_hwpt_pgfault


@pytest.fixture
def h():
    with IommufdHarness() as hh:
        hh.files = FakeInstaller(hh.caller)
        yield hh


def fault_alloc(h, flags=0):
    r = h.ioctl("IOMMU_FAULT_QUEUE_ALLOC", "iommu_fault_alloc", flags=flags)
    return r.out_fault_id, r.out_fault_fd


def hwpt_alloc(h, dev, pt, flags=0, fault_id=0, nested=False):
    kw = {}
    if nested:
        h.caller.write(h.SCRATCH + 0x8000, (A.IOMMU_TEST_IOTLB_DEFAULT).to_bytes(4, "little")
                       + bytes(4))
        kw = dict(data_type=A.IOMMU_HWPT_DATA_SELFTEST, data_len=8,
                  data_uptr=h.SCRATCH + 0x8000)
    return h.ioctl("IOMMU_HWPT_ALLOC", "iommu_hwpt_alloc", dev_id=dev, pt_id=pt, flags=flags,
                   fault_id=fault_id, **kw).out_hwpt_id


def trigger(h, dev, pasid=0, grpid=2, perm=3, addr=0xdeadbeaf):
    return h.test_cmd("IOMMU_TEST_OP_TRIGGER_IOPF",
                      trigger_iopf=dict(dev_id=dev, pasid=pasid, grpid=grpid, perm=perm,
                                        addr=addr))


def fault_obj(h, fid):
    return h.ctx.lookup(fid)


@pytest.fixture
def iopf(h):
    """A device on a nested HWPT (NEST_PARENT parent) that has a fault queue."""
    ioas = h.ioas_alloc()
    stdev, _, dev = h.mock_domain(ioas)
    parent = hwpt_alloc(h, dev, ioas, A.IOMMU_HWPT_ALLOC_NEST_PARENT)
    fid, ffd = fault_alloc(h)
    nested = hwpt_alloc(h, dev, parent, A.IOMMU_HWPT_FAULT_ID_VALID, fid, nested=True)
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", stdev, mock_domain_replace={"pt_id": nested})
    return dict(ioas=ioas, stdev=stdev, dev=dev, parent=parent, fid=fid, ffd=ffd,
                nested=nested, fault=fault_obj(h, fid))


def test_fault_alloc_flags_is_EOPNOTSUPP_spec_6_7(h):
    assert E(fault_alloc, h, 1) == errno.EOPNOTSUPP
    assert h.ioas_alloc() == 1            # nothing was left behind


def test_fault_alloc_without_exec_is_EOPNOTSUPP_naming_gmemfs_exec_spec_6_7(h):
    h.files = None
    with pytest.raises(OSError) as ei:
        fault_alloc(h)
    assert ei.value.errno == errno.EOPNOTSUPP and "gmemfs exec" in ei.value.strerror
    assert h.ioas_alloc() == 1            # the FAULT object and its ID went away


def test_fault_alloc_returns_id_and_fd_and_the_fd_holds_it_spec_6_7(h):
    fid, ffd = fault_alloc(h)
    assert fid == 1 and ffd in h.caller.fds
    assert E(h.destroy, fid) == errno.EBUSY          # the fd holds a reference
    h.files.close(ffd)
    h.destroy(fid)


def test_nest_parent_with_fault_id_is_EOPNOTSUPP_before_the_fault_lookup(h):
    ioas = h.ioas_alloc()
    _, _, dev = h.mock_domain(ioas)
    flags = A.IOMMU_HWPT_ALLOC_NEST_PARENT | A.IOMMU_HWPT_FAULT_ID_VALID
    assert E(hwpt_alloc, h, dev, ioas, flags, 0) == errno.EOPNOTSUPP


def test_fault_id_must_be_a_fault_ENOENT_spec_6_2(h):
    ioas = h.ioas_alloc()
    _, _, dev = h.mock_domain(ioas)
    parent = hwpt_alloc(h, dev, ioas, A.IOMMU_HWPT_ALLOC_NEST_PARENT)
    assert E(hwpt_alloc, h, dev, parent, A.IOMMU_HWPT_FAULT_ID_VALID, 0xFFFFFFFF,
             nested=True) == errno.ENOENT
    assert E(hwpt_alloc, h, dev, parent, A.IOMMU_HWPT_FAULT_ID_VALID, ioas,
             nested=True) == errno.ENOENT
    # the failed HWPTs released their IDs
    assert hwpt_alloc(h, dev, parent, 0, nested=True) == parent + 1


def test_hwpt_holds_the_fault_EBUSY_until_destroyed(h, iopf):
    h.files.close(iopf["ffd"])
    assert E(h.destroy, iopf["fid"]) == errno.EBUSY
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", iopf["stdev"],
               mock_domain_replace={"pt_id": iopf["ioas"]})
    h.destroy(iopf["nested"])
    h.destroy(iopf["fid"])


def test_trigger_iopf_record_format_and_response_selftest(h, iopf):
    """The selftest's _test_cmd_trigger_iopf: one 40-byte record, cookie, then
    an 8-byte SUCCESS response consumed whole."""
    trigger(h, iopf["dev"], pasid=1, grpid=2, perm=3, addr=0xdeadbeaf)
    f = iopf["fault"]
    assert f.readable()
    data = f.read(40)
    flags, dev_id, pasid, grpid, perm, rsvd, addr, length, cookie = REC.unpack(data)
    assert flags == A.IOMMU_PGFAULT_FLAGS_LAST_PAGE | A.IOMMU_PGFAULT_FLAGS_PASID_VALID
    assert (dev_id, pasid, grpid, perm, rsvd, addr, length) == \
        (iopf["dev"], 1, 2, 3, 0, 0xdeadbeaf, 0)
    assert cookie == 1
    assert not f.readable()
    assert f.write(struct.pack("<II", cookie, A.IOMMUFD_PAGE_RESP_SUCCESS)) == 8
    # the cookie is used up
    assert E(f.write, struct.pack("<II", cookie, 0)) == errno.EINVAL


def test_read_count_must_be_a_multiple_of_40_ESPIPE(h, iopf):
    trigger(h, iopf["dev"])
    f = iopf["fault"]
    for n in (1, 39, 41, 79):
        assert E(f.read, n) == errno.ESPIPE
    assert f.read(0) == b""
    assert len(f.read(80)) == 40           # one group; the rest of the buffer stays unused
    assert f.read(40) == b""               # empty queue: 0 bytes, never blocks


def test_a_group_that_does_not_fit_stays_queued_and_shares_one_cookie(h, iopf):
    f = iopf["fault"]
    f.report(("x", 0), [(2, 9, 0, 1, 1, 0x1000)] * 3)     # a 3-record group
    assert f.read(80) == b""
    data = f.read(120)
    assert len(data) == 120
    assert {REC.unpack_from(data, i * 40)[8] for i in range(3)} == {1}


def test_each_group_read_gets_the_lowest_free_cookie_from_1(h, iopf):
    f = iopf["fault"]
    for _ in range(3):
        trigger(h, iopf["dev"])
    data = f.read(120)
    assert [REC.unpack_from(data, i * 40)[8] for i in range(3)] == [1, 2, 3]
    assert f.read(40) == b""


def test_write_rules_ESPIPE_EINVAL_and_partial_consumption(h, iopf):
    f = iopf["fault"]
    trigger(h, iopf["dev"])
    trigger(h, iopf["dev"])
    recs = f.read(80)
    c1, c2 = REC.unpack_from(recs, 0)[8], REC.unpack_from(recs, 40)[8]
    assert (c1, c2) == (1, 2)
    assert E(f.write, b"\0" * 7) == errno.ESPIPE
    assert E(f.write, struct.pack("<II", c1, 2)) == errno.EINVAL          # bad code
    assert E(f.write, struct.pack("<II", 77, 0)) == errno.EINVAL          # unknown cookie
    # the first response is consumed, the bad second one stops the write
    assert f.write(struct.pack("<IIII", c1, 0, 99, 0)) == 8
    assert f.write(struct.pack("<II", c2, A.IOMMUFD_PAGE_RESP_INVALID)) == 8
    # cookie 1 is free again: the next group gets it
    trigger(h, iopf["dev"])
    assert REC.unpack_from(f.read(40), 0)[8] == 1


def test_no_fault_queue_on_the_hwpt_drops_the_request_and_returns_0(h):
    ioas = h.ioas_alloc()
    _, _, dev = h.mock_domain(ioas)
    trigger(h, dev)                        # the auto domain has no fault queue
    assert E(trigger, h, 999) == errno.ENOENT


def test_leaving_the_hwpt_answers_pending_groups_invalid(h, iopf):
    f = iopf["fault"]
    trigger(h, iopf["dev"])
    trigger(h, iopf["dev"])
    cookie = REC.unpack_from(f.read(40), 0)[8]       # one read, one still queued
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", iopf["stdev"],
               mock_domain_replace={"pt_id": iopf["parent"]})
    assert not f.readable()
    assert E(f.write, struct.pack("<II", cookie, 0)) == errno.EINVAL
    assert f.responses["auto_invalid"] == 2


def test_pasid_fault_goes_to_the_pasid_attachment(h):
    ioas = h.ioas_alloc()
    stdev, _, dev = h.mock_domain(ioas, dev_flags=A.MOCK_FLAGS_DEVICE_PASID)
    parent = hwpt_alloc(h, dev, ioas, A.IOMMU_HWPT_ALLOC_NEST_PARENT)
    fid, _ = fault_alloc(h)
    iopf_hwpt = hwpt_alloc(h, dev, parent, A.IOMMU_HWPT_FAULT_ID_VALID | A.IOMMU_HWPT_ALLOC_PASID,
                           fid, nested=True)
    s2 = hwpt_alloc(h, dev, ioas, A.IOMMU_HWPT_ALLOC_PASID)
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", stdev, mock_domain_replace={"pt_id": s2})
    h.test_cmd("IOMMU_TEST_OP_PASID_ATTACH", stdev, pasid_attach=dict(pasid=2048, pt_id=iopf_hwpt))
    trigger(h, dev, pasid=2048)
    f = fault_obj(h, fid)
    rec = REC.unpack(f.read(40))
    assert rec[2] == 2048 and rec[0] & A.IOMMU_PGFAULT_FLAGS_PASID_VALID
    # a PASID nobody attached, with a paging HWPT on the RID: dropped
    trigger(h, dev, pasid=7)
    assert not f.readable()
    trigger(h, dev, pasid=2048)
    h.test_cmd("IOMMU_TEST_OP_PASID_DETACH", stdev, pasid_detach={"pasid": 2048})
    assert not f.readable()                # answered INVALID when it detached


def test_destroying_the_fault_answers_everything(h, iopf):
    f = iopf["fault"]
    trigger(h, iopf["dev"])
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", iopf["stdev"],
               mock_domain_replace={"pt_id": iopf["ioas"]})
    h.destroy(iopf["nested"])
    h.files.close(iopf["ffd"])
    h.destroy(iopf["fid"])
    assert f.dead


# ================================================================== vEVENTQ

VHDR = struct.Struct("<II")
LOST = A.IOMMU_VEVENTQ_FLAG_LOST_EVENTS
SELFTEST_TYPE = A.IOMMU_VEVENTQ_TYPE_SELFTEST


@pytest.fixture
def vi(h):
    """The selftest's vdevice_alloc setup: a mock device, a nesting parent, a
    vIOMMU with a nested HWPT on it, the device's vDEVICE (virtual ID 0x99),
    the device attached to the nested HWPT."""
    ioas = h.ioas_alloc()
    stdev, _, dev = h.mock_domain(ioas)
    parent = hwpt_alloc(h, dev, ioas, A.IOMMU_HWPT_ALLOC_NEST_PARENT)
    v = h.ioctl("IOMMU_VIOMMU_ALLOC", "iommu_viommu_alloc", dev_id=dev, hwpt_id=parent,
                type=A.IOMMU_VIOMMU_TYPE_SELFTEST).out_viommu_id
    nested = hwpt_alloc(h, dev, v, nested=True)
    vdev = h.ioctl("IOMMU_VDEVICE_ALLOC", "iommu_vdevice_alloc", viommu_id=v, dev_id=dev,
                   virt_id=0x99).out_vdevice_id
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", stdev, mock_domain_replace={"pt_id": nested})
    return dict(ioas=ioas, stdev=stdev, dev=dev, id=v, nested=nested, vdev=vdev,
                obj=h.ctx.lookup(v))


def trigger_vevent(h, dev):
    return h.test_cmd("IOMMU_TEST_OP_TRIGGER_VEVENT", trigger_vevent={"dev_id": dev})


def report(vi, payload, vtype=None):
    vi["obj"].report_event(SELFTEST_TYPE if vtype is None else vtype, payload)


def veventq_alloc(h, viommu_id, vtype=SELFTEST_TYPE, depth=2, flags=0):
    r = h.ioctl("IOMMU_VEVENTQ_ALLOC", "iommu_veventq_alloc", flags=flags, viommu_id=viommu_id,
                type=vtype, veventq_depth=depth)
    return r.out_veventq_id, r.out_veventq_fd


def entries(data):
    out, pos = [], 0
    while pos < len(data):
        flags, seq = VHDR.unpack_from(data, pos)
        pos += 8
        payload = b""
        if not flags & LOST:
            payload, pos = data[pos:pos + 4], pos + 4
        out.append((flags, seq, payload))
    return out


def test_veventq_alloc_checks_spec_6_10(h, vi):
    v = vi["obj"]
    assert E(veventq_alloc, h, v.id, flags=1) == errno.EOPNOTSUPP
    assert E(veventq_alloc, h, v.id, vtype=0) == errno.EOPNOTSUPP     # TYPE_DEFAULT
    assert E(veventq_alloc, h, v.id, depth=0) == errno.EINVAL
    assert E(veventq_alloc, h, 99) == errno.ENOENT
    assert E(veventq_alloc, h, vi["nested"]) == errno.ENOENT             # no vIOMMU
    qid, qfd = veventq_alloc(h, v.id)
    assert E(veventq_alloc, h, v.id) == errno.EEXIST                  # one queue per type
    veventq_alloc(h, v.id, vtype=SELFTEST_TYPE + 1)
    assert E(h.destroy, v.id) == errno.EBUSY                          # the queue holds it
    assert E(h.destroy, qid) == errno.EBUSY                           # its fd holds the queue
    h.files.close(qfd)
    h.destroy(qid)
    veventq_alloc(h, v.id)                                            # the type is free again


def test_veventq_without_exec_is_EOPNOTSUPP_naming_gmemfs_exec(h, vi):
    v = vi["obj"]
    h.files = None
    with pytest.raises(OSError) as ei:
        veventq_alloc(h, v.id)
    assert ei.value.errno == errno.EOPNOTSUPP and "gmemfs exec" in ei.value.strerror
    assert not v.veventqs


def test_veventq_sequence_and_lost_events_header_selftest_vdevice_alloc(h, vi):
    """The selftest's vdevice_alloc: depth 2; TRIGGER_VEVENT sends the
    device's virtual ID; three events -> two events and a lost-events header
    (its own sequence number); the next event follows it in sequence."""
    qid, _ = veventq_alloc(h, vi["id"], depth=2)
    q = h.ctx.lookup(qid)
    trigger_vevent(h, vi["dev"])
    assert entries(q.read(12)) == [(0, 0, struct.pack("<I", 0x99))]
    for _ in range(3):
        report(vi, struct.pack("<I", 0x88))
    got = entries(q.read(36))
    assert got == [(0, 1, struct.pack("<I", 0x88)), (0, 2, struct.pack("<I", 0x88)),
                   (LOST, 3, b"")]
    trigger_vevent(h, vi["dev"])
    assert entries(q.read(12)) == [(0, 4, struct.pack("<I", 0x99))]
    assert E(report, vi, b"xxxx", SELFTEST_TYPE + 5) == errno.EOPNOTSUPP


def test_trigger_vevent_needs_the_vdevice_attachment_ENOENT(h, vi):
    veventq_alloc(h, vi["id"])
    assert E(trigger_vevent, h, 999) == errno.ENOENT
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", vi["stdev"],
               mock_domain_replace={"pt_id": vi["ioas"]})
    assert E(trigger_vevent, h, vi["dev"]) == errno.ENOENT


def test_veventq_lost_header_stays_last_and_is_replaced(h, vi):
    qid, _ = veventq_alloc(h, vi["id"], depth=1)
    q = h.ctx.lookup(qid)
    for i in range(4):                    # 1 fits, 3 lost: one header, the last number
        report(vi, struct.pack("<I", i))
    assert entries(q.read(100)) == [(0, 0, struct.pack("<I", 0)), (LOST, 3, b"")]
    report(vi, struct.pack("<I", 7))
    report(vi, struct.pack("<I", 8))            # lost again
    q.read(12)                                  # event 4 out
    report(vi, struct.pack("<I", 9))            # replaces the header
    assert entries(q.read(100)) == [(0, 6, struct.pack("<I", 9))]


def test_veventq_read_returns_whole_entries_only(h, vi):
    qid, _ = veventq_alloc(h, vi["id"], depth=8)
    q = h.ctx.lookup(qid)
    report(vi, b"abcd")
    report(vi, b"efgh")
    assert q.read(11) == b""
    assert len(q.read(23)) == 12
    assert len(q.read(12)) == 12
    assert q.read(12) == b"" and not q.readable()


def test_veventq_sequence_wraps_at_int_max(h, vi):
    qid, _ = veventq_alloc(h, vi["id"], depth=8)
    q = h.ctx.lookup(qid)
    q.sequence = (1 << 31) - 1
    report(vi, b"abcd")
    report(vi, b"efgh")
    assert [e[1] for e in entries(q.read(24))] == [(1 << 31) - 1, 0]


def test_veventq_holds_the_viommu_and_goes_with_the_context(h, vi):
    qid, qfd = veventq_alloc(h, vi["id"])
    h.destroy(vi["vdev"])
    h.test_cmd("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", vi["stdev"],
               mock_domain_replace={"pt_id": vi["ioas"]})
    h.destroy(vi["nested"])
    assert E(h.destroy, vi["id"]) == errno.EBUSY
    h.files.close(qfd)
    h.destroy(qid)
    h.destroy(vi["id"])
