"""A C client that does what QEMU's vfio-pci + iommufd backend does, without
QEMU (tests/c/vfio_client.c), on a real mount: the ioctl sequence, the edu
device through pread/pwrite of the device fd, eventfd interrupts (INTx, MSI,
the INTx unmask eventfd), DMA into user memory and into a guest_memfd mapped
with IOMMU_IOAS_MAP_FILE under each invalidation policy, and bad-input errno."""

import errno
import subprocess

import pytest

from conftest import build_c


@pytest.fixture(scope="module")
def client(c_build_dir):
    return build_c("vfio_client.c", c_build_dir)


def run(client, m, *args):
    r = subprocess.run([str(client), str(m.path), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr + m.log_text()[-3000:]
    return r.stdout


def results(out):
    rows = []
    for line in out.splitlines():
        if line.startswith("result "):
            rows.append(dict(f.split("=", 1) for f in line.split()[1:] if "=" in f))
    return rows


def test_qemu_like_flow(client, mount_factory):
    """x86 domain ranges (MSI window reserved, 4 KiB alignment); INTx signals
    once, is automasked, and an unmask through the unmask eventfd re-arms it;
    MSI signals the DMA interrupt; the DMA lands in user memory; an unmapped
    IOVA is one iommu_fault event; RESET works; no migration (ENOTTY); an
    ioeventfd, when signalled, writes its data to BAR0 (the server watches it)."""
    m = mount_factory()
    out = run(client, m, "flow")
    assert "n=2 align=4096 first=[0,0xfedfffff] second=[0xfef00000,0xffffffffffffffff]" in out
    assert "flags=3 regions=9 irqs=5 config=256@0x70000000000 bar0=1048576@0" in out
    assert "id=0x11e81234 edu=0x10000ed" in out
    iev, flow, end = results(out)
    assert iev["liveness"] == "0xffffedcb"
    assert flow == {"intx_first": "1", "intx_after_unmask_fd": "1", "msi": "1", "dma": "1",
                    "fault_events": "1"}
    assert end == {"reset": "0", "feature_migration": str(errno.ENOTTY)}
    assert m.contexts() == 0


def test_bad_input_errno(client, mount_factory):
    m = mount_factory()
    out = run(client, m, "errno")
    checks = [line for line in out.splitlines() if line.startswith("check ")]
    assert len(checks) >= 30
    assert [c for c in checks if not c.endswith(" ok")] == []


# (policy) -> what a DMA into a page converted to private without unmapping does
EXPECT = {
    "none": {"none": dict(convert="0", io_fault="0", machine_check="0", after="0"),
             "tdx": dict(convert="0", io_fault="0", machine_check="1", after=str(errno.EIO))},
    "revoke": {"none": dict(convert="0", io_fault="0", machine_check="0", after="0"),
               "tdx": dict(convert="0", io_fault="0", machine_check="1", after=str(errno.EIO))},
    "invalidate": {"none": dict(convert="0", io_fault="1", machine_check="0", after="0"),
                   "tdx": dict(convert="0", io_fault="1", machine_check="0", after="0")},
    "mirror": {"none": dict(convert="0", io_fault="0", machine_check="0", after="0"),
               "tdx": dict(convert="0", io_fault="1", machine_check="0", after="0")},
    "pin": {"none": dict(convert=str(errno.EAGAIN), io_fault="0", machine_check="0", after="0"),
            "tdx": dict(convert=str(errno.EAGAIN), io_fault="0", machine_check="0", after="0")},
}


@pytest.mark.parametrize("platform", ["none", "tdx"])
@pytest.mark.parametrize("policy", list(EXPECT))
def test_dma_into_guest_memfd_map_file_per_policy(client, mount_factory, policy, platform):
    """The edu DMAs into a guest_memfd area (IOMMU_IOAS_MAP_FILE, shared IOVA
    half on tdx: -o tdx_shared_bit=27, in the edu's 28-bit reach): shared
    pages round-trip; after a to-private conversion without unmap, tdx
    machine-checks (host dead: EIO) unless the policy removed the IOPTE
    (invalidate, mirror) or refused the conversion (pin: EAGAIN)."""
    opts = ["platform=tdx", "tdx_shared_bit=27"] if platform == "tdx" else []
    m = mount_factory(*opts)
    (row,) = results(run(client, m, "gmem", policy))
    assert row["shared_dma"] == "1" and row["iommu_fault"] == "0"
    got = {k: row[k] for k in EXPECT[policy][platform]}
    assert got == EXPECT[policy][platform]


MMAP_PROBE = r"""
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
import fcntl, struct
fd = os.open(sys.argv[1] + "/vfio/devices/vfio0", os.O_RDWR)
ifd = os.open(sys.argv[1] + "/iommu", os.O_RDWR)
fcntl.ioctl(fd, 0x3b76, bytearray(struct.pack("<IIiI", 16, 0, ifd, 0)))   # BIND
os.pwrite(fd, b"\x06\x00", (7 << 40) + 4)                                 # memory + master
assert os.pread(fd, 4, 0) == b"\xed\x00\x00\x01"                          # BAR0 works
p = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
assert p not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
print("mapped", flush=True)
ctypes.c_uint8.from_address(p).value   # a page-cache fill of BAR0: refused -> SIGBUS
print("read", flush=True)
"""


def test_regions_offer_no_mmap(mount_factory):
    """REGION_INFO has no FLAG_MMAP; FUSE cannot refuse mmap() itself, so a
    touch of a mapping of the device is SIGBUS (the fill is refused), even
    bound with memory decoding on (where pread of BAR0 works)."""
    import sys
    m = mount_factory()
    r = subprocess.run([sys.executable, "-c", MMAP_PROBE, str(m.path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == -7 and r.stdout == "mapped\n", (r.returncode, r.stdout, r.stderr)


def test_vfio_devices_cli_flag(tmp_path):
    """`gmemfs mount MNT --vfio-devices N` (N >= 0); a negative N is refused."""
    import sys
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cli = [sys.executable, "-m", "gmemfs", "mount", str(mnt)]
    r = subprocess.run(cli + ["--vfio-devices", "-1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "vfio_devices" in r.stderr
    r = subprocess.run(cli + ["--vfio-devices", "3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        assert sorted(p.name for p in (mnt / "vfio" / "devices").iterdir()) == \
            ["vfio0", "vfio1", "vfio2"]
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], timeout=60)
