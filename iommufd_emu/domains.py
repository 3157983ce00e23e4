"""Kinds of paging domain and the IOMMU models that hand them out.

A paging HWPT is a domain of some *kind* (``DomainKind``): its aperture, the
page sizes its page table can hold and the granule its dirty bits have. The
kind is all the IOAS needs to know about a domain (``Ioas.attach_domain``:
the IOVA alignment is the smallest page size, everything outside the aperture
is reserved while the domain is attached).

A device belongs to an ``IommuModel``: which kind its automatic domain is,
which kinds ``IOMMU_HWPT_ALLOC`` can make for it (driver data), which reserved
regions it brings to an IOAS it is attached to, which vIOMMU / HW queue types
its driver knows. The selftest mock IOMMU (drivers/iommu/iommufd/selftest.c)
is ``MOCK_IOMMU``; another device model (an emulated PCI device behind an x86
IOMMU: whole IOVA space, the MSI window reserved) adds its own IommuModel and
DomainKind here and needs nothing else from the HWPT code.

Facts from drivers/iommu/iommufd/selftest.c (v6.19 merge, iommupt mock):

* the default mock domain ("MOCK_IOMMUPT_DEFAULT") is an AMDv1-format table
  with a 2 KiB base page; its aperture is overridden to
  [MOCK_APERTURE_START, MOCK_APERTURE_LAST] for the tests;
* the huge variant ("MOCK_IOMMUPT_HUGE") has ``pgsize_bitmap =
  MOCK_HUGE_PAGE_SIZE | PAGE_SIZE`` ("we have to include PAGE_SIZE for the
  domain to be accepted by iommufd"), so its smallest page is PAGE_SIZE, and
  keeps the page table's own aperture (a 56-bit virtual address space);
* every mock device is cache coherent (IOMMU_CAP_CACHE_COHERENCY), dirty
  capable unless MOCK_FLAGS_DEVICE_NO_DIRTY; one mock IOMMU instance serves
  every mock device (vIOMMU/vDEVICE "same physical IOMMU" checks pass).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from .errors import err

PAGE_SIZE = 4096
ULONG_MAX = (1 << 64) - 1

MOCK_APERTURE_START = 1 << 24
MOCK_APERTURE_LAST = (1 << 31) - 1
MOCK_PAGE_SIZE = 2048
MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE
MOCK_VASZ = 56                      # hw_max_vasz_lg2 of the mock AMDv1 table

MOCK_IOMMUPT_DEFAULT = 0
MOCK_IOMMUPT_HUGE = 1
MOCK_IOMMUPT_AMDV1 = 2

IOMMU_HW_INFO_TYPE_NONE = 0
IOMMU_HW_INFO_TYPE_SELFTEST = 0xFEEDBEEF
IOMMU_HW_INFO_SELFTEST_REGVAL = 0xDEADBEEF
IOMMU_VIOMMU_TYPE_SELFTEST = 0xDEADBEEF
IOMMU_HW_QUEUE_TYPE_SELFTEST = 0xDEADBEEF
IOMMU_VEVENTQ_TYPE_SELFTEST = 0xBEEFBEEF
IOMMU_HWPT_DATA_NONE = 0
IOMMU_HWPT_DATA_SELFTEST = 0xDEAD


@dataclass(frozen=True)
class DomainKind:
    """What an IOAS and the dirty-tracking code need to know about a domain."""

    name: str
    aperture: tuple           # (first, last) IOVA the domain can translate
    pgsize_bitmap: int        # page sizes the page table holds
    dirty_granule: int        # the IOPTE size a dirty bit stands for
    cache_coherent: bool = True

    @property
    def min_page(self) -> int:
        """The smallest page size: the IOAS alignment while attached."""
        return self.pgsize_bitmap & -self.pgsize_bitmap


MOCK_DEFAULT = DomainKind("mock", (MOCK_APERTURE_START, MOCK_APERTURE_LAST),
                          ~(MOCK_PAGE_SIZE - 1) & ((1 << MOCK_VASZ) - 1), MOCK_PAGE_SIZE)
MOCK_HUGE = DomainKind("mock-huge", (0, (1 << MOCK_VASZ) - 1),
                       MOCK_HUGE_PAGE_SIZE | PAGE_SIZE, MOCK_HUGE_PAGE_SIZE)


class IommuModel:
    """The driver behind a device (iommu_ops of the kernel), hooks only.

    ``auto_kind(dev)``: the kind of an automatic domain (attach to an IOAS);
    ``paging_kind(dev, data_type, blob)``: the kind IOMMU_HWPT_ALLOC makes,
    ``blob`` the copied driver data or None; raises the driver's errno;
    ``reserved_regions(dev)``: [(first, last)] the device reserves in an IOAS
    while attached (MSI windows); ``viommu_types`` / ``hw_queue_types`` /
    ``veventq_types``: what the driver's vIOMMU supports."""

    name = "none"
    viommu_types: frozenset = frozenset()
    hw_queue_types: frozenset = frozenset()
    veventq_types: frozenset = frozenset()
    hw_queue_max = 0

    def auto_kind(self, dev) -> DomainKind:
        raise NotImplementedError

    def paging_kind(self, dev, data_type: int, blob) -> DomainKind:
        raise err(errno.EOPNOTSUPP, f"{self.name}: no driver data for paging domains")

    def reserved_regions(self, dev):
        return ()

    def hw_info(self, dev):
        """IOMMU_GET_HW_INFO: (IOMMU_HW_INFO_TYPE_*, vendor data)."""
        return IOMMU_HW_INFO_TYPE_NONE, b""


class MockIommu(IommuModel):
    name = "iommufd_mock"
    viommu_types = frozenset({IOMMU_VIOMMU_TYPE_SELFTEST})
    hw_queue_types = frozenset({IOMMU_HW_QUEUE_TYPE_SELFTEST})
    veventq_types = frozenset({IOMMU_VEVENTQ_TYPE_SELFTEST})
    hw_queue_max = 2                    # IOMMU_TEST_HW_QUEUE_MAX

    def auto_kind(self, dev) -> DomainKind:
        return MOCK_DEFAULT

    def hw_info(self, dev):
        """mock_domain_hw_info: struct iommu_test_hw_info {flags 0, test_reg}."""
        return IOMMU_HW_INFO_TYPE_SELFTEST, (
            (0).to_bytes(4, "little") + IOMMU_HW_INFO_SELFTEST_REGVAL.to_bytes(4, "little"))

    def paging_kind(self, dev, data_type, blob) -> DomainKind:
        """mock_domain_alloc_paging_flags / mock_domain_alloc_pgtable."""
        if blob is None:
            return MOCK_DEFAULT
        ptype = int.from_bytes(blob[4:8], "little")
        if ptype == MOCK_IOMMUPT_DEFAULT:
            return MOCK_DEFAULT
        if ptype == MOCK_IOMMUPT_HUGE:
            return MOCK_HUGE
        raise err(errno.EOPNOTSUPP, f"unknown mock pagetable_type {ptype}")


MOCK_IOMMU = MockIommu()


# What a real x86 IOMMU (VT-d / AMD-Vi second stage) gives a device domain:
# the whole IOVA space, 4 KiB / 2 MiB / 1 GiB pages; the interrupt window
# (IOMMU_RESV_MSI of intel-iommu / amd-iommu) is reserved in every IOAS the
# device is attached to. No driver data, no dirty tracking, no vIOMMU here.
X86_MSI_WINDOW = (0xFEE00000, 0xFEEFFFFF)
X86 = DomainKind("x86", (0, ULONG_MAX), PAGE_SIZE | 1 << 21 | 1 << 30, PAGE_SIZE)


class X86Iommu(IommuModel):
    name = "x86"

    def auto_kind(self, dev) -> DomainKind:
        return X86

    def paging_kind(self, dev, data_type, blob) -> DomainKind:
        if blob is not None:
            raise err(errno.EOPNOTSUPP, "x86: no driver data for paging domains")
        return X86

    def reserved_regions(self, dev):
        return (X86_MSI_WINDOW,)


X86_IOMMU = X86Iommu()
