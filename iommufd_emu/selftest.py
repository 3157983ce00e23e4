"""IOMMU_TEST_CMD (spec §10) - filled in below."""
import errno
from .context import err


def h_test_cmd(ctx, cmd, ucmd):
    raise err(errno.EOPNOTSUPP, "not implemented yet")
