"""End to end: the guest_memfd <-> IOMMU scenario matrix of the seed thread
on real mounts (-o policy=, platform=, strict), driven by the C client
tests/c/cc_scenarios.c (QEMU RamBlockAttributes-like flows), plus the
machine-check host death, the event log (poll) and the state views."""
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

import ioctl_abi as A
from conftest import stop_mount
from gmemfs import matrix

pytestmark = pytest.mark.e2e

MB = 1 << 20

# the expected outcome of every cell except the numbers of (c)
EXPECTED = {
    #            none               tdx                tdx strict         snp                cca
    ("a", "none"): ["ok", "MCE (host dead)", "EAGAIN, ok", "RMP fault", "GPT fault"],
    ("a", "revoke"): ["ok", "MCE (host dead)", "EAGAIN, ok", "RMP fault", "GPT fault"],
    ("a", "invalidate"): ["no IOPTE: fault"] * 5,
    ("a", "mirror"): ["ok", "no IOPTE: fault", "no IOPTE: fault", "RMP fault", "no IOPTE: fault"],
    ("a", "pin"): ["EAGAIN, ok"] * 5,
    ("b", "none"): ["UAF!"] * 5,
    ("b", "revoke"): ["revoked"] * 5,
    ("b", "invalidate"): ["no IOPTE: fault"] * 5,
    ("b", "mirror"): ["ok (mirrored)"] * 5,
    ("b", "pin"): ["stale page"] * 5,
    ("d", "none"): ["ok"] * 5,
    ("d", "revoke"): ["ok"] * 5,
    ("d", "invalidate"): ["ok"] * 5,
    ("d", "mirror"): ["ok"] * 5,
    ("d", "pin"): ["ok"] * 5,
}


def run(exe, mnt, *args, timeout=60):
    r = subprocess.run([str(exe), str(mnt), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return matrix.parse_result(r.stdout), r.stdout


def test_scenario_matrix_every_policy_on_every_platform(mount_factory, cc):
    exe = cc("cc_scenarios.c")
    mounts = []

    def mount_fn(opts):
        m = mount_factory(opts, debug=False)
        mounts.append(m)
        return m

    results, nmounts = matrix.run_matrix(exe, mount_fn, stop_mount, lambda m: m.path, nops=150)
    table = matrix.format_table(results)
    titles = [t for t, _ in matrix.COLUMNS]
    for (scen, pol), want in EXPECTED.items():
        got = [results[(scen, pol, t)]["text"] for t in titles]
        assert got == want, f"({scen}) {pol}: {got}\n{table}"
    for t in titles:
        r = results[("c", "mirror", t)]
        assert r["text"].startswith("ok ") and int(r["probe_mismatch"]) == 0, table
        assert r["check"]["pages"] == 1024 and r["check"]["wrong"] == r["check"]["size"] == 0
        assert int(r["splits"]) > 0 and int(r["merges"]) > 0, r["out"]
        assert results[("c", "revoke", t)]["text"] == "revoked", table
        for pol in ("none", "invalidate", "pin"):
            assert results[("c", pol, t)]["text"].endswith("pg stale"), table
        # (a) under tdx strict: the conversion was refused at the page
        assert "error_offset=0x5000" in results[("a", "none", "tdx strict")]["out"]
    # one mount per column, plus one after each of the two machine checks
    assert nmounts == len(titles) + 2
    for m in mounts:
        assert "Traceback" not in m.log_text(), m.log_text()[-3000:]


CHILD = textwrap.dedent("""
    import mmap, os, sys, fcntl, struct
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.ioctl(fd, int(sys.argv[2]), struct.pack("<QQ48x", 1 << 20, 3))
    m = mmap.mmap(fd, 1 << 20)
    print("ready", flush=True)
    sys.stdin.readline()
    print("read", m[0], flush=True)
""")


def test_machine_check_kills_the_emulated_host(mount_factory, cc):
    m = mount_factory("platform=tdx", "policy=none")
    exe = cc("cc_scenarios.c")
    # a process that mapped a guest_memfd before the machine check
    child = subprocess.Popen([sys.executable, "-c", CHILD, m.gmem("early"),
                              str(A.KVM_CREATE_GUEST_MEMFD)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    gfd = os.open(m.gmem("early"), os.O_RDWR)
    ifd = os.open(m.iommu, os.O_RDWR)
    res, out = run(exe, m.path, "a")
    assert (res["conv"], res["dma"], res["fault"], res["host_dead"]) == (
        "ok", "machine_check", str(A.GMEMFS_DMA_FAULT_MACHINE_CHECK), "1"), out
    # every later call on any gmemfs fd fails with EIO
    with pytest.raises(OSError) as ei:
        os.open(m.iommu, os.O_RDWR)
    assert ei.value.errno == 5
    with pytest.raises(OSError) as ei:
        os.open(m.gmem("late"), os.O_CREAT | os.O_RDWR, 0o600)
    assert ei.value.errno == 5
    with pytest.raises(OSError) as ei:
        os.posix_fallocate(gfd, 0, 4096)
    assert ei.value.errno in (5, 95)
    with pytest.raises(OSError) as ei:
        fcntl.ioctl(gfd, A.KVM_SET_MEMORY_ATTRIBUTES2, bytes(128))
    assert ei.value.errno == 5
    with pytest.raises(OSError) as ei:
        fcntl.ioctl(ifd, A.IOMMU_IOAS_ALLOC, struct.pack("<III", 12, 0, 0))
    assert ei.value.errno == 5
    # an mmap fault of a page not yet cached: SIGBUS
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.wait(timeout=30) == -signal.SIGBUS
    # .state stays readable and says why
    c = json.loads(m.state("counters"))
    assert c["host_dead"] and c["machine_checks"] == 1
    assert "shared IOPTE reached a private page" in c["host_dead_reason"]
    evs = [json.loads(x) for x in m.state("events").splitlines()]
    mce = [e for e in evs if e["kind"] == "machine_check"]
    assert len(mce) == 1 and mce[0]["platform"] == "tdx" and mce[0]["offset"] == 0x5000
    assert mce[0]["iova"] == (1 << 30) | 0x2000000 | 0x5000
    assert json.loads(m.state("server.json"))["host_dead"] is True
    os.close(gfd)
    os.close(ifd)


def test_mount_options_select_policy_and_platform(mount_factory, cc):
    exe = cc("cc_scenarios.c")
    m = mount_factory("policy=revoke", "platform=snp")
    assert m.state("config").split() == ["platform=snp", "policy=revoke", "tdx_shared_bit=30",
                                         "cca_shared_bit=30", "strict=0"]
    res, out = run(exe, m.path, "b")          # the mount's policy
    assert "policy=revoke" in out and res["dma"] == "revoked"
    assert int(res["unmap_len"]) == 4 * MB     # UNMAP of a revoked area: its full length
    res, out = run(exe, m.path, "a")
    assert res["dma"] == "rmp_fault" and res["host_dead"] == "0"
    kinds = [json.loads(x)["kind"] for x in m.state("events").splitlines()]
    assert kinds == ["revoke", "io_fault", "rmp_fault"]
    c = json.loads(m.state("counters"))
    assert c["events"]["revoke"] == 1 and c["events"]["rmp_fault"] == 1 and not c["host_dead"]


def test_bad_mount_options_are_refused(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for opt in ("policy=sometimes", "platform=sev", "tdx_shared_bit=7"):
        r = subprocess.run([sys.executable, "-m", "gmemfs", "mount", str(mnt), "-o", opt],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and opt.split("=")[0] in r.stderr, r.stderr
        assert not os.path.ismount(mnt)


def test_events_file_is_a_pollable_stream(mount_factory, cc):
    exe = cc("cc_scenarios.c")
    m = mount_factory("platform=cca")
    run(exe, m.path, "b", "none")            # one use_after_free event
    fd = os.open(m.path / ".state" / "events", os.O_RDONLY)
    try:
        first = os.read(fd, 65536).decode().splitlines()
        assert [json.loads(x)["kind"] for x in first] == ["use_after_free"]
        assert os.read(fd, 65536) == b""                 # nothing new: 0 bytes
        p = select.poll()
        p.register(fd, select.POLLIN)
        assert p.poll(0) == []
        proc = subprocess.Popen([str(exe), str(m.path), "a", "none"], stdout=subprocess.PIPE)
        ready = p.poll(20000)                            # wakes up when the event arrives
        proc.wait(timeout=30)
        assert ready and ready[0][1] & select.POLLIN
        new = []
        while True:
            chunk = os.read(fd, 100)                     # small reads continue where they stopped
            if not chunk:
                break
            new.append(chunk)
        lines = b"".join(new).decode().splitlines()
        ev = [json.loads(x) for x in lines]
        assert [e["kind"] for e in ev] == ["gpt_fault"]
        assert ev[0]["seq"] == 2 and ev[0]["platform"] == "cca" and ev[0]["policy"] == "none"
        assert ev[0]["device"] and ev[0]["gmem"].startswith("sc-a-")
        assert p.poll(0) == []
    finally:
        os.close(fd)
    # a new reader starts from the beginning
    assert len(m.state("events").splitlines()) == 2


def test_mirror_follows_many_random_ops_end_to_end(mount_factory, cc):
    exe = cc("cc_scenarios.c")
    for platform in ("tdx", "snp"):
        m = mount_factory(f"platform={platform}", "policy=mirror", debug=False)
        r = matrix.run_cell(exe, m.path, "c", "-", nops=1500, seed=7)
        assert int(r["probes"]) == 1500 and int(r["probe_mismatch"]) == 0, r["out"]
        assert r["check"]["wrong"] == 0 and r["check"]["size"] == 0, r["check"]
        assert int(r["splits"]) > 10 and int(r["merges"]) > 10, r["out"]
        c = json.loads(m.state("counters"))
        assert c["splits"] == int(r["splits"]) and c["events"]["use_after_free"] == 0
        stop_mount(m)
