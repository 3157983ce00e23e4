"""The selftest access file (node kind AccessNode): what ``out_access_fd`` of
IOMMU_TEST_OP_CREATE_ACCESS is (iommufd.md §10.5; the model:
iommufd_emu/access.py).

Like the kernel's ``[iommufd_test_staccess]`` file it has no operation but
release: read/write (EINVAL), ioctl (ENOTTY) and poll (always ready) are the
VFS's answers for such a file. The ACCESS_* ops name it by fd (the model
finds the access through ``FileRef.obj``). It is the access's only owner:
when its last fd is closed the access unpins everything, detaches from its
IOAS and goes, and its reference on the iommufd context is dropped.
"""
from __future__ import annotations

from iommufd_emu.access import Access

from .exec import ObjectNode, object_kind


@object_kind(Access)
class AccessNode(ObjectNode):
    """The file of IOMMU_TEST_OP_CREATE_ACCESS."""

    def _opened(self, of):
        self.obj.ctx.hold()     # the file holds the context (iommufd_ctx_get)

    def _closed(self, of):
        acc = self.obj
        ctx = acc.ctx
        if not acc.dead:
            acc.file_released()
        ctx.unhold()


def install(mount) -> None:
    """Nothing in the tree: these files come from gmemfs exec (nodes/exec.py)."""
