/*
 * exec_viommu.c - an unmodified program using a vIOMMU's fd-returning and
 * mmap families the way the kernel selftest and a VMM do, run under
 * `gmemfs exec` by tests/test_exec_families.py. Prints "name value" lines.
 *
 *   exec_viommu            the vEVENTQ and the vIOMMU's mmap region
 *   exec_viommu plain      only the mmap of the region, then a touch of it
 *                          (on a plain mount nothing checks the mmap: SIGBUS)
 *
 * vEVENTQ: IOMMU_VEVENTQ_ALLOC -> id + fd; a vDEVICE (virtual ID 0x99); the
 * device on a nested HWPT of the vIOMMU; TRIGGER_VEVENT; poll(); read() of
 * struct iommufd_vevent_header + struct iommu_viommu_event_selftest; the
 * lost-events header when the queue overflows. mmap of the region the
 * selftest vIOMMU returns (out_mmap_offset/length): ENXIO unless exactly
 * the region, EINVAL not shared, EPERM executable; the loopback word; EBUSY
 * to destroy the vIOMMU while mapped, 0 once unmapped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

static int fd;

#define SHOW(name, r) printf("%s %s\n", name, (r) < 0 ? strerrorname_np(errno) : "0")

static int test_cmd(struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

static int destroy(__u32 id)
{
	struct iommu_destroy d = { .size = sizeof(d), .id = id };
	return ioctl(fd, IOMMU_DESTROY, &d);
}

static const char *map_err(size_t len, off_t off, int prot, int flags)
{
	void *p = mmap(NULL, len, prot, flags, fd, off);
	if (p != MAP_FAILED) {
		munmap(p, len);
		return "mapped";
	}
	return strerrorname_np(errno);
}

static int veventq_alloc(__u32 viommu, __u32 type, __u32 depth, __u32 *id, __u32 *qfd)
{
	struct iommu_veventq_alloc c = { .size = sizeof(c), .viommu_id = viommu, .type = type,
					 .veventq_depth = depth };
	int r = ioctl(fd, IOMMU_VEVENTQ_ALLOC, &c);
	*id = c.out_veventq_id;
	*qfd = c.out_veventq_fd;
	return r;
}

static void trigger(__u32 dev, int n)
{
	for (int i = 0; i < n; i++) {
		struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_TRIGGER_VEVENT,
					    .trigger_vevent = { .dev_id = dev } };
		if (test_cmd(&c))
			printf("trigger_%d %s\n", i, strerrorname_np(errno));
	}
}

/* one line: "N bytes: flags/seq[/virt_id] ..." */
static void read_events(const char *name, int qfd, size_t count)
{
	char buf[256];
	ssize_t n = read(qfd, buf, count);
	printf("%s", name);
	if (n < 0) {
		printf(" %s\n", strerrorname_np(errno));
		return;
	}
	printf(" %zd", n);
	for (ssize_t pos = 0; pos + 8 <= n;) {
		struct iommufd_vevent_header h;
		memcpy(&h, buf + pos, 8);
		pos += 8;
		printf(" %#x/%u", h.flags, h.sequence);
		if (!(h.flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) && pos + 4 <= n) {
			struct iommu_viommu_event_selftest e;
			memcpy(&e, buf + pos, 4);
			pos += 4;
			printf("/%#x", e.virt_id);
		}
	}
	printf("\n");
}

int main(int argc, char **argv)
{
	int plain = argc > 1 && !strcmp(argv[1], "plain");
	fd = open(plain && argc > 2 ? argv[2] : "/dev/iommu", O_RDWR);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	struct iommu_ioas_alloc ia = { .size = sizeof(ia) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &ia);
	struct iommu_test_cmd md = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ia.out_ioas_id };
	test_cmd(&md);
	__u32 stdev = md.mock_domain.out_stdev_id, dev = md.mock_domain.out_idev_id;
	struct iommu_hwpt_alloc pa = { .size = sizeof(pa), .flags = IOMMU_HWPT_ALLOC_NEST_PARENT,
				       .dev_id = dev, .pt_id = ia.out_ioas_id };
	SHOW("parent", ioctl(fd, IOMMU_HWPT_ALLOC, &pa));
	struct iommu_viommu_selftest data = { .in_data = 0xbeef };
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST,
					 .dev_id = dev, .hwpt_id = pa.out_hwpt_id,
					 .data_len = sizeof(data), .data_uptr = (uintptr_t)&data };
	SHOW("viommu", ioctl(fd, IOMMU_VIOMMU_ALLOC, &va));
	__u32 viommu = va.out_viommu_id;
	size_t len = data.out_mmap_length;
	off_t off = data.out_mmap_offset;
	printf("out_data %#x length %zu offset_aligned %d\n", data.out_data, len,
	       off > 0 && off % 4096 == 0);

	if (plain) {
		volatile __u32 *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, off);
		printf("plain_mmap %s\n", p == MAP_FAILED ? strerrorname_np(errno) : "0");
		fflush(stdout);
		if (p != MAP_FAILED)
			printf("plain_word %#x\n", p[0]);       /* SIGBUS: nobody checked it */
		return 0;
	}

	/* ---- vEVENTQ */
	__u32 qid, qfd;
	SHOW("veventq_depth0", veventq_alloc(viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 0, &qid, &qfd));
	SHOW("veventq_default_type", veventq_alloc(viommu, 0, 2, &qid, &qfd));
	SHOW("veventq_no_viommu", veventq_alloc(pa.out_hwpt_id, IOMMU_VEVENTQ_TYPE_SELFTEST, 2,
						&qid, &qfd));
	SHOW("veventq", veventq_alloc(viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2, &qid, &qfd));
	printf("veventq_fd_cloexec %d\n", !!(fcntl(qfd, F_GETFD) & FD_CLOEXEC));
	__u32 qid2, qfd2;
	SHOW("veventq_again", veventq_alloc(viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2, &qid2, &qfd2));
	struct iommu_vdevice_alloc vd = { .size = sizeof(vd), .viommu_id = viommu, .dev_id = dev,
					  .virt_id = 0x99 };
	SHOW("vdevice", ioctl(fd, IOMMU_VDEVICE_ALLOC, &vd));
	struct iommu_hwpt_selftest hs = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_hwpt_alloc na = { .size = sizeof(na), .dev_id = dev, .pt_id = viommu,
				       .data_type = IOMMU_HWPT_DATA_SELFTEST, .data_len = sizeof(hs),
				       .data_uptr = (uintptr_t)&hs };
	SHOW("nested", ioctl(fd, IOMMU_HWPT_ALLOC, &na));
	struct iommu_test_cmd rp = { .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev,
				     .mock_domain_replace = { .pt_id = na.out_hwpt_id } };
	SHOW("replace", test_cmd(&rp));
	struct pollfd pf = { .fd = (int)qfd, .events = POLLIN };
	printf("poll_empty %d\n", poll(&pf, 1, 0));
	read_events("read_empty", qfd, 64);
	trigger(dev, 1);
	pf.revents = 0;
	int np = poll(&pf, 1, 1000);
	printf("poll_ready %d %#x\n", np, pf.revents);
	read_events("read_short", qfd, 11);              /* a whole entry only */
	read_events("read_one", qfd, 64);
	trigger(dev, 3);                                 /* depth 2: one is lost */
	read_events("read_overflow", qfd, 256);
	trigger(dev, 1);
	read_events("read_after", qfd, 256);
	SHOW("destroy_viommu_queue_holds", destroy(viommu));

	/* ---- mmap of a vIOMMU's region (main.c): a second vIOMMU, held by nothing else */
	struct iommu_viommu_selftest d2 = { .in_data = 0xcafe };
	va.data_uptr = (uintptr_t)&d2;
	SHOW("viommu2", ioctl(fd, IOMMU_VIOMMU_ALLOC, &va));
	__u32 v2 = va.out_viommu_id;
	len = d2.out_mmap_length;
	off = d2.out_mmap_offset;
	printf("mmap_past_start %s\n", map_err(len, off + 4096, PROT_READ, MAP_SHARED));
	printf("mmap_past_end %s\n", map_err(len, off + 2 * 4096, PROT_READ, MAP_SHARED));
	printf("mmap_half %s\n", map_err(len / 2, off, PROT_READ, MAP_SHARED));
	printf("mmap_double %s\n", map_err(len * 2, off, PROT_READ, MAP_SHARED));
	printf("mmap_offset0 %s\n", map_err(len, 0, PROT_READ, MAP_SHARED));
	printf("mmap_private %s\n", map_err(len, off, PROT_READ, MAP_PRIVATE));
	printf("mmap_exec %s\n", map_err(len, off, PROT_READ | PROT_EXEC, MAP_SHARED));
	printf("mmap_validate %s\n", map_err(len, off, PROT_READ, MAP_SHARED_VALIDATE));
	volatile __u32 *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	printf("mmap %s\n", p == MAP_FAILED ? strerrorname_np(errno) : "0");
	if (p == MAP_FAILED)
		return 1;
	printf("word %#x second_page %#x\n", p[0], p[1024]);
	p[1] = 0x1234;                                   /* the region's memory, shared */
	printf("word1 %#x\n", p[1]);
	SHOW("destroy_viommu2_mapped", destroy(v2));
	munmap((void *)p, len);
	SHOW("destroy_viommu2_unmapped", destroy(v2));

	/* a shared mapping of another file is the kernel's, untouched */
	int mfd = memfd_create("x", 0);
	ftruncate(mfd, 4096);
	char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	strcpy(m, "memfd");
	char back[8] = { 0 };
	pread(mfd, back, 5, 0);
	printf("memfd_map %s\n", back);

	/* everything that holds the vIOMMU goes; then it goes */
	close((int)qfd);
	SHOW("destroy_veventq", destroy(qid));
	rp.mock_domain_replace.pt_id = ia.out_ioas_id;
	test_cmd(&rp);
	SHOW("destroy_nested", destroy(na.out_hwpt_id));
	SHOW("destroy_vdevice", destroy(vd.out_vdevice_id));
	SHOW("destroy_viommu", destroy(viommu));
	return 0;
}
