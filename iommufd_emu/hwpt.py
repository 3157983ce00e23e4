"""HWPT / device model (spec §6) - filled in below."""
import errno
from .context import err


def _todo(ctx, cmd, ucmd):
    raise err(errno.EOPNOTSUPP, "not implemented yet")


h_hwpt_alloc = h_get_hw_info = h_set_dirty_tracking = _todo
h_get_dirty_bitmap = h_invalidate = _todo
