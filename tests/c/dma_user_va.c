/*
 * dma_user_va MNT: IOMMU_IOAS_MAP by user address (iommufd.md §4.6) and
 * device DMA into the caller's own memory, from a real process.
 *
 * The server cannot pin another process's pages: it reaches them with
 * process_vm_readv/writev. Prints "name result" lines.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

static int dma(int fd, uint32_t idev, uint64_t iova, void *buf, uint64_t len, int write,
	       struct gmemfs_test_dma *d)
{
	memset(d, 0, sizeof(*d));
	d->size = sizeof(struct iommu_test_cmd);
	d->op = GMEMFS_TEST_OP_DMA;
	d->id = idev;
	d->flags = write ? GMEMFS_DMA_WRITE : 0;
	d->iova = iova;
	d->length = len;
	d->uptr = (uintptr_t)buf;
	return ioctl(fd, IOMMU_TEST_CMD, d);
}

int main(int argc, char **argv)
{
	char path[4096];
	if (argc < 2)
		return 2;
	snprintf(path, sizeof(path), "%s/iommu", argv[1]);
	int fd = open(path, O_RDWR);
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &a);
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN,
				     .id = a.out_ioas_id };
	if (ioctl(fd, IOMMU_TEST_CMD, &md)) {
		perror("mock domain");
		return 1;
	}
	uint32_t idev = md.mock_domain.out_idev_id;

	size_t len = 64 << 10;
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	strcpy(mem + 100, "process memory");
	struct iommu_ioas_map m = { .size = sizeof(m), .ioas_id = a.out_ioas_id,
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.user_va = (uintptr_t)mem, .length = len };
	int rc = ioctl(fd, IOMMU_IOAS_MAP, &m);
	printf("map_user_va %s\n", rc ? strerror(errno) : "ok");
	printf("auto_iova_in_aperture %s\n",
	       m.iova >= MOCK_APERTURE_START && m.iova + len - 1 <= MOCK_APERTURE_LAST ? "ok" : "bad");

	char buf[32] = { 0 };
	struct gmemfs_test_dma d;
	rc = dma(fd, idev, m.iova + 100, buf, 15, 0, &d);
	printf("dma_read %s\n", rc == 0 && strcmp(buf, "process memory") == 0 ? "ok" : "bad");
	rc = dma(fd, idev, m.iova + 4096, "device data", 12, 1, &d);
	printf("dma_write %s\n", rc == 0 && strcmp(mem + 4096, "device data") == 0 ? "ok" : "bad");

	/* read-only mapping: the device may read, not write */
	struct iommu_ioas_map ro = m;
	ro.flags = IOMMU_IOAS_MAP_READABLE;
	ro.iova = 0;
	ro.user_va = (uintptr_t)mem;
	ro.length = 8192;
	rc = ioctl(fd, IOMMU_IOAS_MAP, &ro);
	rc = rc ? -1 : dma(fd, idev, ro.iova, "x", 1, 1, &d);
	printf("dma_write_readonly_area %s\n",
	       rc == 1 && d.out_fault_reason == GMEMFS_DMA_FAULT_PERM ? "fault_perm" : "bad");

	/* with a domain attached, MAP pins now: read-only memory mapped
	   WRITEABLE, and unmapped memory, are EFAULT (spec §4.6 step 9) */
	char *rop = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iommu_ioas_map pm = { .size = sizeof(pm), .ioas_id = a.out_ioas_id,
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.user_va = (uintptr_t)rop, .length = 8192 };
	rc = ioctl(fd, IOMMU_IOAS_MAP, &pm);
	printf("map_readonly_writeable %s\n", rc ? (errno == EFAULT ? "EFAULT" : strerror(errno)) : "ok");
	pm.flags = IOMMU_IOAS_MAP_READABLE;
	rc = ioctl(fd, IOMMU_IOAS_MAP, &pm);
	printf("map_readonly_readable %s\n", rc ? strerror(errno) : "ok");
	munmap(rop, 8192);
	pm.iova = 0;
	rc = ioctl(fd, IOMMU_IOAS_MAP, &pm);
	printf("map_unmapped %s\n", rc ? (errno == EFAULT ? "EFAULT" : strerror(errno)) : "ok");

	/* the process unmaps its memory: the device faults on the backing */
	munmap(mem, len);
	rc = dma(fd, idev, m.iova + 100, buf, 4, 0, &d);
	printf("dma_after_munmap %s\n",
	       rc == 1 && d.out_fault_reason == GMEMFS_DMA_FAULT_BACKING ? "fault_backing" :
	       rc == 0 ? "read" : strerror(errno));

	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = a.out_ioas_id, .iova = m.iova,
				      .length = len };
	rc = ioctl(fd, IOMMU_IOAS_UNMAP, &u);
	printf("unmap %s\n", rc ? strerror(errno) : "ok");
	rc = dma(fd, idev, m.iova + 100, buf, 4, 0, &d);
	printf("dma_after_unmap %s\n",
	       rc == 1 && d.out_fault_reason == GMEMFS_DMA_FAULT_UNMAPPED ? "fault_unmapped" : "bad");
	close(fd);
	return 0;
}
