"""VFIO type1 container ioctls on the iommufd fd (spec §9).

The kernel's drivers/iommu/iommufd/vfio_compat.c, whose rules these are
(docs/IOMMUFD_KERNEL_NOTES.md has them in prose). Every ioctl but the two
queries works on the *compat IOAS* (IOMMU_VFIO_IOAS SET, ``ctx.vfio_ioas``;
none -> ENODEV after the argument checks). The handlers are rows of
``dispatch.VFIO_TABLE`` (command, struct, argsz minimum, handler) and get
``(ctx, arg, caller)``; ``arg`` is the raw argument (an integer for
SET_IOMMU / CHECK_EXTENSION, a pointer otherwise).

* GET_API_VERSION -> 0. CHECK_EXTENSION -> 1 for TYPE1, TYPE1v2, UNMAP_ALL;
  NOIOMMU when the kernel has CONFIG_VFIO_NOIOMMU (context option
  ``vfio_noiommu``, default on, as in Debian's kernels); DMA_CC_IOMMU: the
  compat IOAS (ENODEV) has only cache-coherent domains; anything else 0.
* SET_IOMMU(type): NOIOMMU in no-iommu mode needs CAP_SYS_RAWIO (EPERM) and
  does nothing; any type but TYPE1/TYPE1v2, or no-iommu mode -> EINVAL; the
  compat IOAS (ENODEV); TYPE1 disables huge pages on it (iopt_disable_large_pages:
  EINVAL while a domain holds mappings), which is what lets type1 unmap cut
  areas (TYPE1v2 never cuts).
* IOMMU_GET_INFO: the first 16 bytes (EFAULT); argsz < 16 EINVAL; ENODEV;
  flags PGSIZES|CAPS, iova_pgsizes, a cap chain (DMA_AVAIL 12 bytes, then
  IOVA_RANGE 16 + 16 n) written only as far as argsz reaches, ``argsz`` <-
  the size of everything, ``cap_offset`` = 24 once it all fits; copy back
  min(argsz, 24) bytes.
* MAP_DMA: 32 bytes (EFAULT); argsz < 32 or flags beyond READ|WRITE EINVAL;
  ENODEV; the user pages at the given IOVA (always fixed) like IOAS_MAP
  (neither READ nor WRITE is accepted here).
* UNMAP_DMA: 24 bytes (EFAULT); argsz < 24 or flags beyond UNMAP_ALL (so
  GET_DIRTY_BITMAP and VADDR) EINVAL; ENODEV; ALL needs iova = size = 0
  (EINVAL); otherwise, with huge pages disabled, the areas are cut at
  iova + size - 1 and iova - 1 first (iopt_cut_iova), then whole areas
  inside the range go (a straddling one ENOENT, after the ones before it;
  nothing mapped is success); ``size`` <- bytes unmapped, copied back (also
  after ENOENT / EBUSY).
* IOMMU_DIRTY_PAGES, ENABLE, DISABLE and everything else: ENOTTY.
"""

from __future__ import annotations

import errno

from .errors import err

VFIO_GET_API_VERSION = 0x3B64
VFIO_CHECK_EXTENSION = 0x3B65
VFIO_SET_IOMMU = 0x3B66
VFIO_IOMMU_GET_INFO = 0x3B70
VFIO_IOMMU_MAP_DMA = 0x3B71
VFIO_IOMMU_UNMAP_DMA = 0x3B72

VFIO_API_VERSION = 0
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3
VFIO_DMA_CC_IOMMU = 4
VFIO_NOIOMMU_IOMMU = 8
VFIO_UNMAP_ALL = 9

VFIO_IOMMU_INFO_PGSIZES = 1
VFIO_IOMMU_INFO_CAPS = 2
VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1
VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3
VFIO_DMA_MAP_FLAG_READ = 1
VFIO_DMA_MAP_FLAG_WRITE = 2
VFIO_DMA_UNMAP_FLAG_ALL = 2

PAGE_SIZE = 4096
ULONG_MAX = (1 << 64) - 1
INFO_SIZE = 24                  # sizeof(struct vfio_iommu_type1_info)
INFO_MINSZ = 16                 # offsetofend(..., iova_pgsizes)
MAP_MINSZ = 32                  # offsetofend(struct vfio_iommu_type1_dma_map, size)
UNMAP_MINSZ = 24                # offsetofend(struct vfio_iommu_type1_dma_unmap, size)
U32_MAX = (1 << 32) - 1


def _u32(b, off):
    return int.from_bytes(b[off:off + 4], "little")


def _u64(b, off):
    return int.from_bytes(b[off:off + 8], "little")


def compat_ioas(ctx):
    """get_compat_ioas: the IOAS IOMMU_VFIO_IOAS set, or ENODEV."""
    ioas = ctx.vfio_ioas
    if ioas is None or ioas.dead:
        raise err(errno.ENODEV, "no VFIO compat IOAS (IOMMU_VFIO_IOAS SET)")
    return ioas


def check_extension(ctx, ext: int) -> int:
    if ext in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL):
        return 1
    if ext == VFIO_NOIOMMU_IOMMU:
        return int(bool(ctx.options.get("vfio_noiommu", True)))
    if ext == VFIO_DMA_CC_IOMMU:
        ioas = compat_ioas(ctx)
        return int(all(getattr(d, "domain", None) is None or d.domain.cache_coherent
                       for d in ioas.domains))
    return 0


def set_iommu(ctx, vtype: int, caller) -> int:
    if ctx.options.get("vfio_noiommu", True) and vtype == VFIO_NOIOMMU_IOMMU \
            and ctx.no_iommu_mode:
        if not caller.has_cap("CAP_SYS_RAWIO"):
            raise err(errno.EPERM, "VFIO_NOIOMMU_IOMMU needs CAP_SYS_RAWIO")
        return 0
    if vtype not in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU) or ctx.no_iommu_mode:
        raise err(errno.EINVAL, f"VFIO_SET_IOMMU: unsupported type {vtype}")
    ioas = compat_ioas(ctx)
    if vtype == VFIO_TYPE1_IOMMU:
        ioas.disable_large_pages_set(True)
    return 0


def pagesizes(ioas) -> int:
    """iommufd_get_pagesizes: page sizes of every domain, PAGE_SIZE at least,
    never below the IOVA alignment."""
    bitmap = ULONG_MAX
    for d in ioas.domains:
        bitmap &= getattr(getattr(d, "domain", None), "pgsize_bitmap", d.min_page)
    if bitmap & (PAGE_SIZE - 1):
        bitmap = (bitmap & ~(PAGE_SIZE - 1)) | PAGE_SIZE
    return max(bitmap, ioas.iova_alignment)


def get_info(ctx, arg: int, caller) -> int:
    head = caller.read(arg, INFO_MINSZ)                          # copy_from_user(minsz): EFAULT
    argsz = _u32(head, 0)
    if argsz < INFO_MINSZ:
        raise err(errno.EINVAL, "VFIO_IOMMU_GET_INFO: argsz < 16")
    minsz = min(argsz, INFO_SIZE)
    ioas = compat_ioas(ctx)
    dma_avail = (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL.to_bytes(2, "little") + (1).to_bytes(2, "little")
                 + bytes(4) + U32_MAX.to_bytes(4, "little"))
    ranges = ioas.usable_ranges()
    iova_cap = (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE.to_bytes(2, "little")
                + (1).to_bytes(2, "little") + bytes(4) + len(ranges).to_bytes(4, "little")
                + bytes(4))
    total = INFO_SIZE
    last_cap = None
    for cap, items in ((dma_avail, ()), (iova_cap, ranges)):
        # the fill function writes what fits in argsz - total
        avail = argsz - total if argsz > total else 0
        size = len(cap) + 16 * len(items)
        for k, (s, l) in enumerate(items):
            if avail >= len(cap) + 16 * (k + 1):
                caller.write(arg + total + len(cap) + 16 * k,
                             s.to_bytes(8, "little") + l.to_bytes(8, "little"))
        if avail >= size:
            caller.write(arg + total, cap)
        if last_cap is not None and argsz >= total:
            caller.write(last_cap + 4, total.to_bytes(4, "little"))      # put_user(next)
        last_cap = arg + total
        total += size
    info = bytearray(INFO_SIZE)
    info[0:4] = total.to_bytes(4, "little")
    info[4:8] = (VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS).to_bytes(4, "little")
    info[8:16] = pagesizes(ioas).to_bytes(8, "little")
    if argsz >= total:
        info[16:20] = INFO_SIZE.to_bytes(4, "little")
    caller.write(arg, bytes(info[:minsz]))
    return 0


def map_dma(ctx, arg: int, caller) -> int:
    from .ioas import map_user
    b = caller.read(arg, MAP_MINSZ)
    argsz, flags = _u32(b, 0), _u32(b, 4)
    if argsz < MAP_MINSZ or flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE):
        raise err(errno.EINVAL, "VFIO_IOMMU_MAP_DMA: argsz < 32 or unknown flags")
    ioas = compat_ioas(ctx)
    map_user(ctx, ioas, caller, _u64(b, 8), _u64(b, 24), _u64(b, 16), True,
             bool(flags & VFIO_DMA_MAP_FLAG_READ), bool(flags & VFIO_DMA_MAP_FLAG_WRITE))
    return 0


def unmap_dma(ctx, arg: int, caller) -> int:
    b = caller.read(arg, UNMAP_MINSZ)
    argsz, flags, iova, size = _u32(b, 0), _u32(b, 4), _u64(b, 8), _u64(b, 16)
    if argsz < UNMAP_MINSZ or flags & ~VFIO_DMA_UNMAP_FLAG_ALL:
        raise err(errno.EINVAL, "VFIO_IOMMU_UNMAP_DMA: argsz < 24 or unsupported flags")
    ioas = compat_ioas(ctx)
    if flags & VFIO_DMA_UNMAP_FLAG_ALL:
        if iova or size:
            raise err(errno.EINVAL, "VFIO_DMA_UNMAP_FLAG_ALL needs iova = size = 0")
        unmapped, e = ioas.unmap_walk(0, ULONG_MAX)
    else:
        if ioas.disable_large_pages:
            for cut in ((iova + size - 1) & ULONG_MAX, iova - 1)[:2 if iova else 1]:
                ioas.split_at(cut)
        unmapped, e = _unmap_iova(ioas, iova, size)
    caller.write(arg + 16, unmapped.to_bytes(8, "little"))
    if e is not None:
        raise e
    return 0


def _unmap_iova(ioas, iova: int, size: int):
    """iopt_unmap_iova: length 0 EINVAL, overflow EOVERFLOW, then the walk."""
    if not size:
        return 0, err(errno.EINVAL, "size is 0")
    if iova + size - 1 > ULONG_MAX:
        return 0, err(errno.EOVERFLOW, "iova + size overflows")
    return ioas.unmap_walk(iova, iova + size - 1)


def get_api_version(ctx, arg: int, caller) -> int:
    return VFIO_API_VERSION


def check_extension_ioctl(ctx, arg: int, caller) -> int:
    return check_extension(ctx, arg)


def set_iommu_ioctl(ctx, arg: int, caller) -> int:
    return set_iommu(ctx, arg, caller)
