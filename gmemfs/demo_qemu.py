"""The demo's QEMU scene: unmodified QEMU (>= 10) with the emulated VFIO
device on a gmemfs mount, a qtest script as the guest doing one DMA into
guest RAM and one to an IOVA nobody mapped, then what gmemfs saw: the ioctls
QEMU issued, the IOAS areas, the device, the events. Printed for a person."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from gmemfs import mountctl, qemu as Q


# ioctls QEMU also issues on the device fd that are not VFIO's
OTHER = {"0x5401": "TCGETS (a tty probe)"}


def _ioctls(log_text: str) -> list[tuple[str, str]]:
    out = []
    for line in log_text.splitlines():
        if " ioctl " in line:
            name, _, rest = line.split(" ioctl ", 1)[1].partition(" ")
            name = OTHER.get(name, name)
            out.append((name, rest.split("-> ", 1)[-1].split(" ")[0]))
    return out


def _compress(seq):
    """Consecutive repeats as 'NAME xN'."""
    out = []
    for name, res in seq:
        label = name if res == "0" else f"{name} -> {res}"
        if out and out[-1][0] == label:
            out[-1][1] += 1
        else:
            out.append([label, 1])
    return [f"{lab} x{n}" if n > 1 else lab for lab, n in out]


def run_scene(work: Path) -> int:
    v = Q.qemu_version()
    print("\n== QEMU scene: unmodified QEMU with MNT/vfio/devices/vfio0 on MNT/iommu")
    if not v or v < (10, 0):
        print(f"!! QEMU >= 10 is needed (found {v or 'none'}); ./run installs it")
        return 1
    sub = work / "qemu"
    (sub / "mnt").mkdir(parents=True, exist_ok=True)
    log = sub / "gmemfs.log"
    try:
        srv = mountctl.start_gmemfs(sub / "mnt", log=log, debug=True, stdout=None, stderr=None)
    except mountctl.MountError as e:
        print(f"!! gmemfs failed to mount (see {log}): {e}")
        return 1
    try:
        return _scene(sub / "mnt", sub, lambda: log.read_text(errors="replace"), v)
    finally:
        srv.stop()


def _scene(mnt: Path, work: Path, server_log_text, v) -> int:
    print(f"   qemu-system-x86_64 {v[0]}.{v[1]}, 128 MiB of guest RAM, the device at 00:04.0")
    q = Q.Qemu(mnt, log=work / "qemu.log", ram_mb=128)
    try:
        print("   " + " ".join(q.argv[1:]))
        print(f"\n-- the guest (a qtest script) finds the device: vendor:device "
              f"{q.cfg_readl(0) & 0xffff:04x}:{q.cfg_readl(0) >> 16:04x}")
        q.setup_device()
        b = q.bar0
        print(f"   BAR0 at {b:#x}, memory + bus master on; edu id {q.readl(b):#010x}, "
              f"liveness(0x1234) -> {(q.writel(b + 4, 0x1234), q.readl(b + 4))[1]:#010x}, "
              f"factorial(10) -> {(q.writel(b + 8, 10), q.readl(b + 8))[1]}")
        msg = b"hello from the edu device, via gmemfs's IOAS"
        q.write_mem(0x100000, msg)
        q.edu_dma(0x100000, 0x40000, len(msg), to_ram=False)
        q.edu_dma(0x40000, 0x200000, len(msg), to_ram=True)
        got = q.read_mem(0x200000, len(msg))
        print(f"\n-- DMA RAM 0x100000 -> edu buffer -> RAM 0x200000 ({len(msg)} bytes)")
        print(f"   guest RAM at 0x200000 now reads: {got.decode(errors='replace')!r}"
              f"  [{'OK' if got == msg else 'WRONG'}]")
        q.edu_dma(0x40000, 0x9000000, 16, to_ram=True)
        print("-- DMA to IOVA 0x9000000 (above the 128 MiB QEMU mapped): "
              f"guest RAM unchanged: {q.read_mem(0x9000000, 16) == bytes(16)}")
        io = json.loads((mnt / ".state" / "iommufd").read_text())
        dev = json.loads((mnt / ".state" / "vfio").read_text())[0]
        evs = [json.loads(x) for x in (mnt / ".state" / "events").read_text().splitlines()]
    finally:
        rc = q.quit()
    seq = _ioctls(server_log_text())
    print("\n-- what gmemfs saw: the ioctls QEMU issued, in order")
    for item in _compress(seq):
        print(f"   {item}")
    print(f"   ({len(seq)} ioctls: " + ", ".join(f"{n} {k}" for k, n in
                                           Counter(k for k, _ in seq).most_common(4)) + ", ...)")
    print("\n-- the IOAS areas QEMU mapped (IOMMU_IOAS_MAP by user address)")
    for c in io["contexts"]:
        for i in c["ioas"]:
            for a in i["areas"]:
                print(f"   IOAS {i['id']}: IOVA {a['iova']:#012x} + {a['length']:#010x}  {a['backing']}")
    print("\n-- the device (MNT/.state/vfio)")
    print(f"   {dev['name']}: bound={dev['bound']} devid={dev['devid']} hwpt={dev['hwpt']} "
          f"ioas={dev['ioas']} domain={dev['domain']} irq={dev['irq']}")
    print(f"   DMAs {dev['dma']}, faults {dev['dma_faults']}, blocked {dev['dma_blocked']}; "
          f"edu: {dev['edu']['dma_done']} transfers, liveness {dev['edu']['liveness']}")
    print("\n-- events (MNT/.state/events)")
    for e in evs:
        print(f"   #{e['seq']} {e['kind']}: device {e['device']} IOVA {e['iova']:#x}: {e['detail']}")
    print(f"\n-- QEMU exited ({rc}); contexts open: "
          f"{(mnt / '.state' / 'contexts').read_text().strip()}")
    return 0 if got == msg and rc == 0 else 1
