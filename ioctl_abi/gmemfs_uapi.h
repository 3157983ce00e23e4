/*
 * gmemfs_uapi.h - C entry point of the gmemfs ioctl ABI.
 *
 *     gcc -I<repo>/ioctl_abi ...      (python3 -c 'import ioctl_abi; print(ioctl_abi.INCLUDE_DIR)')
 *     #include "gmemfs_uapi.h"
 *
 * All definitions live in uapi.h (shared with Python/cffi, which cannot read
 * preprocessor conditionals); this wrapper only adds what C needs around it.
 *
 * Use together with system kernel headers:
 *   - <linux/iommufd.h>: replaced by this header.  Including it before this
 *     header is an error; including it after is a no-op (its guard is set).
 *   - <linux/kvm.h>: this header includes it first when the system has it
 *     (define GMEMFS_UAPI_NO_SYSTEM_KVM_H to prevent that), so it can be
 *     included before or after.  The KVM structs the system header already
 *     declares are declared here under a gmemfs_sys_ tag (and checked to have
 *     the same size); the kernel name then refers to the system's struct.
 *   - <linux/vfio.h>: before this header, the VFIO device structs it already
 *     declares (the device cdev ones and the type1 container ones) are declared
 *     here under a gmemfs_sys_ tag (sizes checked); after
 *     it, it is a no-op (uapi.h has the device cdev ABI gmemfs serves).
 *   - <linux/vfio.h>, <linux/kvm.h>: the numbers we also define get the same
 *     values; this file is marked as a system header so gcc does not warn
 *     about the (differently spelled) redefinitions.
 *   - <fcntl.h>, <linux/falloc.h>, <linux/magic.h>: no clash (our copies of
 *     their constants are GMEMFS_ prefixed).
 */
#ifndef GMEMFS_UAPI_H
#define GMEMFS_UAPI_H

#pragma GCC system_header

#include <stdint.h>

#if defined(_IOMMUFD_H) || defined(_UAPI_IOMMUFD_H)
#error "gmemfs_uapi.h replaces <linux/iommufd.h>; do not include both"
#endif

#if !defined(GMEMFS_UAPI_NO_SYSTEM_KVM_H) && defined(__has_include)
#if __has_include(<linux/kvm.h>)
#include <linux/kvm.h>
#endif
#endif

/* Structs that <linux/kvm.h> already declared: rename our copies. */
#if defined(__LINUX_KVM_H) && defined(KVM_CREATE_GUEST_MEMFD)
#define GMEMFS_SYS_KVM_CREATE_GUEST_MEMFD 1
#define kvm_create_guest_memfd gmemfs_sys_kvm_create_guest_memfd
#endif
#if defined(__LINUX_KVM_H) && defined(KVM_SET_USER_MEMORY_REGION2)
#define GMEMFS_SYS_KVM_USERSPACE_MEMORY_REGION2 1
#define kvm_userspace_memory_region2 gmemfs_sys_kvm_userspace_memory_region2
#endif
#if defined(__LINUX_KVM_H) && defined(KVM_SET_USER_MEMORY_REGION)
#define GMEMFS_SYS_KVM_USERSPACE_MEMORY_REGION 1
#define kvm_userspace_memory_region gmemfs_sys_kvm_userspace_memory_region
#endif
#if defined(__LINUX_KVM_H) && defined(KVM_SET_MEMORY_ATTRIBUTES)
#define GMEMFS_SYS_KVM_MEMORY_ATTRIBUTES 1
#define kvm_memory_attributes gmemfs_sys_kvm_memory_attributes
#endif
#if defined(__LINUX_KVM_H) && defined(KVM_SET_MEMORY_ATTRIBUTES2)
#define GMEMFS_SYS_KVM_MEMORY_ATTRIBUTES2 1
#define kvm_memory_attributes2 gmemfs_sys_kvm_memory_attributes2
#endif

/* Structs that <linux/vfio.h> already declared (6.1 headers have the first
 * five, 6.6+ also the cdev ones): rename our copies, check the sizes. */
#if defined(_UAPIVFIO_H) || defined(VFIO_H)
#define GMEMFS_SYS_VFIO 1
#define vfio_device_info gmemfs_sys_vfio_device_info
#define vfio_region_info gmemfs_sys_vfio_region_info
#define vfio_irq_info gmemfs_sys_vfio_irq_info
#define vfio_irq_set gmemfs_sys_vfio_irq_set
#define vfio_device_feature gmemfs_sys_vfio_device_feature
#define vfio_pci_hot_reset_info gmemfs_sys_vfio_pci_hot_reset_info
#define vfio_pci_hot_reset gmemfs_sys_vfio_pci_hot_reset
#define vfio_device_ioeventfd gmemfs_sys_vfio_device_ioeventfd
#define vfio_info_cap_header gmemfs_sys_vfio_info_cap_header
#define vfio_iommu_type1_info gmemfs_sys_vfio_iommu_type1_info
#define vfio_iommu_type1_info_dma_avail gmemfs_sys_vfio_iommu_type1_info_dma_avail
#define vfio_iommu_type1_dma_map gmemfs_sys_vfio_iommu_type1_dma_map
#define vfio_iommu_type1_dma_unmap gmemfs_sys_vfio_iommu_type1_dma_unmap
#endif
#if (defined(_UAPIVFIO_H) || defined(VFIO_H)) && defined(VFIO_DEVICE_BIND_IOMMUFD)
#define GMEMFS_SYS_VFIO_CDEV 1
#define vfio_device_bind_iommufd gmemfs_sys_vfio_device_bind_iommufd
#define vfio_device_attach_iommufd_pt gmemfs_sys_vfio_device_attach_iommufd_pt
#define vfio_device_detach_iommufd_pt gmemfs_sys_vfio_device_detach_iommufd_pt
#endif

#include "uapi.h"

#ifdef GMEMFS_SYS_VFIO
#undef vfio_device_info
#undef vfio_region_info
#undef vfio_irq_info
#undef vfio_irq_set
#undef vfio_device_feature
#undef vfio_pci_hot_reset_info
#undef vfio_pci_hot_reset
#undef vfio_device_ioeventfd
#undef vfio_info_cap_header
#undef vfio_iommu_type1_info
#undef vfio_iommu_type1_info_dma_avail
#undef vfio_iommu_type1_dma_map
#undef vfio_iommu_type1_dma_unmap
_Static_assert(sizeof(struct vfio_region_info) == sizeof(struct gmemfs_sys_vfio_region_info),
	       "system <linux/vfio.h> disagrees with gmemfs on vfio_region_info");
_Static_assert(sizeof(struct vfio_irq_set) == sizeof(struct gmemfs_sys_vfio_irq_set),
	       "system <linux/vfio.h> disagrees with gmemfs on vfio_irq_set");
_Static_assert(sizeof(struct vfio_iommu_type1_info) ==
	       sizeof(struct gmemfs_sys_vfio_iommu_type1_info),
	       "system <linux/vfio.h> disagrees with gmemfs on vfio_iommu_type1_info");
_Static_assert(sizeof(struct vfio_iommu_type1_dma_map) ==
	       sizeof(struct gmemfs_sys_vfio_iommu_type1_dma_map),
	       "system <linux/vfio.h> disagrees with gmemfs on vfio_iommu_type1_dma_map");
_Static_assert(sizeof(struct vfio_iommu_type1_dma_unmap) ==
	       sizeof(struct gmemfs_sys_vfio_iommu_type1_dma_unmap),
	       "system <linux/vfio.h> disagrees with gmemfs on vfio_iommu_type1_dma_unmap");
_Static_assert(sizeof(struct vfio_iommu_type1_info_dma_avail) ==
	       sizeof(struct gmemfs_sys_vfio_iommu_type1_info_dma_avail),
	       "system <linux/vfio.h> disagrees with gmemfs on vfio_iommu_type1_info_dma_avail");
#endif
#ifdef GMEMFS_SYS_VFIO_CDEV
#undef vfio_device_bind_iommufd
#undef vfio_device_attach_iommufd_pt
#undef vfio_device_detach_iommufd_pt
#endif

#ifdef GMEMFS_SYS_KVM_CREATE_GUEST_MEMFD
#undef kvm_create_guest_memfd
_Static_assert(sizeof(struct kvm_create_guest_memfd) ==
	       sizeof(struct gmemfs_sys_kvm_create_guest_memfd),
	       "system <linux/kvm.h> disagrees with gmemfs on kvm_create_guest_memfd");
#endif
#ifdef GMEMFS_SYS_KVM_USERSPACE_MEMORY_REGION2
#undef kvm_userspace_memory_region2
_Static_assert(sizeof(struct kvm_userspace_memory_region2) ==
	       sizeof(struct gmemfs_sys_kvm_userspace_memory_region2),
	       "system <linux/kvm.h> disagrees with gmemfs on kvm_userspace_memory_region2");
#endif
#ifdef GMEMFS_SYS_KVM_USERSPACE_MEMORY_REGION
#undef kvm_userspace_memory_region
_Static_assert(sizeof(struct kvm_userspace_memory_region) ==
	       sizeof(struct gmemfs_sys_kvm_userspace_memory_region),
	       "system <linux/kvm.h> disagrees with gmemfs on kvm_userspace_memory_region");
#endif
#ifdef GMEMFS_SYS_KVM_MEMORY_ATTRIBUTES
#undef kvm_memory_attributes
_Static_assert(sizeof(struct kvm_memory_attributes) ==
	       sizeof(struct gmemfs_sys_kvm_memory_attributes),
	       "system <linux/kvm.h> disagrees with gmemfs on kvm_memory_attributes");
#endif
#ifdef GMEMFS_SYS_KVM_MEMORY_ATTRIBUTES2
#undef kvm_memory_attributes2
_Static_assert(sizeof(struct kvm_memory_attributes2) ==
	       sizeof(struct gmemfs_sys_kvm_memory_attributes2),
	       "system <linux/kvm.h> disagrees with gmemfs on kvm_memory_attributes2");
#endif

/* A later #include <linux/iommufd.h> becomes a no-op (uapi.h is a superset). */
#define _IOMMUFD_H 1
#define _UAPI_IOMMUFD_H 1
/* ... and so does a later #include <linux/vfio.h> (uapi.h has the VFIO device
 * cdev ABI gmemfs serves and the type1 numbers). */
#define _UAPIVFIO_H 1
#define VFIO_H 1

#endif /* GMEMFS_UAPI_H */
