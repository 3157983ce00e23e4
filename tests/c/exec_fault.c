/*
 * exec_fault.c - an unmodified program using iommufd fault queues the way
 * the kernel selftest and a VMM do, run under `gmemfs exec` by
 * tests/test_exec_families.py. Prints "name value" lines.
 *
 * IOMMU_FAULT_QUEUE_ALLOC -> fault id + fd; a nested HWPT with
 * IOMMU_HWPT_FAULT_ID_VALID; the mock device attached to it; TRIGGER_IOPF;
 * poll(); read() of struct iommu_hwpt_pgfault; write() of struct
 * iommu_hwpt_page_response; the kernel's errno for bad input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

static int fd;

#define CHECK(name, expr)                                                  \
	do {                                                               \
		int _r = (expr);                                           \
		printf("%s %s\n", name, _r < 0 ? strerrorname_np(errno) : "0"); \
	} while (0)

static int test_cmd(struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

static int hwpt_alloc(__u32 dev, __u32 pt, __u32 flags, __u32 fault_id, int nested, __u32 *out)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_hwpt_alloc c = {
		.size = sizeof(c), .flags = flags, .dev_id = dev, .pt_id = pt, .fault_id = fault_id,
	};
	if (nested) {
		c.data_type = IOMMU_HWPT_DATA_SELFTEST;
		c.data_len = sizeof(data);
		c.data_uptr = (uintptr_t)&data;
	}
	int r = ioctl(fd, IOMMU_HWPT_ALLOC, &c);
	*out = c.out_hwpt_id;
	return r;
}

static int replace(__u32 stdev, __u32 pt)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev,
				    .mock_domain_replace = { .pt_id = pt } };
	return test_cmd(&c);
}

static int trigger(__u32 dev, __u32 pasid)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_TRIGGER_IOPF,
				    .trigger_iopf = { .dev_id = dev, .pasid = pasid, .grpid = 2,
						      .perm = IOMMU_PGFAULT_PERM_READ |
							      IOMMU_PGFAULT_PERM_WRITE,
						      .addr = 0xdeadbeaf } };
	return test_cmd(&c);
}

int main(void)
{
	fd = open("/dev/iommu", O_RDWR);
	struct iommu_ioas_alloc ia = { .size = sizeof(ia) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &ia);
	struct iommu_test_cmd md = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ia.out_ioas_id };
	test_cmd(&md);
	__u32 stdev = md.mock_domain.out_stdev_id, dev = md.mock_domain.out_idev_id;

	/* bad input first */
	struct iommu_fault_alloc fa = { .size = sizeof(fa), .flags = 1 };
	CHECK("alloc_flags", ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa));
	fa.flags = 0;
	fa.size = 15;
	CHECK("alloc_short", ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa));
	CHECK("alloc_efault", ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, (void *)8));
	fa.size = sizeof(fa);
	CHECK("alloc", ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa));
	int ffd = (int)fa.out_fault_fd;
	printf("fault_id %u\n", fa.out_fault_id);
	printf("fault_fd_cloexec %d\n", !!(fcntl(ffd, F_GETFD) & FD_CLOEXEC));
	printf("fault_fd_flags %#x\n", fcntl(ffd, F_GETFL) & O_ACCMODE);

	__u32 parent, iopf_hwpt, tmp;
	hwpt_alloc(dev, ia.out_ioas_id, IOMMU_HWPT_ALLOC_NEST_PARENT, 0, 0, &parent);
	CHECK("hwpt_nest_parent_fault",
	      hwpt_alloc(dev, ia.out_ioas_id,
			 IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_FAULT_ID_VALID, 0, 0, &tmp));
	CHECK("hwpt_bad_fault_id",
	      hwpt_alloc(dev, parent, IOMMU_HWPT_FAULT_ID_VALID, UINT32_MAX, 1, &tmp));
	CHECK("hwpt_iopf", hwpt_alloc(dev, parent, IOMMU_HWPT_FAULT_ID_VALID, fa.out_fault_id, 1,
				      &iopf_hwpt));
	CHECK("replace", replace(stdev, iopf_hwpt));
	struct iommu_destroy d = { .size = sizeof(d), .id = iopf_hwpt };
	CHECK("destroy_busy_hwpt", ioctl(fd, IOMMU_DESTROY, &d));

	struct pollfd p = { .fd = ffd, .events = POLLIN | POLLOUT };
	poll(&p, 1, 0);
	printf("poll_empty %#x\n", p.revents);
	char buf[128];
	printf("read_empty %zd\n", read(ffd, buf, 40));

	CHECK("trigger", trigger(dev, 1));
	p.revents = 0;
	poll(&p, 1, 5000);
	printf("poll_ready %#x\n", p.revents);
	CHECK("read_39", (int)read(ffd, buf, 39));
	CHECK("pread_0", (int)pread(ffd, buf, 40, 0));
	struct iommu_hwpt_pgfault f;
	ssize_t n = read(ffd, &f, sizeof(f));
	printf("read %zd flags %#x dev %d pasid %u grpid %u perm %#x addr %#llx length %u "
	       "cookie %u\n", n, f.flags, f.dev_id == dev, f.pasid, f.grpid, f.perm,
	       (unsigned long long)f.addr, f.length, f.cookie);
	struct iommu_hwpt_page_response resp[2] = {
		{ .cookie = f.cookie, .code = 5 },
		{ .cookie = f.cookie, .code = IOMMUFD_PAGE_RESP_SUCCESS },
	};
	CHECK("write_7", (int)write(ffd, resp, 7));
	CHECK("write_bad_code", (int)write(ffd, resp, 8));
	printf("write_ok %zd\n", write(ffd, &resp[1], 8));
	CHECK("write_cookie_gone", (int)write(ffd, &resp[1], 8));

	/* a pending request is answered INVALID when the device leaves the HWPT */
	trigger(dev, 1);
	replace(stdev, parent);
	printf("read_after_detach %zd\n", read(ffd, buf, 40));

	/* the fd and the HWPT hold the FAULT object */
	d.id = fa.out_fault_id;
	CHECK("destroy_fault_busy", ioctl(fd, IOMMU_DESTROY, &d));
	close(ffd);
	CHECK("destroy_fault_hwpt_holds", ioctl(fd, IOMMU_DESTROY, &d));
	d.id = iopf_hwpt;
	ioctl(fd, IOMMU_DESTROY, &d);
	d.id = fa.out_fault_id;
	CHECK("destroy_fault", ioctl(fd, IOMMU_DESTROY, &d));

	/* the fault fd keeps the context alive after the iommufd fd is closed */
	fa.size = sizeof(fa);
	ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fa);
	ffd = (int)fa.out_fault_fd;
	close(fd);
	printf("read_after_iommufd_close %zd\n", read(ffd, buf, 40));
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", ffd);
	CHECK("reopen", open(link, O_RDWR));
	close(ffd);
	return 0;
}
