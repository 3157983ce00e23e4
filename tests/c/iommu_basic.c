/*
 * iommu_basic: the foundation's end-to-end checks from C, on real fds.
 *
 *   iommu_basic MNT
 *
 * Prints one line per check: "<name> <result>" where result is "ok" or an
 * errno name, plus "id <n>" lines for returned ids. The pytest side
 * (tests/test_foundation_e2e.py) holds the expectations, each naming its
 * kernel rule (iommufd.md §2.2 dispatch, §4.1 DESTROY, §4.2 IOAS_ALLOC).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

static const char *res(int rc)
{
	static char buf[32];
	if (rc >= 0)
		return "ok";
	switch (errno) {
	case EINVAL: return "EINVAL";
	case ENOENT: return "ENOENT";
	case E2BIG: return "E2BIG";
	case ENOTTY: return "ENOTTY";
	case EFAULT: return "EFAULT";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EBUSY: return "EBUSY";
	}
	snprintf(buf, sizeof(buf), "errno%d", errno);
	return buf;
}

int main(int argc, char **argv)
{
	char path[4096];
	if (argc < 2) {
		fprintf(stderr, "usage: %s MNT\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/iommu", argv[1]);
	int fd = open(path, O_RDWR);
	if (fd < 0) {
		perror("open");
		return 1;
	}

	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	int rc = ioctl(fd, IOMMU_IOAS_ALLOC, &alloc);
	printf("alloc %s\n", res(rc));
	printf("id %u\n", alloc.out_ioas_id);

	struct iommu_destroy d = { .size = sizeof(d), .id = alloc.out_ioas_id };
	printf("destroy %s\n", res(ioctl(fd, IOMMU_DESTROY, &d)));
	printf("destroy_again %s\n", res(ioctl(fd, IOMMU_DESTROY, &d)));

	/* size smaller than the last mandatory field */
	struct iommu_ioas_alloc small = { .size = 4 };
	printf("size4 %s\n", res(ioctl(fd, IOMMU_IOAS_ALLOC, &small)));

	/* a larger struct: zero tail accepted, non-zero tail E2BIG */
	unsigned char big[64];
	memset(big, 0, sizeof(big));
	*(uint32_t *)big = sizeof(big);
	printf("big_zero_tail %s\n", res(ioctl(fd, IOMMU_IOAS_ALLOC, big)));
	printf("id %u\n", *(uint32_t *)(big + 8));
	memset(big, 0, sizeof(big));
	*(uint32_t *)big = sizeof(big);
	big[40] = 1;
	printf("big_nonzero_tail %s\n", res(ioctl(fd, IOMMU_IOAS_ALLOC, big)));

	/* unknown ';' commands: inside the table range, and past it */
	uint32_t sz = 8;
	printf("unknown_0x95 %s\n", res(ioctl(fd, _IO(';', 0x95), &sz)));
	printf("unknown_0xff %s\n", res(ioctl(fd, _IO(';', 0xff), &sz)));
	/* a size-encoded variant of a known command is a different command */
	printf("sized_destroy %s\n", res(ioctl(fd, _IOW(';', 0x80, struct iommu_destroy), &d)));

	/* a pointer into unmapped memory */
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(p, 4096);
	printf("unmapped_ptr %s\n", res(ioctl(fd, IOMMU_IOAS_ALLOC, p)));
	/* readable but not writable: the response copy-back faults */
	struct iommu_ioas_alloc *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
					   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro->size = sizeof(*ro);
	mprotect(ro, 4096, PROT_READ);
	printf("readonly_ptr %s\n", res(ioctl(fd, IOMMU_IOAS_ALLOC, ro)));

	/* flags must be zero */
	struct iommu_ioas_alloc bad = { .size = sizeof(bad), .flags = 1 };
	printf("alloc_flags %s\n", res(ioctl(fd, IOMMU_IOAS_ALLOC, &bad)));

	close(fd);
	return 0;
}
