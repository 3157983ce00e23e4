"""How the iommufd model reports an error (docs/ARCHITECTURE.md, Errors).

Every model raises ``OSError(errno.EXXX, "human readable reason")``; the FUSE
adapter turns it into the reply errno and logs the reason. This module sits
at the bottom of iommufd_emu: everything imports it, it imports nothing.
"""


def err(code: int, msg: str) -> OSError:
    """Build the OSError every model raises."""
    return OSError(code, msg)
