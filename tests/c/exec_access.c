/*
 * exec_access.c - selftest access objects from an unmodified program under
 * `gmemfs exec` (tests/test_exec_families.py). Prints "name value" lines.
 *
 * CREATE_ACCESS -> access fd; ACCESS_PAGES / DESTROY_ACCESS_PAGES with the
 * pin counts (MD_CHECK_REFS); the unmap notification; ACCESS_RW over
 * unaligned spans with and without MOCK_ACCESS_RW_SLOW_PATH; ACCESS_REPLACE_IOAS;
 * the fork rules: a mapping made by a child that exits (pinned while a
 * domain exists: still readable through the access) and by a child that is
 * alive; the access dies with its fd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

#define PS 4096
#define BUFSZ (16 * PS)
#define AP MOCK_APERTURE_START

static int fd;
static unsigned char *buffer;

#define SHOW(name, expr)                                                   \
	do {                                                               \
		long _r = (expr);                                          \
		if (_r < 0)                                                \
			printf("%s %s\n", name, strerrorname_np(errno));  \
		else                                                       \
			printf("%s %ld\n", name, _r);                      \
	} while (0)

static int test_cmd(struct iommu_test_cmd *c)
{
	c->size = sizeof(*c);
	return ioctl(fd, IOMMU_TEST_CMD, c);
}

static __u32 ioas_alloc(void)
{
	struct iommu_ioas_alloc c = { .size = sizeof(c) };
	ioctl(fd, IOMMU_IOAS_ALLOC, &c);
	return c.out_ioas_id;
}

static int map_fixed(__u32 ioas, void *p, size_t len, __u64 iova)
{
	struct iommu_ioas_map c = { .size = sizeof(c), .ioas_id = ioas, .user_va = (uintptr_t)p,
				    .length = len, .iova = iova,
				    .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
					     IOMMU_IOAS_MAP_WRITEABLE };
	return ioctl(fd, IOMMU_IOAS_MAP, &c);
}

static int unmap(__u32 ioas, __u64 iova, __u64 len)
{
	struct iommu_ioas_unmap c = { .size = sizeof(c), .ioas_id = ioas, .iova = iova,
				      .length = len };
	return ioctl(fd, IOMMU_IOAS_UNMAP, &c);
}

static int create_access(__u32 ioas, __u32 flags)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas,
				    .create_access = { .flags = flags } };
	if (test_cmd(&c))
		return -1;
	return (int)c.create_access.out_access_fd;
}

static int access_pages(int afd, __u64 iova, __u64 len, void *uptr, __u32 *item)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_ACCESS_PAGES, .id = (__u32)afd,
				    .access_pages = { .iova = iova, .length = len,
						      .uptr = (uintptr_t)uptr } };
	int r = test_cmd(&c);
	*item = c.access_pages.out_access_pages_id;
	return r;
}

static int destroy_pages(int afd, __u32 item)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, .id = (__u32)afd,
				    .destroy_access_pages = { .access_pages_id = item } };
	return test_cmd(&c);
}

static int access_rw(int afd, __u64 iova, void *p, __u64 len, __u32 flags)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_ACCESS_RW, .id = (__u32)afd,
				    .access_rw = { .iova = iova, .length = len,
						   .uptr = (uintptr_t)p, .flags = flags } };
	return test_cmd(&c);
}

static int check_refs(void *p, size_t len, unsigned refs)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_MD_CHECK_REFS,
				    .check_refs = { .length = len, .uptr = (uintptr_t)p,
						    .refs = refs } };
	return test_cmd(&c);
}

static int mock_domain(__u32 ioas, __u32 *stdev)
{
	struct iommu_test_cmd c = { .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas };
	int r = test_cmd(&c);
	*stdev = c.mock_domain.out_stdev_id;
	return r;
}

/* the selftest's check_access_rw (narrower: it sweeps +-50 bytes and
   lengths up to 63): byte spans around a page boundary */
static int rw_sweep(int afd, __u64 iova, __u32 flags)
{
	unsigned char tmp[32];
	for (unsigned i = 0; i < BUFSZ; i++)
		buffer[i] = (unsigned char)rand();
	for (__u64 at = iova + PS - 12; at < iova + PS + 12; at++) {
		for (unsigned len = 1; len < sizeof(tmp); len++) {
			if (access_rw(afd, at, tmp, len, flags))
				return -1;
			if (memcmp(buffer + (at - iova), tmp, len))
				return -2;
			for (unsigned i = 0; i < sizeof(tmp); i++)
				tmp[i] = (unsigned char)rand();
			if (access_rw(afd, at, tmp, len, flags | MOCK_ACCESS_RW_WRITE))
				return -1;
			if (memcmp(buffer + (at - iova), tmp, len))
				return -3;
		}
	}
	void *all = malloc(BUFSZ);
	if (access_rw(afd, iova, all, BUFSZ, flags) || memcmp(buffer, all, BUFSZ))
		return -4;
	free(all);
	return 0;
}

int main(void)
{
	buffer = mmap(NULL, BUFSZ, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(buffer, 0, BUFSZ);
	fd = open("/dev/iommu", O_RDWR);
	__u32 ioas = ioas_alloc(), item, item2, stdev;

	/* creation */
	SHOW("create_bad_flags", create_access(ioas, 2));
	SHOW("create_no_ioas", create_access(999, 0));
	int afd = create_access(ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
	printf("access_fd_cloexec %d\n", !!(fcntl(afd, F_GETFD) & FD_CLOEXEC));
	unsigned char junk[8];
	SHOW("access_fd_read", read(afd, junk, 8));
	SHOW("access_fd_ioctl", ioctl(afd, IOMMU_DESTROY, junk));
	struct iommu_destroy d = { .size = sizeof(d), .id = ioas };
	SHOW("destroy_ioas_busy", ioctl(fd, IOMMU_DESTROY, &d));
	printf("next_ioas %u\n", ioas_alloc());     /* the access took the ID before it */

	/* pins */
	map_fixed(ioas, buffer, BUFSZ, AP);
	SHOW("pages", access_pages(afd, AP, 2 * PS, buffer, &item));
	printf("item %u\n", item);
	SHOW("refs_1", check_refs(buffer, 2 * PS, 1));
	SHOW("refs_0", check_refs(buffer + 2 * PS, PS, 0));
	SHOW("pages_bad_uptr", access_pages(afd, AP, PS, buffer + PS, &item2));
	SHOW("pages_unaligned", access_pages(afd, AP + 0x800, PS, NULL, &item2));
	SHOW("pages_hole", access_pages(afd, AP + BUFSZ - PS, 2 * PS, NULL, &item2));
	SHOW("pages_bad_fd", access_pages(0, AP, PS, NULL, &item2));
	SHOW("pages_item2", access_pages(afd, AP, PS, NULL, &item2));
	printf("item2 %u\n", item2);
	SHOW("destroy_pages", destroy_pages(afd, item2));
	SHOW("destroy_pages_again", destroy_pages(afd, item2));
	/* the unmap tells the access, which drops its item */
	SHOW("unmap", unmap(ioas, AP, BUFSZ));
	SHOW("refs_after_unmap", check_refs(buffer, 2 * PS, 0));
	SHOW("destroy_pages_after_unmap", destroy_pages(afd, item));

	/* ACCESS_RW, unaligned, fast and slow path, the IOVA not page aligned */
	int rwfd = create_access(ioas, 0);
	map_fixed(ioas, buffer, BUFSZ, AP);
	SHOW("rw_sweep", rw_sweep(rwfd, AP, 0));
	SHOW("rw_sweep_slow", rw_sweep(rwfd, AP, MOCK_ACCESS_RW_SLOW_PATH));
	unmap(ioas, AP, BUFSZ);
	close(afd);        /* NEEDS_PIN_PAGES access: the IOAS alignment goes back to 1 */
	SHOW("map_unaligned_iova", map_fixed(ioas, buffer, BUFSZ, AP + MOCK_PAGE_SIZE));
	SHOW("rw_sweep_unaligned", rw_sweep(rwfd, AP + MOCK_PAGE_SIZE, 0));
	unmap(ioas, AP + MOCK_PAGE_SIZE, BUFSZ);
	SHOW("rw_hole", access_rw(rwfd, AP, junk, 8, 0));
	SHOW("rw_len0", access_rw(rwfd, AP, junk, 0, 0));

	/* replace the IOAS */
	__u32 ioas2 = ioas_alloc();
	map_fixed(ioas2, buffer, BUFSZ, AP);
	struct iommu_test_cmd rep = { .op = IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, .id = (__u32)rwfd,
				      .access_replace_ioas = { .ioas_id = ioas2 } };
	SHOW("replace", test_cmd(&rep));
	d.id = ioas;
	SHOW("destroy_old_ioas", ioctl(fd, IOMMU_DESTROY, &d));
	buffer[5] = 0x5a;
	junk[0] = 0;
	access_rw(rwfd, AP + 5, junk, 1, 0);
	printf("rw_after_replace %#x\n", junk[0]);
	close(rwfd);
	d.id = ioas2;
	SHOW("destroy_ioas_after_close", ioctl(fd, IOMMU_DESTROY, &d));

	/* fork, mapping in a child that exits, with a domain (pinned at map time) */
	ioas = ioas_alloc();
	mock_domain(ioas, &stdev);
	afd = create_access(ioas, 0);
	pid_t c = fork();
	if (c == 0) {
		_exit(map_fixed(ioas, buffer, BUFSZ, AP) ? 1 : 0);
	}
	int st;
	waitpid(c, &st, 0);
	printf("fork_gone_child %d\n", WEXITSTATUS(st));
	SHOW("fork_gone_second_domain", mock_domain(ioas, &stdev));
	SHOW("fork_gone_rw", rw_sweep(afd, AP, 0));
	close(afd);
	/* ... and without a domain: pinning the gone child's memory is EFAULT */
	ioas = ioas_alloc();
	afd = create_access(ioas, 0);
	c = fork();
	if (c == 0)
		_exit(map_fixed(ioas, buffer, BUFSZ, AP) ? 1 : 0);
	waitpid(c, &st, 0);
	SHOW("fork_gone_no_domain", mock_domain(ioas, &stdev));
	close(afd);

	/* fork, mapping in a child that is still alive */
	ioas = ioas_alloc();
	afd = create_access(ioas, 0);
	int efd = eventfd(0, EFD_CLOEXEC), pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC))
		return 1;
	c = fork();
	if (c == 0) {
		__u64 one = 1;
		char x;
		close(pipefd[1]);
		map_fixed(ioas, buffer, BUFSZ, AP);
		if (write(efd, &one, 8) != 8 || read(pipefd[0], &x, 1) < 0)
			_exit(100);
		_exit(0);
	}
	close(pipefd[0]);
	__u64 v;
	if (read(efd, &v, 8) != 8)
		return 1;
	SHOW("fork_present_domain", mock_domain(ioas, &stdev));
	SHOW("fork_present_rw", rw_sweep(afd, AP, 0));
	close(pipefd[1]);
	waitpid(c, &st, 0);
	close(afd);
	close(fd);
	return 0;
}
