"""mmap() of the iommufd fd: the regions a driver hands out (spec §1.3; the
selftest vIOMMU's two pages, viommu.py ``alloc_mmap``).

The kernel's rules (drivers/iommu/iommufd/main.c, the fd's mmap): a mapping
that is not shared is EINVAL, an executable one EPERM; the offset must fall
in a region of the context (ENXIO), and the mapping must be exactly that
region: its start and its length (ENXIO). A mapping holds a reference on the
region's owner until it is unmapped (its vm_ops open/close), so destroying
the owner is EBUSY meanwhile; fork copies the mapping.

How gmemfs gets there: a FUSE server never sees mmap(). Under gmemfs exec the
supervisor intercepts shared file mmaps of the iommufd fd and asks the server
(GMEMFS_EXEC_MMAP, gmemfs/nodes/exec.py); `check` applies the rules above and
`add` records the mapping (a `Mapping`, holding the owner). The kernel then
maps the FUSE file, whose page-cache fills come back here (`read_pages`).
The server never learns of munmap(): a mapping is known to be gone only when
its process no longer maps it, which the adapter's ``ctx.mapping_alive``
predicate tells (/proc/PID/maps); `prune` asks it before an IOMMU_DESTROY
would answer EBUSY, and the context's close drops them all (the mapping held
the file: the close comes after the last munmap).
"""
from __future__ import annotations

import errno

from .errors import err

PAGE_SIZE = 4096
PROT_EXEC = 0x4
MAP_SHARED = 0x01          # MAP_SHARED_VALIDATE (0x03) includes the bit


class Mapping:
    """One mmap() of a region (the kernel's vma with vm_private_data = immap)."""

    __slots__ = ("owner", "offset", "length", "pid")

    def __init__(self, owner, offset: int, length: int, pid: int) -> None:
        self.owner, self.offset, self.length, self.pid = owner, offset, length, pid

    def __repr__(self) -> str:
        return f"<Mapping {self.owner!r} [{self.offset:#x}+{self.length:#x}) pid {self.pid}>"


def region_at(ctx, offset: int):
    """The region containing byte ``offset``: (start, owner, length) or None."""
    for start, (owner, length) in ctx.mmap_regions.items():
        if start <= offset < start + length:
            return start, owner, length
    return None


PROT_WRITE = 0x2


def check(ctx, offset: int, length: int, prot: int, flags: int, fd_writable: bool = True):
    """The iommufd fd's mmap rules for mmap(length, prot, flags, offset);
    ``length`` as the program passed it (mmap rounds it up to pages first).
    A shared mapping of an fd not open for writing is not VM_SHARED (mmap
    clears it), hence EINVAL; with PROT_WRITE mmap itself says EACCES first.
    Returns the region's owner; OSError otherwise."""
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    if flags & MAP_SHARED and prot & PROT_WRITE and not fd_writable:
        raise err(errno.EACCES, "a shared writable mapping of an fd not open for writing")
    if not flags & MAP_SHARED or not fd_writable:
        raise err(errno.EINVAL, "an iommufd mapping must be shared (MAP_SHARED of an fd "
                  "open for writing)")
    if prot & PROT_EXEC:
        raise err(errno.EPERM, "an iommufd mapping cannot be executable")
    found = region_at(ctx, offset)
    if found is None:
        raise err(errno.ENXIO, f"no mmap region at offset {offset:#x}")
    start, owner, rlen = found
    if offset != start or length != rlen:
        raise err(errno.ENXIO, f"the region is [{start:#x}, +{rlen:#x}): only all of it "
                  "can be mapped")
    return owner


def add(ctx, owner, offset: int, length: int, pid: int) -> Mapping:
    """Record a mapping `check` allowed; it holds the owner."""
    m = Mapping(owner.get(), offset, -(-length // PAGE_SIZE) * PAGE_SIZE, pid)
    ctx.mappings.append(m)
    return m


def prune(ctx) -> int:
    """Drop the mappings whose process no longer maps them (the predicate
    ``ctx.mapping_alive``; without one every mapping stays). How many went."""
    alive = ctx.mapping_alive
    if alive is None or not ctx.mappings:
        return 0
    keep, gone = [], []
    for m in ctx.mappings:
        (keep if alive(m) else gone).append(m)
    ctx.mappings = keep
    for m in gone:
        m.owner.put()
    return len(gone)


def drop_all(ctx) -> None:
    """The context closes: no mapping can be left (each held the file)."""
    gone, ctx.mappings = ctx.mappings, []
    for m in gone:
        if not m.owner.dead:
            m.owner.put()


def _mapped_region(ctx, off: int):
    for m in ctx.mappings:
        if m.offset <= off < m.offset + m.length and not m.owner.dead:
            return m
    return None


def read_pages(ctx, off: int, size: int) -> bytes | None:
    """A page-cache fill of [off, off+size) of the iommufd file: the bytes of
    the mapped regions, zeros for pages of none (readahead past a region).
    None when the first page is in no mapped region (the fault fails)."""
    if _mapped_region(ctx, off) is None:
        return None
    out = bytearray(size)
    pos = off
    while pos < off + size:
        m = _mapped_region(ctx, pos)
        page_end = min(off + size, (pos // PAGE_SIZE + 1) * PAGE_SIZE)
        if m is not None:
            end = min(off + size, m.offset + m.length)
            src = m.owner.mmap_page
            rel = pos - m.offset
            chunk = bytes(src[rel:rel + (end - pos)])
            out[pos - off:pos - off + len(chunk)] = chunk
            pos = end
        else:
            pos = page_end
    return bytes(out)


def write_pages(ctx, off: int, data) -> None:
    """Write-back of a shared mapping's dirty pages into the regions."""
    pos, end = off, off + len(data)
    while pos < end:
        m = _mapped_region(ctx, pos)
        if m is None:
            pos = min(end, (pos // PAGE_SIZE + 1) * PAGE_SIZE)
            continue
        stop = min(end, m.offset + m.length)
        rel = pos - m.offset
        m.owner.mmap_page[rel:rel + (stop - pos)] = data[pos - off:stop - off]
        pos = stop
