"""End-to-end: QEMU's iommufd sequence (tests/c/qemu_like.c) on a real mount.

open iommu; IOAS_ALLOC; mock device (for VFIO bind+attach); GET_HW_INFO;
HWPT_ALLOC with dirty tracking; IOVA_RANGES twice (EMSGSIZE protocol,
iommufd.md §4.4); MAP_FILE of guest RAM from a memfd with
FIXED_IOVA|READABLE|WRITEABLE; device DMA write seen by the VMM and VMM
writes seen by the device; GET_DIRTY_BITMAP shows the page; a guest_memfd
mapped by identity, coherent both ways without msync; UNMAP; a redundant UNMAP
-> ENOENT (§4.9); DMA after UNMAP -> a fault record; teardown in order with
EBUSY for a referenced IOAS (§1.3).
"""
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def test_qemu_like_sequence(mount, cc):
    exe = cc("qemu_like.c")
    out = subprocess.run([str(exe), str(mount.path)], capture_output=True, text=True,
                         timeout=120)
    steps = [ln.split()[1:3] for ln in out.stdout.splitlines() if ln.startswith("step ")]
    failed = [name for name, res in steps if res != "ok"]
    assert out.returncode == 0 and not failed, out.stdout + out.stderr
    assert len(steps) == 24, out.stdout
