/*
 * qemu_like MNT: the iommufd sequence QEMU runs for a passthrough device
 * (hw/vfio/iommufd.c + backends/iommufd.c), on gmemfs, with a selftest mock
 * device in place of VFIO bind + attach, and guest RAM from a memfd and from
 * a guest_memfd.
 *
 * Each step prints "step <name> <result> [details]"; the program exits 0 only
 * if every step gave the result QEMU expects. tests/test_qemu_like.py runs it;
 * `./run demo` shows it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

static int failures;

static void step(const char *name, int ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#include <stdarg.h>
static void step(const char *name, int ok, const char *fmt, ...)
{
	va_list ap;
	printf("step %-26s %s ", name, ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		failures++;
}

static int test_cmd(int fd, struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

/* device DMA through the gmemfs extension op; returns ioctl result */
static int dma(int fd, uint32_t idev, uint64_t iova, void *buf, uint64_t len, int write,
	       struct gmemfs_test_dma *out)
{
	struct gmemfs_test_dma d;
	memset(&d, 0, sizeof(d));
	d.size = sizeof(struct iommu_test_cmd);
	d.op = GMEMFS_TEST_OP_DMA;
	d.id = idev;
	d.flags = write ? GMEMFS_DMA_WRITE : 0;
	d.iova = iova;
	d.length = len;
	d.uptr = (uintptr_t)buf;
	int rc = ioctl(fd, IOMMU_TEST_CMD, &d);
	if (out)
		*out = d;
	return rc;
}

int main(int argc, char **argv)
{
	char path[4096];
	if (argc < 2) {
		fprintf(stderr, "usage: %s MNT\n", argv[0]);
		return 2;
	}
	const char *mnt = argv[1];
	snprintf(path, sizeof(path), "%s/iommu", mnt);

	/* 1. open the iommu node (QEMU: iommufd_backend_connect) */
	int fd = open(path, O_RDWR);
	step("open_iommufd", fd >= 0, "%s fd=%d", path, fd);
	if (fd < 0)
		return 1;

	/* 2. IOAS_ALLOC (iommufd_backend_alloc_ioas) */
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	int rc = ioctl(fd, IOMMU_IOAS_ALLOC, &alloc);
	uint32_t ioas = alloc.out_ioas_id;
	step("ioas_alloc", rc == 0 && ioas >= 1, "ioas=%u", ioas);

	/* 3. a mock device bound and attached (stands for VFIO cdev bind + attach) */
	struct iommu_test_cmd md;
	memset(&md, 0, sizeof(md));
	md.op = IOMMU_TEST_OP_MOCK_DOMAIN;
	md.id = ioas;
	rc = test_cmd(fd, &md);
	uint32_t stdev = md.mock_domain.out_stdev_id, idev = md.mock_domain.out_idev_id;
	uint32_t auto_hwpt = md.mock_domain.out_hwpt_id;
	step("mock_device_attach", rc == 0, "stdev=%u hwpt=%u idev=%u", stdev, auto_hwpt, idev);

	/* 4. GET_HW_INFO (iommufd_backend_get_device_info) */
	uint64_t hwinfo[4] = { 0 };
	struct iommu_hw_info hi = { .size = sizeof(hi), .dev_id = idev, .data_len = sizeof(hwinfo),
				    .data_uptr = (uintptr_t)hwinfo };
	rc = ioctl(fd, IOMMU_GET_HW_INFO, &hi);
	step("get_hw_info", rc == 0 && hi.out_data_type == IOMMU_HW_INFO_TYPE_SELFTEST &&
	     (hi.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING),
	     "type=%#x caps=%#" PRIx64 " test_reg=%#x", hi.out_data_type, (uint64_t)hi.out_capabilities,
	     ((uint32_t *)hwinfo)[1]);

	/* 5. HWPT_ALLOC with dirty tracking, attach the device to it
	 *    (iommufd_cdev_autodomains_get + iommufd_cdev_attach_ioas_hwpt) */
	struct iommu_hwpt_alloc ha = { .size = sizeof(ha), .flags = IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
				       .dev_id = idev, .pt_id = ioas };
	rc = ioctl(fd, IOMMU_HWPT_ALLOC, &ha);
	uint32_t hwpt = ha.out_hwpt_id;
	step("hwpt_alloc_dirty", rc == 0, "hwpt=%u", hwpt);
	memset(&md, 0, sizeof(md));
	md.op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
	md.id = stdev;
	md.mock_domain_replace.pt_id = hwpt;
	rc = test_cmd(fd, &md);
	step("attach_device_to_hwpt", rc == 0 && md.mock_domain_replace.pt_id == hwpt, "pt=%u",
	     md.mock_domain_replace.pt_id);
	struct iommu_destroy dd = { .size = sizeof(dd), .id = auto_hwpt };
	rc = ioctl(fd, IOMMU_DESTROY, &dd);
	step("auto_hwpt_gone", rc < 0 && errno == ENOENT,
	     "the automatic domain went with its last device (%s)", strerror(errno));

	/* 6. IOVA_RANGES twice: EMSGSIZE tells the count (iommufd_backend_get_ioas_ranges) */
	struct iommu_ioas_iova_ranges rr = { .size = sizeof(rr), .ioas_id = ioas };
	rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &rr);
	step("iova_ranges_probe", rc < 0 && errno == EMSGSIZE && rr.num_iovas >= 1,
	     "num_iovas=%u", rr.num_iovas);
	struct iommu_iova_range ranges[8];
	rr.allowed_iovas = (uintptr_t)ranges;
	if (rr.num_iovas > 8)
		rr.num_iovas = 8;
	rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &rr);
	step("iova_ranges", rc == 0 && ranges[0].start == MOCK_APERTURE_START &&
	     ranges[0].last == MOCK_APERTURE_LAST,
	     "[%#" PRIx64 ", %#" PRIx64 "] alignment=%" PRIu64, (uint64_t)ranges[0].start,
	     (uint64_t)ranges[0].last, (uint64_t)rr.out_iova_alignment);

	/* 7. guest RAM in a memfd, MAP_FILE at a fixed IOVA (QEMU maps RAM blocks by fd) */
	const size_t ram = 2 << 20;
	const uint64_t ram_iova = 0x10000000;
	int memfd = memfd_create("guest-ram", 0);
	if (memfd < 0 || ftruncate(memfd, ram))
		return 1;
	char *ram_map = mmap(NULL, ram, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	struct iommu_ioas_map_file mf = {
		.size = sizeof(mf), .ioas_id = ioas, .fd = memfd, .start = 0, .length = ram,
		.iova = ram_iova,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
	};
	rc = ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf);
	step("map_file_memfd", rc == 0 && mf.iova == ram_iova, "iova=%#" PRIx64 " len=%zu",
	     (uint64_t)mf.iova, ram);

	/* 8. dirty tracking on (vfio_iommufd_set_dirty_page_tracking) */
	struct iommu_hwpt_set_dirty_tracking sd = { .size = sizeof(sd), .flags =
		IOMMU_HWPT_DIRTY_TRACKING_ENABLE, .hwpt_id = hwpt };
	rc = ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &sd);
	step("dirty_tracking_on", rc == 0, "hwpt=%u", hwpt);

	/* 9. the device writes into guest RAM; the VMM sees it in its own mapping */
	char msg[] = "written by the device";
	struct gmemfs_test_dma res;
	rc = dma(fd, idev, ram_iova + 0x3000, msg, sizeof(msg), 1, &res);
	step("dma_write_memfd", rc == 0 && memcmp(ram_map + 0x3000, msg, sizeof(msg)) == 0,
	     "guest RAM at +0x3000: \"%.21s\"", ram_map + 0x3000);
	strcpy(ram_map + 0x5000, "written by the vmm");
	char back[32] = { 0 };
	rc = dma(fd, idev, ram_iova + 0x5000, back, 19, 0, &res);
	step("dma_read_memfd", rc == 0 && strcmp(back, "written by the vmm") == 0,
	     "device read \"%s\"", back);

	/* 10. GET_DIRTY_BITMAP shows the page the device wrote (vfio_iommufd_query_dirty_bitmap) */
	uint64_t bitmap[8] = { 0 };
	struct iommu_hwpt_get_dirty_bitmap gb = { .size = sizeof(gb), .hwpt_id = hwpt,
		.iova = ram_iova, .length = ram, .page_size = 4096, .data = (uintptr_t)bitmap };
	rc = ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &gb);
	step("dirty_bitmap", rc == 0 && bitmap[0] == (1ull << 3), "bitmap[0]=%#" PRIx64,
	     bitmap[0]);

	/* 11. guest_memfd as guest memory: MAP_FILE by identity; what the VMM
	 *     writes through its mapping is what the device reads, and back */
	snprintf(path, sizeof(path), "%s/gmem/guest0", mnt);
	int gfd = open(path, O_CREAT | O_RDWR, 0600);
	struct kvm_create_guest_memfd cg = { .size = ram,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED };
	rc = gfd < 0 ? -1 : ioctl(gfd, KVM_CREATE_GUEST_MEMFD, &cg);
	step("guest_memfd_create", rc == 0, "%s size=%zu flags=MMAP|INIT_SHARED", path, ram);
	char *gmap = mmap(NULL, ram, PROT_READ | PROT_WRITE, MAP_SHARED, gfd, 0);
	const uint64_t gmem_iova = 0x20000000;
	struct iommu_ioas_map_file gm = {
		.size = sizeof(gm), .ioas_id = ioas, .fd = gfd, .start = 0, .length = ram,
		.iova = gmem_iova,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
	};
	rc = ioctl(fd, IOMMU_IOAS_MAP_FILE, &gm);
	step("map_file_guest_memfd", rc == 0, "iova=%#" PRIx64, (uint64_t)gm.iova);
	strcpy(gmap + 0x1000, "vmm wrote this, no msync");
	memset(back, 0, sizeof(back));
	rc = dma(fd, idev, gmem_iova + 0x1000, back, 25, 0, &res);
	step("dma_read_guest_memfd", rc == 0 && strcmp(back, "vmm wrote this, no msync") == 0,
	     "device read \"%s\"", back);
	char msg2[] = "device wrote this";
	rc = dma(fd, idev, gmem_iova + 0x2000, msg2, sizeof(msg2), 1, &res);
	step("dma_write_guest_memfd", rc == 0 && strcmp(gmap + 0x2000, msg2) == 0,
	     "vmm reads \"%s\"", gmap + 0x2000);

	/* 12. UNMAP, then a redundant UNMAP gives ENOENT (vfio_container_dma_unmap) */
	struct iommu_ioas_unmap um = { .size = sizeof(um), .ioas_id = ioas, .iova = ram_iova,
				       .length = ram };
	rc = ioctl(fd, IOMMU_IOAS_UNMAP, &um);
	step("unmap", rc == 0 && um.length == ram, "unmapped %" PRIu64 " bytes",
	     (uint64_t)um.length);
	um.length = ram;
	rc = ioctl(fd, IOMMU_IOAS_UNMAP, &um);
	step("unmap_again_ENOENT", rc < 0 && errno == ENOENT, "%s", strerror(errno));

	/* 13. DMA to the unmapped IOVA is a fault record, not an error */
	rc = dma(fd, idev, ram_iova, back, 16, 0, &res);
	step("dma_after_unmap_faults", rc == 1 && res.out_fault_reason == GMEMFS_DMA_FAULT_UNMAPPED &&
	     res.out_fault_iova == ram_iova && res.out_fault_dev_id == idev,
	     "fault dev=%u iova=%#" PRIx64 " reason=%u", res.out_fault_dev_id,
	     (uint64_t)res.out_fault_iova, res.out_fault_reason);

	/* 14. teardown in order: device, hwpt, ioas */
	um.iova = 0;
	um.length = ~0ull;
	rc = ioctl(fd, IOMMU_IOAS_UNMAP, &um);
	step("unmap_all", rc == 0 && um.length == ram, "%" PRIu64 " bytes", (uint64_t)um.length);
	struct iommu_destroy d = { .size = sizeof(d), .id = ioas };
	rc = ioctl(fd, IOMMU_DESTROY, &d);
	step("destroy_ioas_busy", rc < 0 && errno == EBUSY, "%s (the hwpt still uses it)",
	     strerror(errno));
	d.id = stdev;
	int r1 = ioctl(fd, IOMMU_DESTROY, &d);
	d.id = hwpt;
	int r2 = ioctl(fd, IOMMU_DESTROY, &d);
	d.id = ioas;
	int r3 = ioctl(fd, IOMMU_DESTROY, &d);
	step("destroy_in_order", r1 == 0 && r2 == 0 && r3 == 0, "device, hwpt, ioas");
	munmap(gmap, ram);
	munmap(ram_map, ram);
	close(gfd);
	close(memfd);
	close(fd);
	unlink(path);
	printf("%s: %d step(s) failed\n", failures ? "FAILED" : "PASSED", failures);
	return failures ? 1 : 0;
}
