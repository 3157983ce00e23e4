/*
 * exec_stress.c - programs for the supervisor robustness tests of
 * tests/test_exec_robust.py, run under `gmemfs exec`.
 *
 *   exec_stress threads N     N threads each open /dev/iommu and allocate an IOAS
 *   exec_stress fork          fork; the child execs "exec_stress child", which opens
 *                             /dev/iommu; the parent waits and opens too
 *   exec_stress child         (the exec'd child) open /dev/iommu, IOAS_ALLOC
 *   exec_stress loop          open /dev/iommu every 10 ms until it fails; print errno
 *   exec_stress open1         open /dev/iommu once, print "opened", then pause()
 *   exec_stress wait-signal   print "ready", then report the first SIGTERM/SIGUSR1/
 *                             SIGINT with its sender and exit 3
 *   exec_stress leave-child   fork a grandchild that sleeps forever; print its
 *                             pid and exit 0 at once
 *   exec_stress count-sigint  print "ready", count SIGINTs; on SIGTERM print
 *                             "sigints N" and exit 3
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

static int ioas_alloc(int fd)
{
	struct iommu_ioas_alloc c = { .size = sizeof(c) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &c))
		return -errno;
	return (int)c.out_ioas_id;
}

static void *thread_main(void *arg)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	long ok = fd >= 0 && ioas_alloc(fd) == 1;
	if (fd >= 0)
		close(fd);
	return (void *)ok;
}

static int opened(const char *who)
{
	int fd = open("/dev/iommu", O_RDWR);
	char link[64], target[256] = "";
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	printf("%s %s ioas=%d\n", who, fd >= 0 ? target : strerrorname_np(errno),
	       fd >= 0 ? ioas_alloc(fd) : 0);
	fflush(stdout);
	return fd;
}

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
	char buf[96];
	int n = snprintf(buf, sizeof(buf), "signal %d from %d code %d\n", sig, (int)si->si_pid,
			 si->si_code);
	if (write(1, buf, n) < 0)
		_exit(4);
	_exit(3);
}

static volatile sig_atomic_t sigints;

static void count_int(int sig)
{
	sigints++;
}

static void report_term(int sig)
{
	char buf[48];
	int n = snprintf(buf, sizeof(buf), "sigints %d\n", (int)sigints);
	if (write(1, buf, n) < 0)
		_exit(4);
	_exit(3);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	if (!strcmp(mode, "threads")) {
		int n = argc > 2 ? atoi(argv[2]) : 8, ok = 0;
		pthread_t t[256];
		if (n > 256)
			n = 256;
		for (int i = 0; i < n; i++)
			pthread_create(&t[i], NULL, thread_main, NULL);
		for (int i = 0; i < n; i++) {
			void *r;
			pthread_join(t[i], &r);
			ok += r != NULL;
		}
		printf("threads_ok %d/%d\n", ok, n);
		return ok == n ? 0 : 1;
	}
	if (!strcmp(mode, "fork")) {
		fflush(stdout);
		pid_t p = fork();
		if (p == 0) {
			execl("/proc/self/exe", argv[0], "child", (char *)NULL);
			_exit(127);
		}
		int st;
		waitpid(p, &st, 0);
		opened("parent");
		printf("child_status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return 0;
	}
	if (!strcmp(mode, "child"))
		return opened("child") >= 0 ? 0 : 1;
	if (!strcmp(mode, "loop")) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		printf("looping\n");
		fflush(stdout);
		for (;;) {
			int fd = open("/dev/iommu", O_RDWR);
			if (fd < 0) {
				printf("open_failed %s\n", strerrorname_np(errno));
				return 0;
			}
			close(fd);
			nanosleep(&ts, NULL);
		}
	}
	if (!strcmp(mode, "open1")) {
		opened("open1");
		pause();
		return 0;
	}
	if (!strcmp(mode, "wait-signal")) {
		struct sigaction sa = { .sa_sigaction = on_signal, .sa_flags = SA_SIGINFO };
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGUSR1, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		printf("ready %d\n", (int)getpid());
		fflush(stdout);
		for (;;)
			pause();
	}
	if (!strcmp(mode, "leave-child")) {
		pid_t p = fork();
		if (p == 0) {
			setsid();
			for (;;)
				pause();
		}
		printf("grandchild %d\n", (int)p);
		return 0;
	}
	if (!strcmp(mode, "count-sigint")) {
		/* a SIGINT pending together with SIGTERM is counted first: the
		   kernel delivers the lowest signal first, and SIGTERM stays
		   blocked while its handler runs */
		struct sigaction si = { .sa_handler = count_int };
		struct sigaction st = { .sa_handler = report_term };
		sigemptyset(&si.sa_mask);
		sigaddset(&si.sa_mask, SIGTERM);
		sigaction(SIGINT, &si, NULL);
		sigaction(SIGTERM, &st, NULL);
		printf("ready %d\n", (int)getpid());
		fflush(stdout);
		for (;;)
			pause();
	}
	fprintf(stderr, "usage: exec_stress threads N|fork|child|loop|open1|wait-signal|leave-child|count-sigint\n");
	return 2;
}
