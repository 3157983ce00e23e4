/*
 * vfio_client MNT MODE [ARG]
 *
 * What QEMU's vfio-pci + iommufd backend does with MNT/vfio/devices/vfio0 and
 * MNT/iommu, without QEMU (the ioctl sequence of hw/vfio/iommufd.c), then the
 * edu device driven through its BAR0 with pread/pwrite of the device fd.
 *
 *   flow          bind, hw info, IOAS, HWPT, attach, IOVA ranges, MAP of an
 *                 anonymous "guest RAM", info/regions/irqs, config space,
 *                 INTx and MSI eventfds, an unmask eventfd, DMA RAM -> edu ->
 *                 RAM, a DMA to an unmapped IOVA, reset, feature, close
 *   gmem POLICY   a guest_memfd mapped with IOMMU_IOAS_MAP_FILE at IOVA GPA
 *                 (| the tdx/cca shared bit), policy set with IOMMU_OPTION;
 *                 the edu DMAs into it; then a page converted to private
 *                 without unmapping, and the edu DMAs there again
 *   errno         bad input: each check prints "check NAME got=E want=E"
 *
 * Output: "step ..." lines and "result KEY=VALUE ..." / "check ..." lines.
 * Exit status 0 unless the program itself failed (2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmemfs_uapi.h"

#define RAMSZ (8ull << 20)
#define BUF 0x40000ull
#define REG(i) ((uint64_t)(i) << VFIO_PCI_OFFSET_SHIFT)

static const char *mnt;
static int ifd, dfd;
static uint32_t devid, ioas, hwpt;
static char *ram;

static void die(const char *what)
{
	printf("error %s: %s\n", what, strerror(errno));
	exit(2);
}

static int xioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) ? errno : 0;
}

static void open_both(void)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/iommu", mnt);
	if ((ifd = open(p, O_RDWR)) < 0)
		die("open iommu");
	snprintf(p, sizeof(p), "%s/vfio/devices/vfio0", mnt);
	if ((dfd = open(p, O_RDWR)) < 0)
		die("open vfio0");
}

static void bind_attach(void)
{
	struct vfio_device_bind_iommufd b = { .argsz = 16, .iommufd = ifd };
	if (xioctl(dfd, VFIO_DEVICE_BIND_IOMMUFD, &b))
		die("BIND");
	devid = b.out_devid;
	struct iommu_hw_info hi = { .size = sizeof(hi), .dev_id = devid };
	if (xioctl(ifd, IOMMU_GET_HW_INFO, &hi))
		die("GET_HW_INFO");
	struct iommu_ioas_alloc a = { .size = sizeof(a) };
	if (xioctl(ifd, IOMMU_IOAS_ALLOC, &a))
		die("IOAS_ALLOC");
	ioas = a.out_ioas_id;
	struct iommu_hwpt_alloc h = { .size = sizeof(h), .dev_id = devid, .pt_id = ioas };
	if (xioctl(ifd, IOMMU_HWPT_ALLOC, &h))
		die("HWPT_ALLOC");
	hwpt = h.out_hwpt_id;
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = hwpt };
	if (xioctl(dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
		die("ATTACH");
	printf("step bind devid=%u hw_info_type=%u caps=%llu ioas=%u hwpt=%u\n", devid,
	       hi.out_data_type, (unsigned long long)hi.out_capabilities, ioas, hwpt);
}

static uint32_t bar_r(uint64_t off)
{
	uint32_t v = 0;
	if (pread(dfd, &v, 4, REG(0) + off) != 4)
		die("BAR read");
	return v;
}

static void bar_w(uint64_t off, uint64_t v, int n)
{
	if (pwrite(dfd, &v, n, REG(0) + off) != n)
		die("BAR write");
}

static void cfg_w16(uint64_t off, uint16_t v)
{
	if (pwrite(dfd, &v, 2, REG(VFIO_PCI_CONFIG_REGION_INDEX) + off) != 2)
		die("config write");
}

static void edu_dma(uint64_t src, uint64_t dst, uint64_t n, int to_ram, int irq)
{
	bar_w(0x80, src, 8);
	bar_w(0x88, dst, 8);
	bar_w(0x90, n, 8);
	bar_w(0x98, 1 | (to_ram ? 2 : 0) | (irq ? 4 : 0), 8);
}

static uint64_t efd_count(int e)
{
	uint64_t v = 0;
	struct pollfd p = { .fd = e, .events = POLLIN };
	if (poll(&p, 1, 2000) == 1 && read(e, &v, 8) != 8)
		v = 0;
	return v;
}

static int set_irq_fd(uint32_t flags, uint32_t index, int32_t efd)
{
	struct { struct vfio_irq_set s; int32_t fd; } x = {
		{ .argsz = sizeof(x), .flags = flags, .index = index, .start = 0, .count = 1 }, efd };
	return xioctl(dfd, VFIO_DEVICE_SET_IRQS, &x);
}

static int set_irq_none(uint32_t flags, uint32_t index, uint32_t count)
{
	struct vfio_irq_set s = { .argsz = sizeof(s), .flags = flags, .index = index, .count = count };
	return xioctl(dfd, VFIO_DEVICE_SET_IRQS, &s);
}

static uint64_t map_ram(uint64_t iova)
{
	struct iommu_ioas_map m = { .size = sizeof(m), .ioas_id = ioas, .user_va = (uintptr_t)ram,
		.length = RAMSZ, .iova = iova,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE };
	if (xioctl(ifd, IOMMU_IOAS_MAP, &m))
		die("IOAS_MAP");
	return m.iova;
}

static long count_events(const char *kind)
{
	char p[4096], buf[65536], pat[64];
	snprintf(p, sizeof(p), "%s/.state/counters", mnt);
	int f = open(p, O_RDONLY);
	ssize_t n = f < 0 ? -1 : read(f, buf, sizeof(buf) - 1);
	if (f >= 0)
		close(f);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	snprintf(pat, sizeof(pat), "\"%s\": ", kind);
	char *s = strstr(buf, pat);
	return s ? atol(s + strlen(pat)) : -1;
}

static int flow(void)
{
	open_both();
	bind_attach();
	struct iommu_iova_range r[4];
	struct iommu_ioas_iova_ranges ir = { .size = sizeof(ir), .ioas_id = ioas };
	int e = xioctl(ifd, IOMMU_IOAS_IOVA_RANGES, &ir);
	ir.allowed_iovas = (uintptr_t)r;
	if (e != EMSGSIZE || ir.num_iovas > 4 || xioctl(ifd, IOMMU_IOAS_IOVA_RANGES, &ir))
		die("IOVA_RANGES");
	printf("step iova_ranges n=%u align=%llu first=[%#llx,%#llx] second=[%#llx,%#llx]\n",
	       ir.num_iovas, (unsigned long long)ir.out_iova_alignment,
	       (unsigned long long)r[0].start, (unsigned long long)r[0].last,
	       (unsigned long long)r[1].start, (unsigned long long)r[1].last);
	ram = mmap(NULL, RAMSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		die("mmap");
	memset(ram, 0, RAMSZ);
	uint64_t iova = map_ram(0);
	struct vfio_device_info di = { .argsz = sizeof(di) };
	if (xioctl(dfd, VFIO_DEVICE_GET_INFO, &di))
		die("GET_INFO");
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = 0 };
	if (xioctl(dfd, VFIO_DEVICE_GET_REGION_INFO, &cfg) ||
	    xioctl(dfd, VFIO_DEVICE_GET_REGION_INFO, &bar))
		die("REGION_INFO");
	printf("step info flags=%u regions=%u irqs=%u config=%llu@%#llx bar0=%llu@%#llx\n",
	       di.flags, di.num_regions, di.num_irqs, (unsigned long long)cfg.size,
	       (unsigned long long)cfg.offset, (unsigned long long)bar.size,
	       (unsigned long long)bar.offset);
	uint32_t id = 0;
	if (pread(dfd, &id, 4, cfg.offset) != 4)
		die("config read");
	cfg_w16(4, 0x6);                               /* memory + bus master */
	printf("step config id=%#x edu=%#x\n", id, bar_r(0));
	/* an ioeventfd: signalling it writes liveness <- 0x1234 */
	int eio = eventfd(0, EFD_NONBLOCK);
	struct vfio_device_ioeventfd iev = { .argsz = sizeof(iev), .flags = VFIO_DEVICE_IOEVENTFD_32,
		.offset = REG(0) + 4, .data = 0x1234, .fd = eio };
	if (xioctl(dfd, VFIO_DEVICE_IOEVENTFD, &iev))
		die("IOEVENTFD");
	uint64_t one = 1;
	if (write(eio, &one, 8) != 8)
		die("ioeventfd write");
	uint32_t live = 0;
	for (int i = 0; i < 200 && (live = bar_r(4)) != 0xffffedcb; i++)
		usleep(10000);
	printf("result ioeventfd liveness=%#x\n", live);
	/* INTx with an unmask eventfd */
	int ex = eventfd(0, EFD_NONBLOCK), eu = eventfd(0, EFD_NONBLOCK);
	if (set_irq_fd(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, ex) ||
	    set_irq_fd(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK, 0, eu))
		die("SET_IRQS intx");
	bar_w(0x60, 1, 4);
	uint64_t i1 = efd_count(ex);
	bar_w(0x64, 1, 4);
	if (write(eu, &one, 8) != 8)                   /* unmask through the eventfd */
		die("unmask write");
	usleep(100000);
	bar_w(0x60, 1, 4);
	uint64_t i2 = efd_count(ex);
	bar_w(0x64, 1, 4);
	if (set_irq_none(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0))
		die("INTx off");
	/* MSI, then a DMA with its interrupt */
	int em = eventfd(0, EFD_NONBLOCK);
	if (set_irq_fd(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, em))
		die("SET_IRQS msi");
	const char msg[] = "C client DMA through gmemfs";
	memcpy(ram + 0x1000, msg, sizeof(msg));
	edu_dma(iova + 0x1000, BUF, sizeof(msg), 0, 0);
	edu_dma(BUF, iova + 0x5000, sizeof(msg), 1, 1);
	uint64_t m1 = efd_count(em);
	int dma_ok = !memcmp(ram + 0x5000, msg, sizeof(msg));
	long f0 = count_events("iommu_fault");
	edu_dma(BUF, 0x8000000, 16, 1, 0);             /* nobody mapped 128 MiB */
	long f1 = count_events("iommu_fault");
	printf("result flow intx_first=%llu intx_after_unmask_fd=%llu msi=%llu dma=%d "
	       "fault_events=%ld\n", (unsigned long long)i1, (unsigned long long)i2,
	       (unsigned long long)m1, dma_ok, f1 - f0);
	struct vfio_device_feature f = { .argsz = sizeof(f),
		.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION };
	printf("result reset=%d feature_migration=%d\n", xioctl(dfd, VFIO_DEVICE_RESET, NULL),
	       xioctl(dfd, VFIO_DEVICE_FEATURE, &f));
	close(dfd);
	close(ifd);
	return 0;
}

static int gmem(const char *policy)
{
	static const char *names[] = { "none", "revoke", "invalidate", "mirror", "pin" };
	int pol = -1;
	for (int i = 0; i < 5; i++)
		if (!strcmp(policy, names[i]))
			pol = i;
	if (pol < 0)
		die("policy");
	char p[4096], line[256];
	int shared_bit = -1;
	snprintf(p, sizeof(p), "%s/.state/config", mnt);
	FILE *cf = fopen(p, "r");
	char plat[16] = "none";
	int tdx = 30, cca = 30;
	while (cf && fgets(line, sizeof(line), cf)) {
		sscanf(line, "platform=%15s", plat);
		sscanf(line, "tdx_shared_bit=%d", &tdx);
		sscanf(line, "cca_shared_bit=%d", &cca);
	}
	if (cf)
		fclose(cf);
	if (!strcmp(plat, "tdx"))
		shared_bit = tdx;
	else if (!strcmp(plat, "cca"))
		shared_bit = cca;
	open_both();
	bind_attach();
	struct iommu_option o = { .size = sizeof(o), .option_id = GMEMFS_OPTION_GMEM_POLICY,
				  .op = IOMMU_OPTION_OP_SET, .object_id = ioas, .val64 = pol };
	if (xioctl(ifd, IOMMU_OPTION, &o))
		die("IOMMU_OPTION");
	snprintf(p, sizeof(p), "%s/gmem/vfio-%s-%d", mnt, policy, getpid());
	int g = open(p, O_CREAT | O_RDWR, 0600);
	struct kvm_create_guest_memfd cg = { .size = 1 << 20,
		.flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED };
	if (g < 0 || xioctl(g, KVM_CREATE_GUEST_MEMFD, &cg))
		die("guest_memfd");
	uint64_t gpa = 0x100000, iova = shared_bit >= 0 ? gpa | (1ull << shared_bit) : gpa;
	struct iommu_ioas_map_file mf = { .size = sizeof(mf), .ioas_id = ioas, .fd = g, .start = 0,
		.length = 1 << 20, .iova = iova,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE };
	if (xioctl(ifd, IOMMU_IOAS_MAP_FILE, &mf))
		die("MAP_FILE");
	char *gm = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, g, 0);
	if (gm == MAP_FAILED)
		die("mmap gmem");
	cfg_w16(4, 0x6);
	/* the VMM writes a page, the edu reads it and writes it back 8 KiB on */
	const char msg[] = "guest_memfd page, seen by the edu";
	memcpy(gm + 0x1000, msg, sizeof(msg));
	edu_dma(iova + 0x1000, BUF, sizeof(msg), 0, 0);
	edu_dma(BUF, iova + 0x3000, sizeof(msg), 1, 0);
	int shared_ok = !memcmp(gm + 0x3000, msg, sizeof(msg));
	/* the guest converts page 5 to private; the VMM does not unmap */
	struct kvm_memory_attributes2 a;
	memset(&a, 0, sizeof(a));
	a.offset = 0x5000;
	a.size = 0x1000;
	a.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
	int conv = xioctl(g, KVM_SET_MEMORY_ATTRIBUTES2, &a);
	long f0 = count_events("iommu_fault"), mc0 = count_events("machine_check");
	long io0 = count_events("io_fault");
	errno = 0;
	uint64_t v = 0x1234;
	int wr = pwrite(dfd, &v, 8, REG(0) + 0x80) == 8 ? 0 : errno;   /* host alive? */
	if (!wr)
		edu_dma(BUF, iova + 0x5000, 16, 1, 0);
	errno = 0;
	int after = pread(dfd, &v, 4, REG(0)) == 4 ? 0 : errno;
	printf("result gmem policy=%s platform=%s shared_dma=%d convert=%d iommu_fault=%ld "
	       "io_fault=%ld machine_check=%ld after=%d\n", policy, plat, shared_ok, conv,
	       count_events("iommu_fault") - f0, count_events("io_fault") - io0,
	       count_events("machine_check") - mc0, after);
	munmap(gm, 1 << 20);
	close(g);
	unlink(p);
	close(dfd);
	close(ifd);
	return 0;
}

static void check(const char *name, int got, int want)
{
	printf("check %s got=%d want=%d %s\n", name, got, want, got == want ? "ok" : "WRONG");
}

static int errnos(void)
{
	open_both();
	struct vfio_device_info di = { .argsz = sizeof(di) };
	check("get_info_before_bind", xioctl(dfd, VFIO_DEVICE_GET_INFO, &di), EINVAL);
	uint32_t v;
	check("read_before_bind", pread(dfd, &v, 4, REG(7)) < 0 ? errno : 0, EINVAL);
	struct vfio_device_bind_iommufd b = { .argsz = 15, .iommufd = ifd };
	check("bind_argsz", xioctl(dfd, VFIO_DEVICE_BIND_IOMMUFD, &b), EINVAL);
	b.argsz = 16;
	b.flags = 2;
	check("bind_flags", xioctl(dfd, VFIO_DEVICE_BIND_IOMMUFD, &b), EINVAL);
	b.flags = 0;
	b.iommufd = -1;
	check("bind_negative_fd", xioctl(dfd, VFIO_DEVICE_BIND_IOMMUFD, &b), EINVAL);
	b.iommufd = 1000;
	check("bind_closed_fd", xioctl(dfd, VFIO_DEVICE_BIND_IOMMUFD, &b), EBADF);
	int ev = eventfd(0, 0);
	b.iommufd = ev;
	check("bind_not_iommufd", xioctl(dfd, VFIO_DEVICE_BIND_IOMMUFD, &b), EBADFD);
	b.iommufd = dfd;
	check("bind_gmemfs_other", xioctl(dfd, VFIO_DEVICE_BIND_IOMMUFD, &b), EBADFD);
	check("bind_bad_pointer", xioctl(dfd, VFIO_DEVICE_BIND_IOMMUFD, (void *)8), EFAULT);
	bind_attach();
	b.iommufd = ifd;
	check("bind_twice", xioctl(dfd, VFIO_DEVICE_BIND_IOMMUFD, &b), EINVAL);
	struct iommu_destroy d = { .size = sizeof(d), .id = devid };
	check("destroy_devid", xioctl(ifd, IOMMU_DESTROY, &d), EBUSY);
	struct vfio_device_attach_iommufd_pt at = { .argsz = 11, .pt_id = ioas };
	check("attach_argsz", xioctl(dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), EINVAL);
	at.argsz = 16;
	at.flags = VFIO_DEVICE_ATTACH_PASID;
	check("attach_pasid", xioctl(dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), EOPNOTSUPP);
	at.flags = 0;
	at.pt_id = 9999;
	check("attach_noent", xioctl(dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), ENOENT);
	at.pt_id = devid;
	check("attach_device_id", xioctl(dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), EINVAL);
	struct vfio_region_info ri = { .argsz = 32, .index = VFIO_PCI_VGA_REGION_INDEX };
	check("region_vga", xioctl(dfd, VFIO_DEVICE_GET_REGION_INFO, &ri), EINVAL);
	ri.index = 9;
	check("region_9", xioctl(dfd, VFIO_DEVICE_GET_REGION_INFO, &ri), EINVAL);
	ri.argsz = 31;
	ri.index = 0;
	check("region_argsz", xioctl(dfd, VFIO_DEVICE_GET_REGION_INFO, &ri), EINVAL);
	struct vfio_irq_info ii = { .argsz = 16, .index = VFIO_PCI_ERR_IRQ_INDEX };
	check("irq_info_err", xioctl(dfd, VFIO_DEVICE_GET_IRQ_INFO, &ii), EINVAL);
	ii.index = 5;
	check("irq_info_5", xioctl(dfd, VFIO_DEVICE_GET_IRQ_INFO, &ii), EINVAL);
	check("set_irqs_two_actions",
	      set_irq_none(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK |
			   VFIO_IRQ_SET_ACTION_UNMASK, 0, 1), ENOTTY);
	check("set_irqs_beyond", set_irq_none(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
					      1, 2), EINVAL);
	check("set_irqs_msix", set_irq_none(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
					    2, 1), EINVAL);
	check("set_irqs_not_eventfd",
	      set_irq_fd(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, ifd), EINVAL);
	check("set_irqs_closed_fd",
	      set_irq_fd(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 999), EBADF);
	check("unmask_without_intx", set_irq_none(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
						  0, 1), EINVAL);
	struct vfio_device_feature f = { .argsz = 8, .flags = VFIO_DEVICE_FEATURE_GET |
					 VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIGRATION };
	check("feature_get_and_set", xioctl(dfd, VFIO_DEVICE_FEATURE, &f), EINVAL);
	f.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START;
	check("feature_dma_logging", xioctl(dfd, VFIO_DEVICE_FEATURE, &f), ENOTTY);
	struct vfio_pci_hot_reset hr = { .argsz = 12 };
	check("hot_reset", xioctl(dfd, VFIO_DEVICE_PCI_HOT_RESET, &hr), ENODEV);
	check("unknown_ioctl", xioctl(dfd, 0x3b7f, &hr), ENOTTY);
	char big[300];
	check("config_beyond", pread(dfd, big, 257, REG(7)) < 0 ? errno : 0, EFAULT);
	check("bar1", pread(dfd, &v, 4, REG(1)) < 0 ? errno : 0, EINVAL);
	check("bar0_beyond", pread(dfd, &v, 4, REG(0) + (1 << 20)) < 0 ? errno : 0, EINVAL);
	check("bar0_memory_off", pread(dfd, &v, 4, REG(0)) < 0 ? errno : 0, EIO);
	check("rom_write", pwrite(dfd, &v, 4, REG(6)) < 0 ? errno : 0, EINVAL);
	struct iommu_ioas_map m = { .size = sizeof(m), .ioas_id = ioas, .user_va = (uintptr_t)big,
		.length = 4096, .iova = 0xfee00000,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE };
	check("map_msi_window", xioctl(ifd, IOMMU_IOAS_MAP, &m), EINVAL);
	/* a second open of the device cannot bind while the first is bound */
	char p[4096];
	snprintf(p, sizeof(p), "%s/vfio/devices/vfio0", mnt);
	int d2 = open(p, O_RDWR);
	check("bind_second_open", xioctl(d2, VFIO_DEVICE_BIND_IOMMUFD, &b), EINVAL);
	close(d2);
	struct vfio_device_detach_iommufd_pt dt = { .argsz = 8, .flags = 2 };
	check("detach_flags", xioctl(dfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), EINVAL);
	dt.flags = 0;
	check("detach", xioctl(dfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), 0);
	close(dfd);
	close(ifd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: vfio_client MNT flow|gmem POLICY|errno\n");
		return 2;
	}
	mnt = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[2], "flow"))
		return flow();
	if (!strcmp(argv[2], "gmem") && argc > 3)
		return gmem(argv[3]);
	if (!strcmp(argv[2], "errno"))
		return errnos();
	fprintf(stderr, "unknown mode %s\n", argv[2]);
	return 2;
}
