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
	uint32_t __pad;
};
