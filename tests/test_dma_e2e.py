"""End-to-end: emulated device DMA reaches the real bytes of each page source
(iommufd.md §3 pages objects): the caller's memory mapped by user address
(§4.6), read-only areas refuse device writes, and what the process unmaps or
what iommufd UNMAPs faults. memfd and guest_memfd sources are covered by
tests/test_qemu_like.py."""
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def test_dma_into_caller_memory_mapped_by_user_va(mount, cc):
    exe = cc("dma_user_va.c")
    out = subprocess.run([str(exe), str(mount.path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    res = dict(ln.split(None, 1) for ln in out.stdout.splitlines())
    assert res == {
        "map_user_va": "ok",
        "auto_iova_in_aperture": "ok",          # §4.5 allocator within the mock aperture
        "dma_read": "ok",
        "dma_write": "ok",
        "dma_write_readonly_area": "fault_perm",
        "map_readonly_writeable": "EFAULT",     # §4.6 step 9: pin for write fails
        "map_readonly_readable": "ok",
        "map_unmapped": "EFAULT",               # §4.6 step 9: nothing to pin
        # gmemfs cannot pin another process's pages (documented): once the
        # process unmaps them, the device faults on the backing
        "dma_after_munmap": "fault_backing",
        "unmap": "ok",
        "dma_after_unmap": "fault_unmapped",
    }
