/*
 * gmemfs ioctl ABI: the single source of truth for every struct and number
 * that crosses the gmemfs ioctl boundary.
 *
 * This file is read twice:
 *   - by Python: ioctl_abi/__init__.py feeds its text to cffi.FFI().cdef();
 *   - by C:      through ioctl_abi/gmemfs_uapi.h (include guard, <stdint.h>,
 *                compatibility with system kernel headers).
 *
 * Rules for editing (cffi's cdef parser is not a C preprocessor):
 *   - only struct definitions and `#define NAME <integer literal>` lines;
 *     no #include, #if/#ifdef, #pragma, no expressions or suffixes in defines;
 *   - types: uint8_t/uint16_t/uint32_t/uint64_t/int32_t only;
 *   - kernel struct, field and constant names exactly (including __reserved
 *     fields and anonymous unions); `__aligned_u64`/`__aligned_le64` are
 *     written uint64_t, which is 8-aligned on x86_64 as well;
 *   - names that libc or generic kernel headers (<fcntl.h>, <linux/falloc.h>,
 *     <linux/magic.h>) also define get a GMEMFS_ prefix;
 *   - every new struct/constant needs an expectation in tests/test_abi.py.
 *
 * Sources: /work/shared/spec/iommufd.md (Linux 7.2 iommufd uAPI and the
 * selftest ABI of drivers/iommu/iommufd/iommufd_test.h) and
 * /work/shared/spec/guest_memfd.md (KVM guest_memfd, merged and [PROP]).
 * Section numbers below refer to those files.
 */

/* ====================================================================== */
/* iommufd: ioctl numbers (iommufd.md §2.1).  cmd = _IO(';', nr)          */
/* ====================================================================== */

#define IOMMUFD_TYPE 0x3b

#define IOMMUFD_CMD_BASE 0x80
#define IOMMUFD_CMD_DESTROY 0x80
#define IOMMUFD_CMD_IOAS_ALLOC 0x81
#define IOMMUFD_CMD_IOAS_ALLOW_IOVAS 0x82
#define IOMMUFD_CMD_IOAS_COPY 0x83
#define IOMMUFD_CMD_IOAS_IOVA_RANGES 0x84
#define IOMMUFD_CMD_IOAS_MAP 0x85
#define IOMMUFD_CMD_IOAS_UNMAP 0x86
#define IOMMUFD_CMD_OPTION 0x87
#define IOMMUFD_CMD_VFIO_IOAS 0x88
#define IOMMUFD_CMD_HWPT_ALLOC 0x89
#define IOMMUFD_CMD_GET_HW_INFO 0x8a
#define IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING 0x8b
#define IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP 0x8c
#define IOMMUFD_CMD_HWPT_INVALIDATE 0x8d
#define IOMMUFD_CMD_FAULT_QUEUE_ALLOC 0x8e
#define IOMMUFD_CMD_IOAS_MAP_FILE 0x8f
#define IOMMUFD_CMD_VIOMMU_ALLOC 0x90
#define IOMMUFD_CMD_VDEVICE_ALLOC 0x91
#define IOMMUFD_CMD_IOAS_CHANGE_PROCESS 0x92
#define IOMMUFD_CMD_VEVENTQ_ALLOC 0x93
#define IOMMUFD_CMD_HW_QUEUE_ALLOC 0x94

#define IOMMU_DESTROY 0x3b80
#define IOMMU_IOAS_ALLOC 0x3b81
#define IOMMU_IOAS_ALLOW_IOVAS 0x3b82
#define IOMMU_IOAS_COPY 0x3b83
#define IOMMU_IOAS_IOVA_RANGES 0x3b84
#define IOMMU_IOAS_MAP 0x3b85
#define IOMMU_IOAS_UNMAP 0x3b86
#define IOMMU_OPTION 0x3b87
#define IOMMU_VFIO_IOAS 0x3b88
#define IOMMU_HWPT_ALLOC 0x3b89
#define IOMMU_GET_HW_INFO 0x3b8a
#define IOMMU_HWPT_SET_DIRTY_TRACKING 0x3b8b
#define IOMMU_HWPT_GET_DIRTY_BITMAP 0x3b8c
#define IOMMU_HWPT_INVALIDATE 0x3b8d
#define IOMMU_FAULT_QUEUE_ALLOC 0x3b8e
#define IOMMU_IOAS_MAP_FILE 0x3b8f
#define IOMMU_VIOMMU_ALLOC 0x3b90
#define IOMMU_VDEVICE_ALLOC 0x3b91
#define IOMMU_IOAS_CHANGE_PROCESS 0x3b92
#define IOMMU_VEVENTQ_ALLOC 0x3b93
#define IOMMU_HW_QUEUE_ALLOC 0x3b94
/* selftest (CONFIG_IOMMUFD_TEST kernels only): _IO(';', IOMMUFD_CMD_BASE + 32) */
#define IOMMU_TEST_CMD 0x3ba0

/* ====================================================================== */
/* iommufd: IOAS family (iommufd.md §4)                                   */
/* ====================================================================== */

/* §4.1 */
struct iommu_destroy {
	uint32_t size;
	uint32_t id;
};

/* §4.2 */
struct iommu_ioas_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_ioas_id;
};

/* §4.3: element of allowed_iovas[]; last is inclusive */
struct iommu_iova_range {
	uint64_t start;
	uint64_t last;
};

/* §4.3 */
struct iommu_ioas_allow_iovas {
	uint32_t size;
	uint32_t ioas_id;
	uint32_t num_iovas;
	uint32_t __reserved;
	uint64_t allowed_iovas;		/* user pointer to struct iommu_iova_range[] */
};

/* §4.4 */
struct iommu_ioas_iova_ranges {
	uint32_t size;
	uint32_t ioas_id;
	uint32_t num_iovas;		/* in: capacity, out: total */
	uint32_t __reserved;
	uint64_t allowed_iovas;		/* user pointer to struct iommu_iova_range[] */
	uint64_t out_iova_alignment;
};

/* §4.6 flags of MAP, MAP_FILE and COPY */
#define IOMMU_IOAS_MAP_FIXED_IOVA 0x1
#define IOMMU_IOAS_MAP_WRITEABLE 0x2
#define IOMMU_IOAS_MAP_READABLE 0x4

/* §4.6 */
struct iommu_ioas_map {
	uint32_t size;
	uint32_t flags;
	uint32_t ioas_id;
	uint32_t __reserved;
	uint64_t user_va;
	uint64_t length;
	uint64_t iova;
};

/* §4.7 */
struct iommu_ioas_map_file {
	uint32_t size;
	uint32_t flags;
	uint32_t ioas_id;
	int32_t fd;			/* fd number in the caller's table */
	uint64_t start;
	uint64_t length;
	uint64_t iova;
};

/* §4.8 */
struct iommu_ioas_copy {
	uint32_t size;
	uint32_t flags;
	uint32_t dst_ioas_id;
	uint32_t src_ioas_id;
	uint64_t length;
	uint64_t dst_iova;
	uint64_t src_iova;
};

/* §4.9 */
struct iommu_ioas_unmap {
	uint32_t size;
	uint32_t ioas_id;
	uint64_t iova;
	uint64_t length;
};

/* §4.10 */
#define IOMMU_OPTION_RLIMIT_MODE 0
#define IOMMU_OPTION_HUGE_PAGES 1
#define IOMMU_OPTION_OP_SET 0
#define IOMMU_OPTION_OP_GET 1

struct iommu_option {
	uint32_t size;
	uint32_t option_id;
	uint16_t op;
	uint16_t __reserved;
	uint32_t object_id;
	uint64_t val64;
};

/* §4.12 */
struct iommu_ioas_change_process {
	uint32_t size;
	uint32_t __reserved;
};

/* ====================================================================== */
/* iommufd: IOMMU_VFIO_IOAS (iommufd.md §5)                               */
/* ====================================================================== */

#define IOMMU_VFIO_IOAS_GET 0
#define IOMMU_VFIO_IOAS_SET 1
#define IOMMU_VFIO_IOAS_CLEAR 2

struct iommu_vfio_ioas {
	uint32_t size;
	uint32_t ioas_id;
	uint16_t op;
	uint16_t __reserved;
};

/* ====================================================================== */
/* iommufd: HWPT, device, vIOMMU family (iommufd.md §6, §7)               */
/* ====================================================================== */

/* §6.1 constants */
#define IOMMU_HWPT_ALLOC_NEST_PARENT 0x1
#define IOMMU_HWPT_ALLOC_DIRTY_TRACKING 0x2
#define IOMMU_HWPT_FAULT_ID_VALID 0x4
#define IOMMU_HWPT_ALLOC_PASID 0x8

#define IOMMU_HWPT_DATA_NONE 0
#define IOMMU_HWPT_DATA_VTD_S1 1
#define IOMMU_HWPT_DATA_ARM_SMMUV3 2
#define IOMMU_HWPT_DATA_AMD_GUEST 3

#define IOMMU_VTD_S1_SRE 0x1
#define IOMMU_VTD_S1_EAFE 0x2
#define IOMMU_VTD_S1_WPE 0x4

#define IOMMU_HW_INFO_TYPE_NONE 0
#define IOMMU_HW_INFO_TYPE_DEFAULT 0
#define IOMMU_HW_INFO_TYPE_INTEL_VTD 1
#define IOMMU_HW_INFO_TYPE_ARM_SMMUV3 2
#define IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV 3
#define IOMMU_HW_INFO_TYPE_AMD 4

#define IOMMU_HW_INFO_FLAG_INPUT_TYPE 0x1
#define IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 0x1

#define IOMMU_HW_CAP_DIRTY_TRACKING 0x1
#define IOMMU_HW_CAP_PCI_PASID_EXEC 0x2
#define IOMMU_HW_CAP_PCI_PASID_PRIV 0x4
#define IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED 0x8

#define IOMMU_HWPT_DIRTY_TRACKING_ENABLE 1
#define IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR 1

#define IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 0
#define IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 1
#define IOMMU_VTD_INV_FLAGS_LEAF 0x1

#define IOMMU_PGFAULT_FLAGS_PASID_VALID 0x1
#define IOMMU_PGFAULT_FLAGS_LAST_PAGE 0x2
#define IOMMU_PGFAULT_PERM_READ 0x1
#define IOMMU_PGFAULT_PERM_WRITE 0x2
#define IOMMU_PGFAULT_PERM_EXEC 0x4
#define IOMMU_PGFAULT_PERM_PRIV 0x8

#define IOMMUFD_PAGE_RESP_SUCCESS 0
#define IOMMUFD_PAGE_RESP_INVALID 1

#define IOMMU_VIOMMU_TYPE_DEFAULT 0
#define IOMMU_VIOMMU_TYPE_ARM_SMMUV3 1
#define IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV 2

#define IOMMU_VEVENTQ_FLAG_LOST_EVENTS 0x1
#define IOMMU_VEVENTQ_TYPE_DEFAULT 0
#define IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 1
#define IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV 2

#define IOMMU_HW_QUEUE_TYPE_DEFAULT 0
#define IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV 1

/* §6.2 */
struct iommu_hwpt_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pt_id;
	uint32_t out_hwpt_id;
	uint32_t __reserved;
	uint32_t data_type;
	uint32_t data_len;
	uint64_t data_uptr;
	uint32_t fault_id;
	uint32_t __reserved2;
};

/* §6.2 / §6.3 HWPT data blobs (IOMMU_HWPT_DATA_*) */
struct iommu_hwpt_vtd_s1 {
	uint64_t flags;
	uint64_t pgtbl_addr;
	uint32_t addr_width;
	uint32_t __reserved;
};

struct iommu_hwpt_arm_smmuv3 {
	uint64_t ste[2];		/* __aligned_le64 */
};

struct iommu_hwpt_amd_guest {
	uint64_t dte[4];
};

/* §6.3 */
struct iommu_hw_info {
	uint32_t size;
	uint32_t flags;
	uint32_t dev_id;
	uint32_t data_len;		/* in: buffer size, out: kernel data size */
	uint64_t data_uptr;
	union {
		uint32_t in_data_type;
		uint32_t out_data_type;
	};
	uint8_t out_max_pasid_log2;
	uint8_t __reserved[3];
	uint64_t out_capabilities;
};

/* §6.3 vendor info blobs (IOMMU_HW_INFO_TYPE_*) */
struct iommu_hw_info_vtd {
	uint32_t flags;
	uint32_t __reserved;
	uint64_t cap_reg;
	uint64_t ecap_reg;
};

struct iommu_hw_info_arm_smmuv3 {
	uint32_t flags;
	uint32_t __reserved;
	uint32_t idr[6];
	uint32_t iidr;
	uint32_t aidr;
};

struct iommu_hw_info_tegra241_cmdqv {
	uint32_t flags;
	uint8_t version;
	uint8_t log2vcmdqs;
	uint8_t log2vsids;
	uint8_t __reserved;
};

struct iommu_hw_info_amd {
	uint64_t efr;
	uint64_t efr2;
};

/* §6.4 */
struct iommu_hwpt_set_dirty_tracking {
	uint32_t size;
	uint32_t flags;
	uint32_t hwpt_id;
	uint32_t __reserved;
};

/* §6.5 */
struct iommu_hwpt_get_dirty_bitmap {
	uint32_t size;
	uint32_t hwpt_id;
	uint32_t flags;
	uint32_t __reserved;
	uint64_t iova;
	uint64_t length;
	uint64_t page_size;
	uint64_t data;			/* user pointer to uint64_t bitmap */
};

/* §6.6 */
struct iommu_hwpt_invalidate {
	uint32_t size;
	uint32_t hwpt_id;
	uint64_t data_uptr;
	uint32_t data_type;
	uint32_t entry_len;
	uint32_t entry_num;		/* in: count, out: handled */
	uint32_t __reserved;
};

/* §6.6 invalidation entries */
struct iommu_hwpt_vtd_s1_invalidate {
	uint64_t addr;
	uint64_t npages;
	uint32_t flags;
	uint32_t __reserved;
};

struct iommu_viommu_arm_smmuv3_invalidate {
	uint64_t cmd[2];		/* __aligned_le64 */
};

/* §6.7 */
struct iommu_fault_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t out_fault_id;
	uint32_t out_fault_fd;
};

/* §6.7 / §7: records read from / written to the fault queue fd */
struct iommu_hwpt_pgfault {
	uint32_t flags;
	uint32_t dev_id;
	uint32_t pasid;
	uint32_t grpid;
	uint32_t perm;
	uint32_t __reserved;
	uint64_t addr;
	uint32_t length;
	uint32_t cookie;
};

struct iommu_hwpt_page_response {
	uint32_t cookie;
	uint32_t code;
};

/* §6.8 */
struct iommu_viommu_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t type;
	uint32_t dev_id;
	uint32_t hwpt_id;
	uint32_t out_viommu_id;
	uint32_t data_len;
	uint32_t __reserved;
	uint64_t data_uptr;
};

/* §6.8 / §7 vIOMMU type data */
struct iommu_viommu_tegra241_cmdqv {
	uint64_t out_vintf_mmap_offset;
	uint64_t out_vintf_mmap_length;
};

/* §6.9 */
struct iommu_vdevice_alloc {
	uint32_t size;
	uint32_t viommu_id;
	uint32_t dev_id;
	uint32_t out_vdevice_id;
	uint64_t virt_id;
};

/* §6.10 */
struct iommu_veventq_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t viommu_id;
	uint32_t type;
	uint32_t veventq_depth;
	uint32_t out_veventq_id;
	uint32_t out_veventq_fd;
	uint32_t __reserved;
};

/* §6.10 / §7: records read from the vEVENTQ fd */
struct iommufd_vevent_header {
	uint32_t flags;
	uint32_t sequence;
};

struct iommu_vevent_arm_smmuv3 {
	uint64_t evt[4];		/* __aligned_le64 */
};

struct iommu_vevent_tegra241_cmdqv {
	uint64_t lvcmdq_err_map[2];	/* __aligned_le64 */
};

/* §6.11 */
struct iommu_hw_queue_alloc {
	uint32_t size;
	uint32_t flags;
	uint32_t viommu_id;
	uint32_t type;
	uint32_t index;
	uint32_t out_hw_queue_id;
	uint64_t nesting_parent_iova;
	uint64_t length;
};

/* ====================================================================== */
/* VFIO type1 container ioctls served on the iommufd fd (iommufd.md §9)   */
/* _IO(';', 100 + n); numbers only                                        */
/* ====================================================================== */

#define VFIO_GET_API_VERSION 0x3b64
#define VFIO_CHECK_EXTENSION 0x3b65
#define VFIO_SET_IOMMU 0x3b66
#define VFIO_IOMMU_GET_INFO 0x3b70
#define VFIO_IOMMU_MAP_DMA 0x3b71
#define VFIO_IOMMU_UNMAP_DMA 0x3b72
#define VFIO_IOMMU_ENABLE 0x3b73
#define VFIO_IOMMU_DISABLE 0x3b74
#define VFIO_IOMMU_DIRTY_PAGES 0x3b75

/* include/uapi/linux/vfio.h: the type1 container ABI that
   drivers/iommu/iommufd/vfio_compat.c serves (docs/IOMMUFD_KERNEL_NOTES.md) */
#define VFIO_API_VERSION 0
#define VFIO_TYPE1_IOMMU 1
#define VFIO_SPAPR_TCE_IOMMU 2
#define VFIO_TYPE1v2_IOMMU 3
#define VFIO_DMA_CC_IOMMU 4
#define VFIO_EEH 5
#define VFIO_TYPE1_NESTING_IOMMU 6
#define VFIO_SPAPR_TCE_v2_IOMMU 7
#define VFIO_NOIOMMU_IOMMU 8
#define VFIO_UNMAP_ALL 9
#define VFIO_UPDATE_VADDR 10

struct vfio_info_cap_header {
	uint16_t id;
	uint16_t version;
	uint32_t next;		/* offset of the next cap from the start of the info struct */
};

#define VFIO_IOMMU_INFO_PGSIZES 0x1
#define VFIO_IOMMU_INFO_CAPS 0x2
struct vfio_iommu_type1_info {	/* 24 bytes; argsz >= 16 (end of iova_pgsizes) */
	uint32_t argsz;
	uint32_t flags;
	uint64_t iova_pgsizes;
	uint32_t cap_offset;	/* 4 bytes of tail padding follow (alignment 8) */
};

/* vfio_iommu_type1_info_cap_iova_range (id 1) is { header; u32 nr_iovas;
   u32 reserved; struct vfio_iova_range { u64 start; u64 end; } iova_ranges[]; }
   = 16 + 16 * nr_iovas bytes; not declared here (a flexible array of u64s
   cffi cannot lay out like gcc) */
#define VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE 1

#define VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL 3
struct vfio_iommu_type1_info_dma_avail {	/* 12 bytes */
	struct vfio_info_cap_header header;
	uint32_t avail;
};

#define VFIO_DMA_MAP_FLAG_READ 0x1
#define VFIO_DMA_MAP_FLAG_WRITE 0x2
#define VFIO_DMA_MAP_FLAG_VADDR 0x4
struct vfio_iommu_type1_dma_map {	/* 32 bytes; argsz >= 32 */
	uint32_t argsz;
	uint32_t flags;
	uint64_t vaddr;
	uint64_t iova;
	uint64_t size;
};

#define VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP 0x1
#define VFIO_DMA_UNMAP_FLAG_ALL 0x2
#define VFIO_DMA_UNMAP_FLAG_VADDR 0x4
struct vfio_iommu_type1_dma_unmap {	/* 24 bytes (+ dirty bitmap data); argsz >= 24 */
	uint32_t argsz;
	uint32_t flags;
	uint64_t iova;
	uint64_t size;
};

/* ====================================================================== */
/* iommufd selftest ABI: IOMMU_TEST_CMD (iommufd.md §10)                  */
/* ====================================================================== */

/* §10.2 op ids */
#define IOMMU_TEST_OP_ADD_RESERVED 1
#define IOMMU_TEST_OP_MOCK_DOMAIN 2
#define IOMMU_TEST_OP_MD_CHECK_MAP 3
#define IOMMU_TEST_OP_MD_CHECK_REFS 4
#define IOMMU_TEST_OP_CREATE_ACCESS 5
#define IOMMU_TEST_OP_DESTROY_ACCESS_PAGES 6
#define IOMMU_TEST_OP_ACCESS_PAGES 7
#define IOMMU_TEST_OP_ACCESS_RW 8
#define IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT 9
#define IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE 10
#define IOMMU_TEST_OP_ACCESS_REPLACE_IOAS 11
#define IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS 12
#define IOMMU_TEST_OP_DIRTY 13
#define IOMMU_TEST_OP_MD_CHECK_IOTLB 14
#define IOMMU_TEST_OP_TRIGGER_IOPF 15
#define IOMMU_TEST_OP_DEV_CHECK_CACHE 16
#define IOMMU_TEST_OP_TRIGGER_VEVENT 17
#define IOMMU_TEST_OP_PASID_ATTACH 18
#define IOMMU_TEST_OP_PASID_REPLACE 19
#define IOMMU_TEST_OP_PASID_DETACH 20
#define IOMMU_TEST_OP_PASID_CHECK_HWPT 21
#define IOMMU_TEST_OP_DMABUF_GET 22
#define IOMMU_TEST_OP_DMABUF_REVOKE 23
/* development trees only, may be absent in 7.2 (§12 item 3) */
#define IOMMU_TEST_OP_MD_CHECK_DMABUF 24

/* §10.3 mock constants */
#define MOCK_APERTURE_START 0x1000000
#define MOCK_APERTURE_LAST 0x7fffffff
#define MOCK_PAGE_SIZE 2048
#define MOCK_HUGE_PAGE_SIZE 0x100000
#define MOCK_IOMMUPT_DEFAULT 0
#define MOCK_IOMMUPT_HUGE 1
#define MOCK_IOMMUPT_AMDV1 2
#define MOCK_FLAGS_ACCESS_WRITE 0x1
#define MOCK_FLAGS_ACCESS_SYZ 0x10000
#define MOCK_ACCESS_RW_WRITE 0x1
#define MOCK_ACCESS_RW_SLOW_PATH 0x4
#define MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES 0x1
#define MOCK_FLAGS_DEVICE_NO_DIRTY 0x1
#define MOCK_FLAGS_DEVICE_PASID 0x4
#define MOCK_NESTED_DOMAIN_IOTLB_ID_MAX 3
#define MOCK_NESTED_DOMAIN_IOTLB_NUM 4
#define MOCK_DEV_CACHE_ID_MAX 3
#define MOCK_DEV_CACHE_NUM 4
#define IOMMU_TEST_PASID_RESERVED 1024
#define MOCK_PASID_WIDTH 20
#define IOMMU_HW_INFO_TYPE_SELFTEST 0xfeedbeef
#define IOMMU_HW_INFO_SELFTEST_REGVAL 0xdeadbeef
#define IOMMU_HWPT_DATA_SELFTEST 0xdead
#define IOMMU_TEST_IOTLB_DEFAULT 0xbadbeef
#define IOMMU_TEST_DEV_CACHE_DEFAULT 0xbaddad
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST 0xdeadbeef
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeef
#define IOMMU_VIOMMU_TYPE_SELFTEST 0xdeadbeef
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST 0xdeadbeef
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeef
#define IOMMU_VEVENTQ_TYPE_SELFTEST 0xbeefbeef
#define IOMMU_HW_QUEUE_TYPE_SELFTEST 0xdeadbeef
#define IOMMU_TEST_HW_QUEUE_MAX 2
#define IOMMU_TEST_INVALIDATE_FLAG_ALL 0x1

/* §10.1: 72 bytes (4 bytes of tail padding after `last`), min size 68 */
struct iommu_test_cmd {
	uint32_t size;
	uint32_t op;
	uint32_t id;
	uint32_t __reserved;
	union {
		struct {
			uint64_t start;
			uint64_t length;
		} add_reserved;
		struct {
			uint32_t out_stdev_id;
			uint32_t out_hwpt_id;
			uint32_t out_idev_id;
		} mock_domain;
		struct {
			uint32_t out_stdev_id;
			uint32_t out_hwpt_id;
			uint32_t out_idev_id;
			uint32_t dev_flags;
		} mock_domain_flags;
		struct {
			uint32_t pt_id;
		} mock_domain_replace;
		struct {
			uint64_t iova;
			uint64_t length;
			uint64_t uptr;
		} check_map;
		struct {
			uint64_t length;
			uint64_t uptr;
			uint32_t refs;
		} check_refs;
		struct {
			uint32_t out_access_fd;
			uint32_t flags;
		} create_access;
		struct {
			uint32_t access_pages_id;
		} destroy_access_pages;
		struct {
			uint32_t flags;
			uint32_t out_access_pages_id;
			uint64_t iova;
			uint64_t length;
			uint64_t uptr;
		} access_pages;
		struct {
			uint64_t iova;
			uint64_t length;
			uint64_t uptr;
			uint32_t flags;
		} access_rw;
		struct {
			uint32_t limit;
		} memory_limit;
		struct {
			uint32_t ioas_id;
		} access_replace_ioas;
		struct {
			uint32_t flags;
			uint64_t iova;
			uint64_t length;
			uint64_t page_size;
			uint64_t uptr;
			uint64_t out_nr_dirty;
		} dirty;
		struct {
			uint32_t id;
			uint32_t iotlb;
		} check_iotlb;
		struct {
			uint32_t dev_id;
			uint32_t pasid;
			uint32_t grpid;
			uint32_t perm;
			uint64_t addr;
		} trigger_iopf;
		struct {
			uint32_t id;
			uint32_t cache;
		} check_dev_cache;
		struct {
			uint32_t dev_id;
		} trigger_vevent;
		struct {
			uint32_t pasid;
			uint32_t pt_id;
		} pasid_attach;
		struct {
			uint32_t pasid;
			uint32_t pt_id;
		} pasid_replace;
		struct {
			uint32_t pasid;
		} pasid_detach;
		struct {
			uint32_t pasid;
			uint32_t hwpt_id;
		} pasid_check;
		struct {
			uint32_t length;
			uint32_t open_flags;
		} dmabuf_get;
		struct {
			int32_t dmabuf_fd;
			uint32_t revoked;
		} dmabuf_revoke;
		struct {			/* newer trees only */
			int32_t dmabuf_fd;
			uint64_t iova;
			uint64_t length;
			uint64_t offset;
		} check_dmabuf;
	};
	uint32_t last;
};

/* §10.3 mock data structs */
struct iommu_test_hw_info {
	uint32_t flags;
	uint32_t test_reg;
};

struct iommu_hwpt_selftest {
	uint32_t iotlb;
	uint32_t pagetable_type;	/* MOCK_IOMMUPT_* */
};

struct iommu_hwpt_invalidate_selftest {
	uint32_t flags;
	uint32_t iotlb_id;
};

struct iommu_viommu_selftest {
	uint32_t in_data;
	uint32_t out_data;
	uint64_t out_mmap_offset;
	uint64_t out_mmap_length;
};

struct iommu_viommu_invalidate_selftest {
	uint32_t flags;
	uint32_t vdev_id;
	uint32_t cache_id;
};

struct iommu_viommu_event_selftest {
	uint32_t virt_id;
};

/* ====================================================================== */
/* KVM / guest_memfd (guest_memfd.md §1, §2)                              */
/* [PROP] = proposed (in-place conversion series v8), not merged.         */
/* ====================================================================== */

/* §1.1 ioctls: KVMIO = 0xAE; the direction/size bits are part of the number */
#define KVMIO 0xAE
#define KVM_CREATE_VM 0xAE01
#define KVM_CHECK_EXTENSION 0xAE03
#define KVM_RUN 0xAE80
#define KVM_SET_USER_MEMORY_REGION 0x4020AE46
#define KVM_SET_USER_MEMORY_REGION2 0x40A0AE49
#define KVM_SET_MEMORY_ATTRIBUTES 0x4020AED2
#define KVM_CREATE_GUEST_MEMFD 0xC040AED4
#define KVM_PRE_FAULT_MEMORY 0xC040AED5
/* [PROP] v8, issued on the guest_memfd fd */
#define KVM_SET_MEMORY_ATTRIBUTES2 0xC080AED2

/* §1.2 capabilities (KVM_CHECK_EXTENSION) */
#define KVM_CAP_USER_MEMORY2 231
#define KVM_CAP_MEMORY_FAULT_INFO 232
#define KVM_CAP_MEMORY_ATTRIBUTES 233
#define KVM_CAP_GUEST_MEMFD 234
#define KVM_CAP_VM_TYPES 235
#define KVM_CAP_PRE_FAULT_MEMORY 236
#define KVM_CAP_GUEST_MEMFD_FLAGS 244
/* [PROP] v8; the number moved between revisions (§1.2) */
#define KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES 250

/* §1.3 flags and values */
#define GUEST_MEMFD_FLAG_MMAP 0x1
#define GUEST_MEMFD_FLAG_INIT_SHARED 0x2
#define KVM_MEM_LOG_DIRTY_PAGES 0x1
#define KVM_MEM_READONLY 0x2
#define KVM_MEM_GUEST_MEMFD 0x4
#define KVM_MEMORY_ATTRIBUTE_PRIVATE 0x8
#define KVM_EXIT_MEMORY_FAULT 39
#define KVM_MEMORY_EXIT_FLAG_PRIVATE 0x8
#define KVM_X86_DEFAULT_VM 0
#define KVM_X86_SW_PROTECTED_VM 1
#define KVM_X86_SEV_VM 2
#define KVM_X86_SEV_ES_VM 3
#define KVM_X86_SNP_VM 4
#define KVM_X86_TDX_VM 5

/* statfs f_type values (<linux/magic.h> names, prefixed) */
#define GMEMFS_GUEST_MEMFD_MAGIC 0x474d454d
#define GMEMFS_ANON_INODE_FS_MAGIC 0x09041934
#define GMEMFS_FUSE_SUPER_MAGIC 0x65735546

/* §2.1: 64 bytes, in-only; the new fd is the ioctl return value */
struct kvm_create_guest_memfd {
	uint64_t size;
	uint64_t flags;
	uint64_t reserved[6];
};

/* KVM_SET_USER_MEMORY_REGION (v1): 32 bytes */
struct kvm_userspace_memory_region {
	uint32_t slot;
	uint32_t flags;
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
};

/* §2.2: 160 bytes, in-only */
struct kvm_userspace_memory_region2 {
	uint32_t slot;
	uint32_t flags;
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t guest_memfd_offset;
	uint32_t guest_memfd;
	uint32_t pad1;
	uint64_t pad2[14];
};

/* §2.3: 32 bytes, in-only (VM ioctl) */
struct kvm_memory_attributes {
	uint64_t address;
	uint64_t size;
	uint64_t attributes;
	uint64_t flags;
};

/* §2.4: kvm_run.memory_fault (an anonymous struct in the kernel), at
 * byte GMEMFS_KVM_RUN_EXIT_OFFSET of struct kvm_run */
#define GMEMFS_KVM_RUN_EXIT_OFFSET 32
struct gmemfs_kvm_memory_fault {
	uint64_t flags;
	uint64_t gpa;
	uint64_t size;
};

/* §2.5 [PROP] v8: 128 bytes, in/out, guest_memfd ioctl */
struct kvm_memory_attributes2 {
	union {
		uint64_t address;
		uint64_t offset;
	};
	uint64_t size;
	uint64_t attributes;
	uint64_t flags;
	uint64_t error_offset;
	uint64_t reserved[11];
};

/* ====================================================================== */
/* fallocate(2) modes (guest_memfd.md §4.3).  Prefixed: <fcntl.h> and     */
/* <linux/falloc.h> define the unprefixed names (WRITE_ZEROES only in     */
/* recent headers).                                                       */
/* ====================================================================== */

#define GMEMFS_FALLOC_FL_KEEP_SIZE 0x01
#define GMEMFS_FALLOC_FL_PUNCH_HOLE 0x02
#define GMEMFS_FALLOC_FL_NO_HIDE_STALE 0x04
#define GMEMFS_FALLOC_FL_COLLAPSE_RANGE 0x08
#define GMEMFS_FALLOC_FL_ZERO_RANGE 0x10
#define GMEMFS_FALLOC_FL_INSERT_RANGE 0x20
#define GMEMFS_FALLOC_FL_UNSHARE_RANGE 0x40
#define GMEMFS_FALLOC_FL_WRITE_ZEROES 0x80

/* ====================================================================== */
/* gmemfs extensions                                                      */
/*                                                                        */
/* gmemfs-specific ops (not part of any kernel ABI) go here, using the    */
/* same rules as above.  Name them GMEMFS_* / struct gmemfs_*, pick       */
/* command numbers that no kernel ABI above uses, and add expectations to */
/* tests/test_abi.py (the test fails on any struct or constant it does    */
/* not know).                                                             */
/* ====================================================================== */

/* ---------------------------------------------------------------------- */
/* gmemfs extension: emulated device DMA (owner: iommufd_emu/dma.py)      */
/*                                                                        */
/* Extra IOMMU_TEST_CMD ops, numbered from 0x1000 (above every kernel     */
/* selftest op id).  The command is still IOMMU_TEST_CMD (0x3ba0) with    */
/* the 72-byte iommu_test_cmd; struct gmemfs_test_dma is the same buffer  */
/* seen with this op's union member spelled out (offsets are absolute).   */
/*                                                                        */
/* GMEMFS_TEST_OP_DMA: mock device `id` (an idev ID from MOCK_DOMAIN)     */
/* reads (flags 0) or writes (GMEMFS_DMA_WRITE) `length` bytes at `iova`  */
/* through the page table it is attached to (its PASID table when `pasid` */
/* is non-zero).  Read: the bytes go to the caller buffer `uptr`; write:  */
/* they come from `uptr`.  DMA reaches the real backing memory (process   */
/* memory, memfd, guest_memfd).  A write sets dirty bits when dirty       */
/* tracking is enabled on the HWPT.                                       */
/* Result: ioctl returns 0 and out_fault_reason = NONE when everything    */
/* was transferred; it returns 1 (a positive value, not an error) when    */
/* the device faulted: out_fault_dev_id/out_fault_iova/out_fault_reason   */
/* describe the first faulting access; bytes before out_fault_iova were   */
/* transferred.  Errors: id not a device -> ENOENT; flags other than      */
/* WRITE -> EOPNOTSUPP; length 0 or > 64 MiB -> EINVAL; iova + length     */
/* overflows -> EOVERFLOW; uptr unreadable/unwritable -> EFAULT.          */
/* ---------------------------------------------------------------------- */

#define GMEMFS_TEST_OP_DMA 0x1000
#define GMEMFS_DMA_WRITE 0x1
#define GMEMFS_DMA_MAX_LENGTH 0x4000000
#define GMEMFS_DMA_FAULT_NONE 0
#define GMEMFS_DMA_FAULT_UNMAPPED 1	/* no translation: hole, outside the aperture, no HWPT */
#define GMEMFS_DMA_FAULT_PERM 2		/* area not READABLE / WRITEABLE */
#define GMEMFS_DMA_FAULT_REVOKED 3	/* area revoked (guest_memfd punch) */
#define GMEMFS_DMA_FAULT_DENIED 4	/* refused by the platform/invalidation policy */
#define GMEMFS_DMA_FAULT_BACKING 5	/* backing unreachable (process gone, past EOF) */

struct gmemfs_test_dma {
	uint32_t size;			/* sizeof(struct iommu_test_cmd) */
	uint32_t op;			/* GMEMFS_TEST_OP_DMA */
	uint32_t id;			/* mock device (idev) ID */
	uint32_t __reserved;
	uint32_t flags;			/* 16: GMEMFS_DMA_WRITE */
	uint32_t pasid;			/* 20: 0 = the device's main table */
	uint64_t iova;			/* 24 */
	uint64_t length;		/* 32 */
	uint64_t uptr;			/* 40: caller buffer */
	uint64_t out_fault_iova;	/* 48 */
	uint32_t out_fault_reason;	/* 56: GMEMFS_DMA_FAULT_* */
	uint32_t out_fault_dev_id;	/* 60 */
	uint32_t last;			/* 64 */
	uint32_t out_events;		/* 68: events this access raised (MNT/.state/events) */
};

/* ---------------------------------------------------------------------- */
/* gmemfs extension: guest_memfd <-> iommufd invalidation policies and     */
/* confidential-computing platform models (owner: iommufd_emu/policy.py)  */
/*                                                                        */
/* GMEMFS_DMA_PRIVATE: the transaction is a trusted (T=1, TDISP) access.  */
/* On snp the page state must be private for it and shared otherwise; on  */
/* tdx and cca the IOVA half decides instead and the flag is ignored.     */
/* Platform outcomes of a DMA (out_fault_reason):                         */
/*   RMP        snp: page state / IOPTE size does not match the RMP       */
/*   GPT        cca: the granule protection table refused the access      */
/*   SEPT       tdx: a private IOPTE reached a shared page (contained)    */
/*   MACHINE_CHECK tdx: a shared IOPTE reached a private page: the host   */
/*              is dead; every later call on any gmemfs fd gets EIO       */
/*   INVALIDATED the policy removed this IOPTE (invalidate, mirror)       */
/*                                                                        */
/* IOMMU_OPTION with option_id GMEMFS_OPTION_GMEM_POLICY (a number the    */
/* kernel does not use), object_id = IOAS id, val64 = GMEMFS_GMEM_POLICY_* */
/* reads or sets that IOAS's policy (default: the mount's policy=).       */
/* SET while the IOAS maps a guest_memfd -> EBUSY.                         */
/* ---------------------------------------------------------------------- */

#define GMEMFS_DMA_PRIVATE 0x2
#define GMEMFS_DMA_FAULT_RMP 6
#define GMEMFS_DMA_FAULT_GPT 7
#define GMEMFS_DMA_FAULT_SEPT 8
#define GMEMFS_DMA_FAULT_MACHINE_CHECK 9
#define GMEMFS_DMA_FAULT_INVALIDATED 10

#define GMEMFS_OPTION_GMEM_POLICY 0x1000
#define GMEMFS_GMEM_POLICY_NONE 0
#define GMEMFS_GMEM_POLICY_REVOKE 1
#define GMEMFS_GMEM_POLICY_INVALIDATE 2
#define GMEMFS_GMEM_POLICY_MIRROR 3
#define GMEMFS_GMEM_POLICY_PIN 4

/* ====================================================================== */
/* VFIO device cdev ABI (<linux/vfio.h>, Linux 7.2) served on              */
/* MNT/vfio/devices/vfioN (owner: iommufd_emu/vfio.py)                      */
/* _IO(';', 100 + n): FUSE hands the server the raw pointer.              */
/* ====================================================================== */

#define VFIO_DEVICE_GET_INFO 0x3b6b
#define VFIO_DEVICE_GET_REGION_INFO 0x3b6c
#define VFIO_DEVICE_GET_IRQ_INFO 0x3b6d
#define VFIO_DEVICE_SET_IRQS 0x3b6e
#define VFIO_DEVICE_RESET 0x3b6f
#define VFIO_DEVICE_GET_PCI_HOT_RESET_INFO 0x3b70
#define VFIO_DEVICE_PCI_HOT_RESET 0x3b71
#define VFIO_DEVICE_IOEVENTFD 0x3b74
#define VFIO_DEVICE_FEATURE 0x3b75
#define VFIO_DEVICE_BIND_IOMMUFD 0x3b76
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT 0x3b77
#define VFIO_DEVICE_DETACH_IOMMUFD_PT 0x3b78

#define VFIO_DEVICE_FLAGS_RESET 0x1
#define VFIO_DEVICE_FLAGS_PCI 0x2
#define VFIO_DEVICE_FLAGS_CAPS 0x80

struct vfio_device_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t num_regions;
	uint32_t num_irqs;
	uint32_t cap_offset;
	uint32_t pad;
};

#define VFIO_REGION_INFO_FLAG_READ 0x1
#define VFIO_REGION_INFO_FLAG_WRITE 0x2
#define VFIO_REGION_INFO_FLAG_MMAP 0x4
#define VFIO_REGION_INFO_FLAG_CAPS 0x8

struct vfio_region_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t cap_offset;
	uint64_t size;
	uint64_t offset;
};

#define VFIO_IRQ_INFO_EVENTFD 0x1
#define VFIO_IRQ_INFO_MASKABLE 0x2
#define VFIO_IRQ_INFO_AUTOMASKED 0x4
#define VFIO_IRQ_INFO_NORESIZE 0x8

struct vfio_irq_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t count;
};

#define VFIO_IRQ_SET_DATA_NONE 0x1
#define VFIO_IRQ_SET_DATA_BOOL 0x2
#define VFIO_IRQ_SET_DATA_EVENTFD 0x4
#define VFIO_IRQ_SET_ACTION_MASK 0x8
#define VFIO_IRQ_SET_ACTION_UNMASK 0x10
#define VFIO_IRQ_SET_ACTION_TRIGGER 0x20
#define VFIO_IRQ_SET_DATA_TYPE_MASK 0x7
#define VFIO_IRQ_SET_ACTION_TYPE_MASK 0x38

/* followed by count bools (uint8_t) or eventfds (int32_t) */
struct vfio_irq_set {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t start;
	uint32_t count;
};

/* vfio-pci region and IRQ indices; a region's file offset is index << 40 */
#define VFIO_PCI_BAR0_REGION_INDEX 0
#define VFIO_PCI_ROM_REGION_INDEX 6
#define VFIO_PCI_CONFIG_REGION_INDEX 7
#define VFIO_PCI_VGA_REGION_INDEX 8
#define VFIO_PCI_NUM_REGIONS 9
#define VFIO_PCI_OFFSET_SHIFT 40
#define VFIO_PCI_INTX_IRQ_INDEX 0
#define VFIO_PCI_MSI_IRQ_INDEX 1
#define VFIO_PCI_MSIX_IRQ_INDEX 2
#define VFIO_PCI_ERR_IRQ_INDEX 3
#define VFIO_PCI_REQ_IRQ_INDEX 4
#define VFIO_PCI_NUM_IRQS 5

struct vfio_pci_hot_reset_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t count;
};

struct vfio_pci_hot_reset {
	uint32_t argsz;
	uint32_t flags;
	uint32_t count;
};

#define VFIO_DEVICE_IOEVENTFD_8 0x1
#define VFIO_DEVICE_IOEVENTFD_16 0x2
#define VFIO_DEVICE_IOEVENTFD_32 0x4
#define VFIO_DEVICE_IOEVENTFD_64 0x8
#define VFIO_DEVICE_IOEVENTFD_SIZE_MASK 0xf

struct vfio_device_ioeventfd {
	uint32_t argsz;
	uint32_t flags;
	uint64_t offset;	/* device fd offset of the write */
	uint64_t data;
	int32_t fd;		/* -1: remove */
	uint32_t reserved;
};

#define VFIO_DEVICE_FEATURE_MASK 0xffff
#define VFIO_DEVICE_FEATURE_GET 0x10000
#define VFIO_DEVICE_FEATURE_SET 0x20000
#define VFIO_DEVICE_FEATURE_PROBE 0x40000
#define VFIO_DEVICE_FEATURE_MIGRATION 1
#define VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE 2
#define VFIO_DEVICE_FEATURE_DMA_LOGGING_START 6
#define VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP 7
#define VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT 8
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9

/* followed by feature data */
struct vfio_device_feature {
	uint32_t argsz;
	uint32_t flags;
};

#define VFIO_DEVICE_BIND_FLAG_TOKEN 0x1

struct vfio_device_bind_iommufd {
	uint32_t argsz;
	uint32_t flags;
	int32_t iommufd;
	uint32_t out_devid;
	uint64_t token_uuid_ptr;	/* with VFIO_DEVICE_BIND_FLAG_TOKEN */
};

#define VFIO_DEVICE_ATTACH_PASID 0x1
#define VFIO_DEVICE_DETACH_PASID 0x1

struct vfio_device_attach_iommufd_pt {
	uint32_t argsz;
	uint32_t flags;
	uint32_t pt_id;
	uint32_t pasid;
};

struct vfio_device_detach_iommufd_pt {
	uint32_t argsz;
	uint32_t flags;
	uint32_t pasid;
};

/* gmemfs: the emulated PCI device behind MNT/vfio/devices/vfioN is QEMU's edu
 * (docs/specs/edu.rst): PCI 1234:11e8 rev 0x10, BAR0 1 MiB of MMIO. */
#define GMEMFS_EDU_VENDOR_ID 0x1234
#define GMEMFS_EDU_DEVICE_ID 0x11e8
#define GMEMFS_EDU_BAR0_SIZE 0x100000
#define GMEMFS_EDU_DMA_BUF 0x40000
#define GMEMFS_EDU_DMA_SIZE 4096
/* ---------------------------------------------------------------------- */
/* gmemfs extension: `gmemfs exec` (owner: gmemfs/exec.py, the server's   */
/* exec call in gmemfs/fs.py)                                             */
/*                                                                        */
/* The supervisor of `gmemfs exec` intercepts (seccomp user notification) */
/* the ioctls whose kernel form returns a new fd, takes the target's fd   */
/* with pidfd_getfd and issues GMEMFS_EXEC_CALL on that copy: the server  */
/* runs the ioctl for thread `tid` (its memory, its fds, its credentials) */
/* exactly as the kernel would, and answers:                              */
/*   PASS  - not an fd-returning operation of this node: let the kernel   */
/*           run the ioctl as it is (SECCOMP_USER_NOTIF_FLAG_CONTINUE);   */
/*   DONE  - the ioctl is finished: it returns `value`, or fails with     */
/*           `error` (a positive errno);                                  */
/*   NEWFD - it succeeded and created an object whose file the supervisor */
/*           opens as MNT/.exec/<token> (O_RDWR) and installs in the      */
/*           target (SECCOMP_IOCTL_NOTIF_ADDFD, `newfd_flags`); the fd    */
/*           number goes to the caller's u32 at `fd_addr` (when not 0)    */
/*           and the ioctl returns it (NEWFD_RETURN) or `value`.          */
/* The server only acts for a requester that may read and write the       */
/* target's memory (root, or the target's own uid) and only while `tid`   */
/* is stopped in ioctl(fd, cmd, arg) with exactly these arguments.        */
/* ---------------------------------------------------------------------- */

#define GMEMFS_EXEC_CALL 0xC0584701
#define GMEMFS_EXEC_PASS 0
#define GMEMFS_EXEC_DONE 1
#define GMEMFS_EXEC_NEWFD 2
#define GMEMFS_EXEC_NEWFD_RETURN 0x1
#define GMEMFS_EXEC_TOKEN_LEN 32

struct gmemfs_exec_call {
	uint32_t size;			/* sizeof(struct gmemfs_exec_call) */
	uint32_t tid;			/* in: the thread stopped in the ioctl */
	uint32_t fd;			/* in: its first argument */
	uint32_t cmd;			/* in: its command */
	uint64_t arg;			/* in: its argument */
	uint32_t status;		/* out: GMEMFS_EXEC_PASS / DONE / NEWFD */
	uint32_t flags;			/* out: GMEMFS_EXEC_NEWFD_RETURN */
	uint64_t value;			/* out: the ioctl's return value */
	int32_t error;			/* out: DONE: positive errno, 0 = success */
	uint32_t newfd_flags;		/* out: NEWFD: O_CLOEXEC or 0 */
	uint64_t fd_addr;		/* out: NEWFD: caller address of the fd (u32), or 0 */
	uint8_t token[32];		/* out: NEWFD: NUL-terminated name under MNT/.exec/ */
};

/* mmap() of an iommufd fd (a driver's region, e.g. the selftest vIOMMU's  */
/* pages) never reaches a FUSE server. The supervisor intercepts shared    */
/* file mmaps of MNT/iommu fds and issues GMEMFS_EXEC_MMAP on its copy of  */
/* the fd: the server checks the mapping by the kernel's rules for thread  */
/* `tid`, stopped in exactly mmap(addr, length, prot, flags, fd, offset),  */
/* and answers `error` 0 (let the kernel map the file; its pages are the   */
/* region's, the mapping holds the region's owner) or a positive errno.    */
#define GMEMFS_EXEC_MMAP 0xC0304702

struct gmemfs_exec_mmap {
	uint32_t size;			/* sizeof(struct gmemfs_exec_mmap) */
	uint32_t tid;			/* in: the thread stopped in mmap() */
	uint64_t addr;			/* in: mmap()'s arguments */
	uint64_t length;
	uint32_t prot;
	uint32_t flags;
	uint32_t fd;
	int32_t error;			/* out: 0 or a positive errno */
	uint64_t offset;		/* in */
};
