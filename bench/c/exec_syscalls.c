/*
 * exec_syscalls.c - what `gmemfs exec` costs a program (bench/bench_exec.py).
 *
 *   exec_syscalls MNT [-n OPS] [-w WARMUP]
 *
 * Times, one after the other, OPS iterations (after WARMUP untimed ones) of:
 *   getpid        syscall(SYS_getpid): never intercepted (the filter runs, no more)
 *   open_null     openat("/dev/null") + close: intercepted, continued by the
 *                 supervisor's C fast path
 *   open_dev      openat("/dev/iommu") + close: redirected to MNT/iommu
 *                 (only meaningful under gmemfs exec; else it fails and is skipped)
 *   open_mnt      openat("MNT/iommu") + close: the same FUSE open, not redirected
 *   ioas_pair     IOMMU_IOAS_ALLOC + IOMMU_DESTROY on an MNT/iommu fd: not intercepted
 *   test_cmd      IOMMU_TEST_CMD SET_TEMP_MEMORY_LIMIT: intercepted (the filter
 *                 matches every IOMMU_TEST_CMD), continued by the C fast path
 *                 once it has read the op from the caller's memory
 *
 * Prints the median and p90 per operation and "RESULT op=NAME median_ns=.. p90_ns=.."
 * lines for the script.
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

#include "bench_common.h"
#include "gmemfs_uapi.h"

static int n_ops = 20000, n_warm = 2000;
static char mnt_iommu[4096];
static int iommufd = -1;

static int op_getpid(void)
{
	return syscall(SYS_getpid) > 0 ? 0 : -1;
}

static int op_open(const char *path)
{
	int fd = openat(AT_FDCWD, path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int op_open_null(void)
{
	return op_open("/dev/null");
}

static int op_open_dev(void)
{
	return op_open("/dev/iommu");
}

static int op_open_mnt(void)
{
	return op_open(mnt_iommu);
}

static int op_ioas_pair(void)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &a))
		return -1;
	struct iommu_destroy d = { .size = sizeof(d), .id = a.out_ioas_id };
	return ioctl(iommufd, IOMMU_DESTROY, &d);
}

static uint32_t test_ioas;

static int op_test_cmd(void)
{
	struct iommu_test_cmd c = {
		.size = sizeof(c), .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
		.id = test_ioas, .memory_limit = { .limit = 65536 },
	};
	return ioctl(iommufd, IOMMU_TEST_CMD, &c);
}

static void bench(const char *name, int (*op)(void))
{
	uint32_t *s = malloc(sizeof(*s) * (size_t)n_ops);
	if (!s)
		exit(2);
	for (int i = 0; i < n_warm; i++) {
		if (op()) {
			printf("%-10s skipped (%s)\n", name, strerrorname_np(errno));
			free(s);
			return;
		}
	}
	for (int i = 0; i < n_ops; i++) {
		uint64_t t0 = now_ns();
		if (op()) {
			fprintf(stderr, "%s failed: %s\n", name, strerror(errno));
			exit(1);
		}
		s[i] = clamp_ns(now_ns() - t0);
	}
	sum_and_sort(s, (size_t)n_ops);
	double med = quant_us(s, (size_t)n_ops, 0.5), p90 = quant_us(s, (size_t)n_ops, 0.9);
	printf("%-10s median %9.3f us  p90 %9.3f us\n", name, med, p90);
	printf("RESULT op=%s median_ns=%.0f p90_ns=%.0f\n", name, med * 1000, p90 * 1000);
	free(s);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: exec_syscalls MNT [-n OPS] [-w WARMUP]\n");
		return 2;
	}
	snprintf(mnt_iommu, sizeof(mnt_iommu), "%s/iommu", argv[1]);
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-n"))
			n_ops = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-w"))
			n_warm = atoi(argv[i + 1]);
	}
	iommufd = open(mnt_iommu, O_RDWR);
	if (iommufd < 0) {
		perror(mnt_iommu);
		return 1;
	}
	bench("getpid", op_getpid);
	bench("open_null", op_open_null);
	bench("open_dev", op_open_dev);
	bench("open_mnt", op_open_mnt);
	bench("ioas_pair", op_ioas_pair);
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &a)) {
		perror("IOMMU_IOAS_ALLOC");
		return 1;
	}
	test_ioas = a.out_ioas_id;
	bench("test_cmd", op_test_cmd);
	return 0;
}
