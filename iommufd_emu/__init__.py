"""iommufd emulation: object model + ioctl dispatch (no FUSE, no trio).

    ctx = iommufd_emu.Context(options)
    ret = iommufd_emu.dispatch.ioctl(ctx, cmd, arg, caller)
    ctx.close()

See dispatch.py (table, §2.2 rules), context.py (objects/IDs), ioas.py (IOAS
model), pages.py (pins/accounting), hwpt.py (HWPT/devices), selftest.py
(IOMMU_TEST_CMD) and dma.py (gmemfs DMA extension ops).
"""

from .context import Context
from . import dispatch

__all__ = ["Context", "dispatch"]
