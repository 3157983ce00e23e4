/*
 * iommu_conformance: the families of issue 16 from C, on real fds of a real
 * mount: VFIO type1 compatibility on the iommufd fd, vIOMMU / vDEVICE / HW
 * queue, nested HWPTs and PASIDs, MD_CHECK_MAP over a MAP_FILE area, check
 * orders (HWPT_ALLOC, IOMMU_OPTION RLIMIT_MODE).
 *
 *   iommu_conformance MNT
 *
 * Prints "<name> <result>" lines (result "ok", an errno name, or a value).
 * The expectations, each with its kernel rule, are in
 * tests/test_conformance_e2e.py (docs/IOMMUFD_KERNEL_NOTES.md has the rules).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

#define PS 4096UL

static const char *res(long rc)
{
	return rc >= 0 ? "ok" : strerrorname_np(errno);   /* "EINVAL", ... */
}

#define CHECK(name, call) printf("%s %s\n", name, res(call))

static int fd;

static uint32_t ioas_alloc(int f)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (ioctl(f, IOMMU_IOAS_ALLOC, &a))
		return 0;
	return a.out_ioas_id;
}

static int destroy(int f, uint32_t id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };
	return ioctl(f, IOMMU_DESTROY, &d);
}

static int mock_domain(int f, uint32_t ioas, uint32_t dev_flags, uint32_t *stdev,
		       uint32_t *hwpt, uint32_t *idev)
{
	struct iommu_test_cmd c = { .size = sizeof(c), .id = ioas };
	c.op = dev_flags ? IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS : IOMMU_TEST_OP_MOCK_DOMAIN;
	c.mock_domain_flags.dev_flags = dev_flags;
	int rc = ioctl(f, IOMMU_TEST_CMD, &c);
	*stdev = c.mock_domain.out_stdev_id;
	*hwpt = c.mock_domain.out_hwpt_id;
	*idev = c.mock_domain.out_idev_id;
	return rc;
}

static int hwpt_alloc(int f, uint32_t flags, uint32_t dev, uint32_t pt, uint32_t data_type,
		      void *data, uint32_t len, uint32_t fault_id, uint32_t *out)
{
	struct iommu_hwpt_alloc a = {
		.size = sizeof(a), .flags = flags, .dev_id = dev, .pt_id = pt,
		.data_type = data_type, .data_len = len, .data_uptr = (uintptr_t)data,
		.fault_id = fault_id,
	};
	int rc = ioctl(f, IOMMU_HWPT_ALLOC, &a);
	if (out)
		*out = a.out_hwpt_id;
	return rc;
}

static int viommu_alloc(int f, uint32_t size, uint32_t flags, uint32_t type, uint32_t dev,
			uint32_t hwpt, void *data, uint32_t len, uint32_t *out)
{
	struct iommu_viommu_alloc a = {
		.size = size, .flags = flags, .type = type, .dev_id = dev, .hwpt_id = hwpt,
		.data_len = len, .data_uptr = (uintptr_t)data,
	};
	int rc = ioctl(f, IOMMU_VIOMMU_ALLOC, &a);
	if (out)
		*out = a.out_viommu_id;
	return rc;
}

static int vdevice_alloc(int f, uint32_t viommu, uint32_t dev, uint64_t virt, uint32_t *out)
{
	struct iommu_vdevice_alloc a = { .size = sizeof(a), .viommu_id = viommu,
					 .dev_id = dev, .virt_id = virt };
	int rc = ioctl(f, IOMMU_VDEVICE_ALLOC, &a);
	if (out)
		*out = a.out_vdevice_id;
	return rc;
}

static int hw_queue(int f, uint32_t viommu, uint32_t index, uint64_t iova, uint64_t len,
		    uint32_t *out)
{
	struct iommu_hw_queue_alloc a = {
		.size = sizeof(a), .viommu_id = viommu, .type = IOMMU_HW_QUEUE_TYPE_SELFTEST,
		.index = index, .nesting_parent_iova = iova, .length = len,
	};
	int rc = ioctl(f, IOMMU_HW_QUEUE_ALLOC, &a);
	if (out)
		*out = a.out_hw_queue_id;
	return rc;
}

static int ioas_map(int f, uint32_t ioas, void *p, uint64_t len, uint64_t iova)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m), .ioas_id = ioas, .user_va = (uintptr_t)p, .length = len,
		.iova = iova, .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE
				       | IOMMU_IOAS_MAP_WRITEABLE,
	};
	return ioctl(f, IOMMU_IOAS_MAP, &m);
}

static int ioas_unmap(int f, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova,
				      .length = len };
	return ioctl(f, IOMMU_IOAS_UNMAP, &u);
}

static int test_op(int f, uint32_t op, uint32_t id, struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	c->op = op;
	c->id = id;
	return ioctl(f, IOMMU_TEST_CMD, c);
}

/* ---------------------------------------------------------------- VFIO */

static int vfio_map(uint32_t argsz, uint32_t flags, void *va, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_map m = { .argsz = argsz, .flags = flags,
					      .vaddr = (uintptr_t)va, .iova = iova, .size = size };
	return ioctl(fd, VFIO_IOMMU_MAP_DMA, &m);
}

static int vfio_unmap(uint32_t flags, uint64_t iova, uint64_t size, uint64_t *out)
{
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .flags = flags,
						.iova = iova, .size = size };
	int rc = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u);
	if (out)
		*out = u.size;
	return rc;
}

static void vfio_section(void *buf)
{
	const uint64_t iova = MOCK_APERTURE_START;
	uint64_t n = 0;

	printf("vfio_api_version %d\n", ioctl(fd, VFIO_GET_API_VERSION));
	printf("vfio_ext_type1v2 %d\n", ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
	printf("vfio_ext_spapr %d\n", ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU));
	CHECK("vfio_map_short_argsz", vfio_map(16, 0, buf, iova, 2 * PS));
	CHECK("vfio_map_no_ioas", vfio_map(32, VFIO_DMA_MAP_FLAG_READ, buf, iova, 2 * PS));

	struct iommu_vfio_ioas v = { .size = sizeof(v), .op = IOMMU_VFIO_IOAS_GET };
	CHECK("vfio_ioas_get_none", ioctl(fd, IOMMU_VFIO_IOAS, &v));
	v.op = IOMMU_VFIO_IOAS_SET;
	v.ioas_id = ioas_alloc(fd);
	CHECK("vfio_ioas_set", ioctl(fd, IOMMU_VFIO_IOAS, &v));
	CHECK("vfio_set_iommu_type1v2", ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	CHECK("vfio_set_iommu_spapr", ioctl(fd, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU));
	CHECK("vfio_map_unknown_flag", vfio_map(32, 0x80, buf, iova, 2 * PS));
	CHECK("vfio_map", vfio_map(32, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, buf,
				   iova, 2 * PS));
	CHECK("vfio_map_overlap", vfio_map(32, VFIO_DMA_MAP_FLAG_READ, buf, iova + PS, PS));

	unsigned char info[256];
	memset(info, 0xaa, sizeof(info));
	*(uint32_t *)info = 16;
	CHECK("vfio_get_info_16", ioctl(fd, VFIO_IOMMU_GET_INFO, info));
	printf("vfio_info_argsz %u\n", *(uint32_t *)info);
	printf("vfio_info_untouched_after_16 %d\n", info[16] == 0xaa);
	uint32_t full = *(uint32_t *)info;
	memset(info, 0, sizeof(info));
	*(uint32_t *)info = full;
	CHECK("vfio_get_info_full", ioctl(fd, VFIO_IOMMU_GET_INFO, info));
	struct vfio_iommu_type1_info *inf = (void *)info;
	printf("vfio_info_cap_offset %u\n", inf->cap_offset);
	struct vfio_info_cap_header *h = (void *)(info + inf->cap_offset);
	printf("vfio_info_cap0 %u\n", h->id);
	printf("vfio_info_cap1 %u\n", ((struct vfio_info_cap_header *)(info + h->next))->id);

	CHECK("vfio_unmap_straddle", vfio_unmap(0, iova, PS, &n));
	printf("vfio_unmap_straddle_size %lu\n", (unsigned long)n);
	CHECK("vfio_unmap_dirty_flag", vfio_unmap(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, iova,
						  2 * PS, NULL));
	CHECK("vfio_unmap_all_with_iova", vfio_unmap(VFIO_DMA_UNMAP_FLAG_ALL, iova, 0, NULL));
	CHECK("vfio_unmap", vfio_unmap(0, iova, 2 * PS, &n));
	printf("vfio_unmap_size %lu\n", (unsigned long)n);
	CHECK("vfio_unmap_empty", vfio_unmap(0, iova, 2 * PS, &n));
	printf("vfio_unmap_empty_size %lu\n", (unsigned long)n);
	CHECK("vfio_dirty_pages", ioctl(fd, VFIO_IOMMU_DIRTY_PAGES, info));
}

/* ---------------------------------------------------------- vIOMMU etc */

static void viommu_section(void *buf)
{
	uint32_t ioas = ioas_alloc(fd), stdev, hwpt, idev, parent, viommu = 0, vdev = 0;
	uint32_t nested, q0, q1, id;
	struct iommu_viommu_selftest data = { .in_data = 0x1234 };

	mock_domain(fd, ioas, 0, &stdev, &hwpt, &idev);
	CHECK("nest_parent", hwpt_alloc(fd, IOMMU_HWPT_ALLOC_NEST_PARENT, idev, ioas,
					IOMMU_HWPT_DATA_NONE, NULL, 0, 0, &parent));
	CHECK("viommu_short_size", viommu_alloc(fd, 16, 0, IOMMU_VIOMMU_TYPE_SELFTEST, idev,
						parent, NULL, 0, NULL));
	CHECK("viommu_flags", viommu_alloc(fd, sizeof(struct iommu_viommu_alloc), 1,
					   IOMMU_VIOMMU_TYPE_SELFTEST, 999, parent, NULL, 0, NULL));
	CHECK("viommu_type_default", viommu_alloc(fd, sizeof(struct iommu_viommu_alloc), 0,
						  IOMMU_VIOMMU_TYPE_DEFAULT, idev, parent, NULL, 0,
						  NULL));
	CHECK("viommu_unknown_dev", viommu_alloc(fd, sizeof(struct iommu_viommu_alloc), 0,
						 IOMMU_VIOMMU_TYPE_SELFTEST, 999, parent, NULL, 0,
						 NULL));
	CHECK("viommu_unknown_type", viommu_alloc(fd, sizeof(struct iommu_viommu_alloc), 0,
						  0x1234, idev, parent, NULL, 0, NULL));
	CHECK("viommu_hwpt_is_ioas", viommu_alloc(fd, sizeof(struct iommu_viommu_alloc), 0,
						  IOMMU_VIOMMU_TYPE_SELFTEST, idev, ioas, NULL, 0,
						  NULL));
	CHECK("viommu_not_nest_parent", viommu_alloc(fd, sizeof(struct iommu_viommu_alloc), 0,
						     IOMMU_VIOMMU_TYPE_SELFTEST, idev, hwpt, NULL,
						     0, NULL));
	CHECK("viommu_alloc", viommu_alloc(fd, sizeof(struct iommu_viommu_alloc), 0,
					   IOMMU_VIOMMU_TYPE_SELFTEST, idev, parent, &data,
					   sizeof(data), &viommu));
	printf("viommu_out_data %#x\n", data.out_data);
	printf("viommu_mmap_length %lu\n", (unsigned long)data.out_mmap_length);

	CHECK("vdevice_unknown_viommu", vdevice_alloc(fd, 999, idev, 0x99, NULL));
	CHECK("vdevice_viommu_is_ioas", vdevice_alloc(fd, ioas, idev, 0x99, NULL));
	CHECK("vdevice_unknown_dev", vdevice_alloc(fd, viommu, 999, 0x99, NULL));
	CHECK("vdevice_alloc", vdevice_alloc(fd, viommu, idev, 0x99, &vdev));
	CHECK("vdevice_again", vdevice_alloc(fd, viommu, idev, 0x98, NULL));

	struct iommu_hwpt_selftest hd = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	CHECK("nested_on_viommu", hwpt_alloc(fd, 0, idev, viommu, IOMMU_HWPT_DATA_SELFTEST,
					     &hd, sizeof(hd), 0, &nested));
	CHECK("nested_on_viommu_data_too_long",
	      hwpt_alloc(fd, 0, idev, viommu, IOMMU_HWPT_DATA_SELFTEST, buf, 64, 0, NULL));

	struct iommu_viommu_invalidate_selftest inv = { .vdev_id = 0x99, .cache_id = 1 };
	struct iommu_hwpt_invalidate hi = {
		.size = sizeof(hi), .hwpt_id = viommu, .data_uptr = (uintptr_t)&inv,
		.data_type = IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, .entry_len = sizeof(inv),
		.entry_num = 1,
	};
	struct iommu_test_cmd c;
	memset(&c, 0, sizeof(c));
	c.check_dev_cache.id = 1;
	c.check_dev_cache.cache = IOMMU_TEST_DEV_CACHE_DEFAULT;
	CHECK("dev_cache_default", test_op(fd, IOMMU_TEST_OP_DEV_CHECK_CACHE, idev, &c));
	CHECK("viommu_invalidate", ioctl(fd, IOMMU_HWPT_INVALIDATE, &hi));
	printf("viommu_invalidate_done %u\n", hi.entry_num);
	memset(&c, 0, sizeof(c));
	c.check_dev_cache.id = 1;
	CHECK("dev_cache_cleared", test_op(fd, IOMMU_TEST_OP_DEV_CHECK_CACHE, idev, &c));
	inv.vdev_id = 0x42;
	hi.entry_num = 1;
	CHECK("viommu_invalidate_unknown_vdev", ioctl(fd, IOMMU_HWPT_INVALIDATE, &hi));
	printf("viommu_invalidate_unknown_vdev_done %u\n", hi.entry_num);

	/* HW queues on the parent's IOAS */
	const uint64_t qiova = MOCK_APERTURE_START + 0x100000;
	CHECK("hw_queue_unmapped", hw_queue(fd, viommu, 0, qiova, PS, NULL));
	ioas_map(fd, ioas, buf, 2 * PS, qiova);
	CHECK("hw_queue_len0", hw_queue(fd, viommu, 0, qiova, 0, NULL));
	CHECK("hw_queue_overflow", hw_queue(fd, viommu, 0, ~0ULL - 10, PS, NULL));
	CHECK("hw_queue_index_2", hw_queue(fd, viommu, 2, qiova, PS, NULL));
	CHECK("hw_queue_index_1_first", hw_queue(fd, viommu, 1, qiova, PS, NULL));
	CHECK("hw_queue_0", hw_queue(fd, viommu, 0, qiova, PS, &q0));
	CHECK("hw_queue_0_again", hw_queue(fd, viommu, 0, qiova, PS, NULL));
	CHECK("hw_queue_1", hw_queue(fd, viommu, 1, qiova + PS, PS, &q1));
	CHECK("unmap_under_hw_queue", ioas_unmap(fd, ioas, qiova, 2 * PS));
	CHECK("destroy_hw_queue_0_in_use", destroy(fd, q0));

	/* vEVENTQ: the checks before the fd */
	struct iommu_veventq_alloc ev = { .size = sizeof(ev), .viommu_id = viommu,
					  .type = IOMMU_VEVENTQ_TYPE_SELFTEST };
	CHECK("veventq_depth0", ioctl(fd, IOMMU_VEVENTQ_ALLOC, &ev));
	ev.veventq_depth = 4;
	CHECK("veventq_fd", ioctl(fd, IOMMU_VEVENTQ_ALLOC, &ev));

	/* destroy while in use */
	CHECK("destroy_parent_in_use", destroy(fd, parent));
	CHECK("destroy_viommu_in_use", destroy(fd, viommu));

	/* IOMMU_DESTROY of a vDEVICE frees its ID */
	CHECK("destroy_vdevice", destroy(fd, vdev));
	CHECK("destroy_vdevice_again", destroy(fd, vdev));
	id = ioas_alloc(fd);
	printf("destroyed_id_reused %d\n", id == vdev);
	destroy(fd, id);
	CHECK("vdevice_realloc", vdevice_alloc(fd, viommu, idev, 0x99, &vdev));

	CHECK("destroy_hw_queue_1", destroy(fd, q1));
	CHECK("destroy_hw_queue_0", destroy(fd, q0));
	CHECK("unmap_after_hw_queue", ioas_unmap(fd, ioas, qiova, 2 * PS));
	destroy(fd, nested);

	/* unbinding the device (its selftest object) tombstones its vDEVICE:
	   the ID answers ENOENT and stays reserved */
	CHECK("unbind_device_with_vdevice", destroy(fd, stdev));
	CHECK("destroy_tombstone", destroy(fd, vdev));
	id = ioas_alloc(fd);
	printf("tombstone_id_reused %d\n", id == vdev);
}

static void other_context_section(const char *path)
{
	int fd2 = open(path, O_RDWR);
	uint32_t ioas = ioas_alloc(fd), stdev, hwpt, idev, parent;
	mock_domain(fd, ioas, 0, &stdev, &hwpt, &idev);
	hwpt_alloc(fd, IOMMU_HWPT_ALLOC_NEST_PARENT, idev, ioas, IOMMU_HWPT_DATA_NONE, NULL, 0,
		   0, &parent);
	/* a fresh context has none of these ids */
	CHECK("other_ctx_viommu", viommu_alloc(fd2, sizeof(struct iommu_viommu_alloc), 0,
					       IOMMU_VIOMMU_TYPE_SELFTEST, idev, parent, NULL,
					       0, NULL));
	CHECK("other_ctx_vdevice", vdevice_alloc(fd2, 1, idev, 1, NULL));
	CHECK("other_ctx_hwpt", hwpt_alloc(fd2, 0, idev, ioas, IOMMU_HWPT_DATA_NONE, NULL, 0, 0,
					   NULL));
	close(fd2);
}

/* -------------------------------------------------------------- PASID */

static void pasid_section(void)
{
	uint32_t ioas = ioas_alloc(fd), stdev, hwpt, idev, hp, hn;
	struct iommu_test_cmd c;

	CHECK("pasid_device", mock_domain(fd, ioas, MOCK_FLAGS_DEVICE_PASID, &stdev, &hwpt,
					  &idev));
	CHECK("pasid_hwpt", hwpt_alloc(fd, IOMMU_HWPT_ALLOC_PASID, idev, ioas,
				       IOMMU_HWPT_DATA_NONE, NULL, 0, 0, &hp));
	hwpt_alloc(fd, 0, idev, ioas, IOMMU_HWPT_DATA_NONE, NULL, 0, 0, &hn);
	memset(&c, 0, sizeof(c));
	c.pasid_attach.pasid = 100;
	c.pasid_attach.pt_id = hn;
	CHECK("pasid_attach_non_pasid_hwpt", test_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, &c));
	c.pasid_attach.pt_id = hp;
	CHECK("pasid_attach_rid_not_compat", test_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, &c));
	memset(&c, 0, sizeof(c));
	c.mock_domain_replace.pt_id = hp;
	CHECK("rid_replace_pasid_hwpt", test_op(fd, IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, &c));
	memset(&c, 0, sizeof(c));
	c.pasid_attach.pasid = 100;
	c.pasid_attach.pt_id = hp;
	CHECK("pasid_attach", test_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, &c));
	memset(&c, 0, sizeof(c));
	c.pasid_check.pasid = 100;
	c.pasid_check.hwpt_id = hp;
	CHECK("pasid_check_hwpt", test_op(fd, IOMMU_TEST_OP_PASID_CHECK_HWPT, stdev, &c));
	memset(&c, 0, sizeof(c));
	c.mock_domain_replace.pt_id = hn;
	CHECK("rid_replace_non_pasid_hwpt", test_op(fd, IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev,
						    &c));
	memset(&c, 0, sizeof(c));
	c.pasid_detach.pasid = 100;
	CHECK("pasid_detach", test_op(fd, IOMMU_TEST_OP_PASID_DETACH, stdev, &c));
	memset(&c, 0, sizeof(c));
	c.pasid_check.pasid = 100;
	CHECK("pasid_check_detached", test_op(fd, IOMMU_TEST_OP_PASID_CHECK_HWPT, stdev, &c));

	/* HWPT_ALLOC order: NEST_PARENT|FAULT_ID_VALID before the fault lookup;
	   FAULT_ID_VALID alone: the (unknown) fault after the allocation */
	CHECK("hwpt_nest_parent_fault", hwpt_alloc(fd, IOMMU_HWPT_ALLOC_NEST_PARENT |
						   IOMMU_HWPT_FAULT_ID_VALID, idev, ioas,
						   IOMMU_HWPT_DATA_NONE, NULL, 0, 999, NULL));
	CHECK("hwpt_unknown_fault", hwpt_alloc(fd, IOMMU_HWPT_FAULT_ID_VALID, idev, ioas,
					       IOMMU_HWPT_DATA_NONE, NULL, 0, 999, NULL));
	CHECK("hwpt_unknown_flag", hwpt_alloc(fd, 1u << 30, idev, ioas, IOMMU_HWPT_DATA_NONE,
					      NULL, 0, 0, NULL));
	CHECK("hwpt_pt_is_device", hwpt_alloc(fd, 0, idev, idev, IOMMU_HWPT_DATA_NONE, NULL, 0,
					      0, NULL));
}

/* ------------------------------------------------ MD_CHECK_MAP (file) */

static void check_map_section(void)
{
	uint32_t ioas = ioas_alloc(fd), stdev, hwpt, idev;
	const uint64_t iova = MOCK_APERTURE_START;
	int m1 = memfd_create("conf1", 0), m2 = memfd_create("conf2", 0);
	ftruncate(m1, 8 * PS);
	ftruncate(m2, 8 * PS);
	mock_domain(fd, ioas, 0, &stdev, &hwpt, &idev);
	struct iommu_ioas_map_file mf = {
		.size = sizeof(mf), .ioas_id = ioas, .fd = m1, .start = 2 * PS,
		.length = 4 * PS, .iova = iova,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
	};
	CHECK("map_file", ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf));
	char *p1 = mmap(NULL, 8 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, m1, 0);
	char *p2 = mmap(NULL, 8 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, m2, 0);
	struct iommu_test_cmd c;
	memset(&c, 0, sizeof(c));
	c.check_map.iova = iova;
	c.check_map.length = 4 * PS;
	c.check_map.uptr = (uintptr_t)(p1 + 2 * PS);
	CHECK("check_map_same_file_offset", test_op(fd, IOMMU_TEST_OP_MD_CHECK_MAP, hwpt, &c));
	c.check_map.uptr = (uintptr_t)p1;
	CHECK("check_map_other_offset", test_op(fd, IOMMU_TEST_OP_MD_CHECK_MAP, hwpt, &c));
	c.check_map.uptr = (uintptr_t)(p2 + 2 * PS);
	CHECK("check_map_other_file", test_op(fd, IOMMU_TEST_OP_MD_CHECK_MAP, hwpt, &c));
	munmap(p2, 8 * PS);
	CHECK("check_map_unmapped_uptr", test_op(fd, IOMMU_TEST_OP_MD_CHECK_MAP, hwpt, &c));
	c.check_map.uptr = (uintptr_t)(p1 + 2 * PS);
	c.check_map.iova = iova + 4 * PS;
	CHECK("check_map_iova_not_mapped", test_op(fd, IOMMU_TEST_OP_MD_CHECK_MAP, hwpt, &c));
	c.check_map.iova = iova;
	CHECK("check_map_on_ioas_id", test_op(fd, IOMMU_TEST_OP_MD_CHECK_MAP, ioas, &c));
	munmap(p1, 8 * PS);
	close(m1);
	close(m2);
}

/* ------------------------------------------------------- RLIMIT_MODE */

static int rlimit_set(int f, uint64_t val)
{
	struct iommu_option o = { .size = sizeof(o), .option_id = IOMMU_OPTION_RLIMIT_MODE,
				  .op = IOMMU_OPTION_OP_SET, .val64 = val };
	return ioctl(f, IOMMU_OPTION, &o);
}

static void rlimit_section(const char *path)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	syscall(SYS_capget, &hdr, data);
	int have = !!(data[0].effective & (1u << CAP_SYS_RESOURCE));
	printf("cap_sys_resource %d\n", have);
	int f = open(path, O_RDWR);
	CHECK("rlimit_set_with_cap_state", rlimit_set(f, 0));
	if (have) {
		data[0].effective &= ~(1u << CAP_SYS_RESOURCE);
		syscall(SYS_capset, &hdr, data);
	}
	CHECK("rlimit_set_bad_value_no_cap", rlimit_set(f, 7));
	CHECK("rlimit_set_no_cap", rlimit_set(f, 1));
	close(f);
}

int main(int argc, char **argv)
{
	char path[4096];
	if (argc < 2) {
		fprintf(stderr, "usage: %s MNT\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/iommu", argv[1]);
	fd = open(path, O_RDWR);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	void *buf = mmap(NULL, 64 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	memset(buf, 0, 64 * PS);
	vfio_section(buf);
	viommu_section(buf);
	other_context_section(path);
	pasid_section();
	check_map_section();
	rlimit_section(path);
	close(fd);
	return 0;
}
