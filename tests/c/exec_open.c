/*
 * exec_open.c - an unmodified program that opens /dev/iommu and /dev/kvm the
 * way VMMs do, run under `gmemfs exec` by tests/test_exec_e2e.py.
 *
 * Prints one "name value" line per check; the test compares them with what
 * the kernel does for a real /dev/iommu (and what gmemfs must redirect).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "gmemfs_uapi.h"

static void where(const char *name, int fd)
{
	char link[64], target[4096];
	if (fd < 0) {
		printf("%s err %s\n", name, strerrorname_np(errno));
		return;
	}
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	printf("%s %s cloexec=%d\n", name, target, !!(fcntl(fd, F_GETFD) & FD_CLOEXEC));
}

static int ioas_alloc(int fd)
{
	struct iommu_ioas_alloc c = { .size = sizeof(c) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &c))
		return -errno;
	return (int)c.out_ioas_id;
}

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	where("open", fd);
	printf("ioas_alloc %d\n", ioas_alloc(fd));
	where("open_cloexec", open("/dev/iommu", O_RDWR | O_CLOEXEC));
	where("openat_abs", openat(AT_FDCWD, "/dev/iommu", O_RDWR));
	where("double_slash", open("//dev///iommu", O_RDWR));
	where("dotdot", open("/dev/../dev/./iommu", O_RDWR));
	int dev = open("/dev", O_RDONLY | O_DIRECTORY);
	where("openat_dirfd", openat(dev, "iommu", O_RDWR));
	if (chdir("/dev") == 0)
		where("relative", open("iommu", O_RDWR));
	where("trailing_slash", open("/dev/iommu/", O_RDWR));
	where("excl", open("/dev/iommu", O_RDWR | O_CREAT | O_EXCL, 0600));
	where("kvm", open("/dev/kvm", O_RDWR | O_CLOEXEC));
	where("null", open("/dev/null", O_RDONLY));
	where("other_iommu", open("/tmp/iommu-does-not-exist/iommu", O_RDONLY));
	struct open_how how = { .flags = O_RDWR | O_CLOEXEC };
	where("openat2", (int)syscall(SYS_openat2, AT_FDCWD, "/dev/iommu", &how, sizeof(how)));
	int two = open("/dev/iommu", O_RDWR);
	/* two opens are two independent contexts: the first IOAS of each is 1 */
	printf("second_context_ioas %d\n", ioas_alloc(two));
	return 0;
}
