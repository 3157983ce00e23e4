"""ioctl_abi against the specs, against gcc, and against system kernel headers.

The expectations below are transcribed by hand from
/work/shared/spec/iommufd.md (§2, §4-§7, §9, §10) and
/work/shared/spec/guest_memfd.md (§1, §2, §4.3); they are deliberately not
computed from ioctl_abi, so a wrong header fails here.

Layout notation: ``name:type@offset`` with type u8/u16/u32/s32/u64, arrays as
``u64[6]``; members of named union members as ``member.field``.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ioctl_abi as abi

ffi = abi.ffi

# --------------------------------------------------------------------------
# expected layouts (spec tables)

TEST_CMD_UNION = """
    add_reserved.start:u64@16, add_reserved.length:u64@24,
    mock_domain.out_stdev_id:u32@16, mock_domain.out_hwpt_id:u32@20, mock_domain.out_idev_id:u32@24,
    mock_domain_flags.out_stdev_id:u32@16, mock_domain_flags.out_hwpt_id:u32@20,
    mock_domain_flags.out_idev_id:u32@24, mock_domain_flags.dev_flags:u32@28,
    mock_domain_replace.pt_id:u32@16,
    check_map.iova:u64@16, check_map.length:u64@24, check_map.uptr:u64@32,
    check_refs.length:u64@16, check_refs.uptr:u64@24, check_refs.refs:u32@32,
    create_access.out_access_fd:u32@16, create_access.flags:u32@20,
    destroy_access_pages.access_pages_id:u32@16,
    access_pages.flags:u32@16, access_pages.out_access_pages_id:u32@20, access_pages.iova:u64@24,
    access_pages.length:u64@32, access_pages.uptr:u64@40,
    access_rw.iova:u64@16, access_rw.length:u64@24, access_rw.uptr:u64@32, access_rw.flags:u32@40,
    memory_limit.limit:u32@16,
    access_replace_ioas.ioas_id:u32@16,
    dirty.flags:u32@16, dirty.iova:u64@24, dirty.length:u64@32, dirty.page_size:u64@40,
    dirty.uptr:u64@48, dirty.out_nr_dirty:u64@56,
    check_iotlb.id:u32@16, check_iotlb.iotlb:u32@20,
    trigger_iopf.dev_id:u32@16, trigger_iopf.pasid:u32@20, trigger_iopf.grpid:u32@24,
    trigger_iopf.perm:u32@28, trigger_iopf.addr:u64@32,
    check_dev_cache.id:u32@16, check_dev_cache.cache:u32@20,
    trigger_vevent.dev_id:u32@16,
    pasid_attach.pasid:u32@16, pasid_attach.pt_id:u32@20,
    pasid_replace.pasid:u32@16, pasid_replace.pt_id:u32@20,
    pasid_detach.pasid:u32@16,
    pasid_check.pasid:u32@16, pasid_check.hwpt_id:u32@20,
    dmabuf_get.length:u32@16, dmabuf_get.open_flags:u32@20,
    dmabuf_revoke.dmabuf_fd:s32@16, dmabuf_revoke.revoked:u32@20,
    check_dmabuf.dmabuf_fd:s32@16, check_dmabuf.iova:u64@24, check_dmabuf.length:u64@32,
    check_dmabuf.offset:u64@40
"""

# (spec section, struct, size, fields)
LAYOUTS = [
    ("iommufd §4.1", "iommu_destroy", 8, "size:u32@0, id:u32@4"),
    ("iommufd §4.2", "iommu_ioas_alloc", 12, "size:u32@0, flags:u32@4, out_ioas_id:u32@8"),
    ("iommufd §4.3", "iommu_ioas_allow_iovas", 24,
     "size:u32@0, ioas_id:u32@4, num_iovas:u32@8, __reserved:u32@12, allowed_iovas:u64@16"),
    ("iommufd §4.3/§7", "iommu_iova_range", 16, "start:u64@0, last:u64@8"),
    ("iommufd §4.4", "iommu_ioas_iova_ranges", 32,
     "size:u32@0, ioas_id:u32@4, num_iovas:u32@8, __reserved:u32@12, allowed_iovas:u64@16,"
     " out_iova_alignment:u64@24"),
    ("iommufd §4.6", "iommu_ioas_map", 40,
     "size:u32@0, flags:u32@4, ioas_id:u32@8, __reserved:u32@12, user_va:u64@16, length:u64@24,"
     " iova:u64@32"),
    ("iommufd §4.7", "iommu_ioas_map_file", 40,
     "size:u32@0, flags:u32@4, ioas_id:u32@8, fd:s32@12, start:u64@16, length:u64@24, iova:u64@32"),
    ("iommufd §4.8", "iommu_ioas_copy", 40,
     "size:u32@0, flags:u32@4, dst_ioas_id:u32@8, src_ioas_id:u32@12, length:u64@16,"
     " dst_iova:u64@24, src_iova:u64@32"),
    ("iommufd §4.9", "iommu_ioas_unmap", 24, "size:u32@0, ioas_id:u32@4, iova:u64@8, length:u64@16"),
    ("iommufd §4.10", "iommu_option", 24,
     "size:u32@0, option_id:u32@4, op:u16@8, __reserved:u16@10, object_id:u32@12, val64:u64@16"),
    ("iommufd §4.12", "iommu_ioas_change_process", 8, "size:u32@0, __reserved:u32@4"),
    ("iommufd §5", "iommu_vfio_ioas", 12, "size:u32@0, ioas_id:u32@4, op:u16@8, __reserved:u16@10"),
    ("iommufd §6.2", "iommu_hwpt_alloc", 48,
     "size:u32@0, flags:u32@4, dev_id:u32@8, pt_id:u32@12, out_hwpt_id:u32@16, __reserved:u32@20,"
     " data_type:u32@24, data_len:u32@28, data_uptr:u64@32, fault_id:u32@40, __reserved2:u32@44"),
    ("iommufd §6.3", "iommu_hw_info", 40,
     "size:u32@0, flags:u32@4, dev_id:u32@8, data_len:u32@12, data_uptr:u64@16,"
     " in_data_type:u32@24, out_data_type:u32@24, out_max_pasid_log2:u8@28, __reserved:u8[3]@29,"
     " out_capabilities:u64@32"),
    ("iommufd §6.3", "iommu_hw_info_vtd", 24,
     "flags:u32@0, __reserved:u32@4, cap_reg:u64@8, ecap_reg:u64@16"),
    ("iommufd §6.3", "iommu_hw_info_arm_smmuv3", 40,
     "flags:u32@0, __reserved:u32@4, idr:u32[6]@8, iidr:u32@32, aidr:u32@36"),
    ("iommufd §6.3", "iommu_hw_info_tegra241_cmdqv", 8,
     "flags:u32@0, version:u8@4, log2vcmdqs:u8@5, log2vsids:u8@6, __reserved:u8@7"),
    ("iommufd §6.3", "iommu_hw_info_amd", 16, "efr:u64@0, efr2:u64@8"),
    ("iommufd §6.3", "iommu_hwpt_vtd_s1", 24,
     "flags:u64@0, pgtbl_addr:u64@8, addr_width:u32@16, __reserved:u32@20"),
    ("iommufd §6.3", "iommu_hwpt_arm_smmuv3", 16, "ste:u64[2]@0"),
    ("iommufd §6.3", "iommu_hwpt_amd_guest", 32, "dte:u64[4]@0"),
    ("iommufd §6.4", "iommu_hwpt_set_dirty_tracking", 16,
     "size:u32@0, flags:u32@4, hwpt_id:u32@8, __reserved:u32@12"),
    ("iommufd §6.5", "iommu_hwpt_get_dirty_bitmap", 48,
     "size:u32@0, hwpt_id:u32@4, flags:u32@8, __reserved:u32@12, iova:u64@16, length:u64@24,"
     " page_size:u64@32, data:u64@40"),
    ("iommufd §6.6", "iommu_hwpt_invalidate", 32,
     "size:u32@0, hwpt_id:u32@4, data_uptr:u64@8, data_type:u32@16, entry_len:u32@20,"
     " entry_num:u32@24, __reserved:u32@28"),
    ("iommufd §6.6", "iommu_hwpt_vtd_s1_invalidate", 24,
     "addr:u64@0, npages:u64@8, flags:u32@16, __reserved:u32@20"),
    ("iommufd §6.6", "iommu_viommu_arm_smmuv3_invalidate", 16, "cmd:u64[2]@0"),
    ("iommufd §6.7", "iommu_fault_alloc", 16,
     "size:u32@0, flags:u32@4, out_fault_id:u32@8, out_fault_fd:u32@12"),
    ("iommufd §6.7/§7", "iommu_hwpt_pgfault", 40,
     "flags:u32@0, dev_id:u32@4, pasid:u32@8, grpid:u32@12, perm:u32@16, __reserved:u32@20,"
     " addr:u64@24, length:u32@32, cookie:u32@36"),
    ("iommufd §6.7/§7", "iommu_hwpt_page_response", 8, "cookie:u32@0, code:u32@4"),
    ("iommufd §6.8", "iommu_viommu_alloc", 40,
     "size:u32@0, flags:u32@4, type:u32@8, dev_id:u32@12, hwpt_id:u32@16, out_viommu_id:u32@20,"
     " data_len:u32@24, __reserved:u32@28, data_uptr:u64@32"),
    ("iommufd §6.8/§7", "iommu_viommu_tegra241_cmdqv", 16,
     "out_vintf_mmap_offset:u64@0, out_vintf_mmap_length:u64@8"),
    ("iommufd §6.9", "iommu_vdevice_alloc", 24,
     "size:u32@0, viommu_id:u32@4, dev_id:u32@8, out_vdevice_id:u32@12, virt_id:u64@16"),
    ("iommufd §6.10", "iommu_veventq_alloc", 32,
     "size:u32@0, flags:u32@4, viommu_id:u32@8, type:u32@12, veventq_depth:u32@16,"
     " out_veventq_id:u32@20, out_veventq_fd:u32@24, __reserved:u32@28"),
    ("iommufd §6.10/§7", "iommufd_vevent_header", 8, "flags:u32@0, sequence:u32@4"),
    ("iommufd §6.10/§7", "iommu_vevent_arm_smmuv3", 32, "evt:u64[4]@0"),
    ("iommufd §6.10/§7", "iommu_vevent_tegra241_cmdqv", 16, "lvcmdq_err_map:u64[2]@0"),
    ("iommufd §6.11", "iommu_hw_queue_alloc", 40,
     "size:u32@0, flags:u32@4, viommu_id:u32@8, type:u32@12, index:u32@16, out_hw_queue_id:u32@20,"
     " nesting_parent_iova:u64@24, length:u64@32"),
    ("iommufd §10.1", "iommu_test_cmd", 72,
     "size:u32@0, op:u32@4, id:u32@8, __reserved:u32@12, last:u32@64," + TEST_CMD_UNION),
    ("iommufd §10.3", "iommu_test_hw_info", 8, "flags:u32@0, test_reg:u32@4"),
    ("iommufd §10.3", "iommu_hwpt_selftest", 8, "iotlb:u32@0, pagetable_type:u32@4"),
    ("iommufd §10.3", "iommu_hwpt_invalidate_selftest", 8, "flags:u32@0, iotlb_id:u32@4"),
    ("iommufd §10.3", "iommu_viommu_selftest", 24,
     "in_data:u32@0, out_data:u32@4, out_mmap_offset:u64@8, out_mmap_length:u64@16"),
    ("iommufd §10.3", "iommu_viommu_invalidate_selftest", 12,
     "flags:u32@0, vdev_id:u32@4, cache_id:u32@8"),
    ("iommufd §10.3", "iommu_viommu_event_selftest", 4, "virt_id:u32@0"),
    # include/uapi/linux/vfio.h (the VFIO type1 container ABI of vfio_compat.c)
    ("vfio.h", "vfio_info_cap_header", 8, "id:u16@0, version:u16@2, next:u32@4"),
    ("vfio.h", "vfio_iommu_type1_info", 24,
     "argsz:u32@0, flags:u32@4, iova_pgsizes:u64@8, cap_offset:u32@16"),
    ("vfio.h", "vfio_iommu_type1_info_dma_avail", 12,
     "header.id:u16@0, header.version:u16@2, header.next:u32@4, avail:u32@8"),
    ("vfio.h", "vfio_iommu_type1_dma_map", 32,
     "argsz:u32@0, flags:u32@4, vaddr:u64@8, iova:u64@16, size:u64@24"),
    ("vfio.h", "vfio_iommu_type1_dma_unmap", 24, "argsz:u32@0, flags:u32@4, iova:u64@8, size:u64@16"),
    ("guest_memfd §2.1", "kvm_create_guest_memfd", 64, "size:u64@0, flags:u64@8, reserved:u64[6]@16"),
    # §1.1 gives only the size (32); the field layout is checked against the
    # system <linux/kvm.h> below, which has had this struct forever.
    ("guest_memfd §1.1", "kvm_userspace_memory_region", 32,
     "slot:u32@0, flags:u32@4, guest_phys_addr:u64@8, memory_size:u64@16, userspace_addr:u64@24"),
    ("guest_memfd §2.2", "kvm_userspace_memory_region2", 160,
     "slot:u32@0, flags:u32@4, guest_phys_addr:u64@8, memory_size:u64@16, userspace_addr:u64@24,"
     " guest_memfd_offset:u64@32, guest_memfd:u32@40, pad1:u32@44, pad2:u64[14]@48"),
    ("guest_memfd §2.3", "kvm_memory_attributes", 32,
     "address:u64@0, size:u64@8, attributes:u64@16, flags:u64@24"),
    ("guest_memfd §2.4", "gmemfs_kvm_memory_fault", 24, "flags:u64@0, gpa:u64@8, size:u64@16"),
    ("gmemfs extension: DMA", "gmemfs_test_dma", 72,
     "size:u32@0, op:u32@4, id:u32@8, __reserved:u32@12, flags:u32@16, pasid:u32@20,"
     " iova:u64@24, length:u64@32, uptr:u64@40, out_fault_iova:u64@48,"
     " out_fault_reason:u32@56, out_fault_dev_id:u32@60, last:u32@64, out_events:u32@68"),
    # <linux/vfio.h> (Linux 7.2): the VFIO device cdev ABI of MNT/vfio/devices/vfioN
    ("vfio.h device", "vfio_device_info", 24,
     "argsz:u32@0, flags:u32@4, num_regions:u32@8, num_irqs:u32@12, cap_offset:u32@16, pad:u32@20"),
    ("vfio.h device", "vfio_region_info", 32,
     "argsz:u32@0, flags:u32@4, index:u32@8, cap_offset:u32@12, size:u64@16, offset:u64@24"),
    ("vfio.h device", "vfio_irq_info", 16, "argsz:u32@0, flags:u32@4, index:u32@8, count:u32@12"),
    ("vfio.h device", "vfio_irq_set", 20,
     "argsz:u32@0, flags:u32@4, index:u32@8, start:u32@12, count:u32@16"),
    ("vfio.h device", "vfio_pci_hot_reset_info", 12, "argsz:u32@0, flags:u32@4, count:u32@8"),
    ("vfio.h device", "vfio_pci_hot_reset", 12, "argsz:u32@0, flags:u32@4, count:u32@8"),
    ("vfio.h device", "vfio_device_feature", 8, "argsz:u32@0, flags:u32@4"),
    ("vfio.h device", "vfio_device_ioeventfd", 32,
     "argsz:u32@0, flags:u32@4, offset:u64@8, data:u64@16, fd:s32@24, reserved:u32@28"),
    ("vfio.h cdev", "vfio_device_bind_iommufd", 24,
     "argsz:u32@0, flags:u32@4, iommufd:s32@8, out_devid:u32@12, token_uuid_ptr:u64@16"),
    ("vfio.h cdev", "vfio_device_attach_iommufd_pt", 16,
     "argsz:u32@0, flags:u32@4, pt_id:u32@8, pasid:u32@12"),
    ("vfio.h cdev", "vfio_device_detach_iommufd_pt", 12, "argsz:u32@0, flags:u32@4, pasid:u32@8"),
    ("gmemfs extension: exec", "gmemfs_exec_call", 88,
     "size:u32@0, tid:u32@4, fd:u32@8, cmd:u32@12, arg:u64@16, status:u32@24, flags:u32@28,"
     " value:u64@32, error:s32@40, newfd_flags:u32@44, fd_addr:u64@48, token:u8[32]@56"),
    ("gmemfs extension: exec", "gmemfs_exec_mmap", 48,
     "size:u32@0, tid:u32@4, addr:u64@8, length:u64@16, prot:u32@24, flags:u32@28, fd:u32@32,"
     " error:s32@36, offset:u64@40"),
    ("guest_memfd §2.5 [PROP v8]", "kvm_memory_attributes2", 128,
     "offset:u64@0, address:u64@0, size:u64@8, attributes:u64@16, flags:u64@24,"
     " error_offset:u64@32, reserved:u64[11]@40"),
]

_TYPES = {"u8": ("uint8_t", 1), "u16": ("uint16_t", 2), "u32": ("uint32_t", 4),
          "s32": ("int32_t", 4), "u64": ("uint64_t", 8)}


def parse_fields(spec: str) -> dict[str, tuple[str, int, int]]:
    """'a:u32@0, b:u8[3]@4' -> {path: (cffi type name, offset, size)}."""
    out = {}
    for item in spec.replace("\n", " ").split(","):
        item = item.strip()
        if not item:
            continue
        m = re.fullmatch(r"([\w.]+):(\w+)(?:\[(\d+)\])?@(\d+)", item)
        assert m, f"bad layout item {item!r}"
        path, t, n, off = m.group(1), m.group(2), m.group(3), int(m.group(4))
        cname, size = _TYPES[t]
        if n:
            cname, size = f"{cname}[{n}]", size * int(n)
        assert path not in out, f"duplicate field {path}"
        out[path] = (cname, off, size)
    return out


def cffi_leaves(ctype, prefix="", base=0):
    """Flatten a cffi struct type: {path: (type cname, absolute offset, size)}.

    cffi already lifts members of anonymous unions into the parent; named
    sub-structs (iommu_test_cmd's union members) are descended into."""
    out = {}
    for name, f in ctype.fields:
        off = base + f.offset
        if f.type.kind in ("struct", "union"):
            out.update(cffi_leaves(f.type, f"{prefix}{name}.", off))
        else:
            out[prefix + name] = (f.type.cname, off, ffi.sizeof(f.type))
    return out


def _layout_id(entry):
    return f"{entry[0]}:{entry[1]}"


@pytest.mark.parametrize("entry", LAYOUTS, ids=_layout_id)
def test_struct_layout_matches_spec(entry):
    """Size and every field (name, type, offset, size) of one struct, as in the spec table."""
    section, name, size, fields = entry
    assert name in abi.STRUCTS, f"{section}: struct {name} missing from uapi.h"
    assert abi.sizeof(name) == size, f"{section}: sizeof(struct {name})"
    expected = parse_fields(fields)
    actual = cffi_leaves(ffi.typeof(abi.ctype_name(name)))
    assert sorted(actual) == sorted(expected), f"{section}: field set of struct {name}"
    for path, (cname, off, fsize) in expected.items():
        assert actual[path] == (cname, off, fsize), f"{section}: {name}.{path}"
        assert abi.offsetof(name, path) == off
    # The uAPI has no implicit padding (every gap is a __reserved field) except
    # iommu_test_cmd's tail (68..72, §10.1); union members may fill each
    # other's gaps.  Guards the transcription above against a dropped field.
    covered = set()
    for _, off, fsize in expected.values():
        covered.update(range(off, off + fsize))
    holes = sorted(set(range(size)) - covered)
    # vfio_iommu_type1_info has tail padding 20..24 (named `pad` only since Linux 6.x
    # uAPI headers newer than Debian 12's; declared unnamed so either system vfio.h fits)
    expected_holes = {"iommu_test_cmd": [68, 69, 70, 71],
                      "vfio_iommu_type1_info": [20, 21, 22, 23]}.get(name, [])
    assert holes == expected_holes, f"{section}: padding bytes {holes} in {name}"


def test_every_header_struct_has_a_spec_layout():
    """uapi.h has no struct this test does not check (add new ones to LAYOUTS)."""
    assert sorted(abi.STRUCTS) == sorted(e[1] for e in LAYOUTS)


def test_iommu_test_cmd_union_members_start_at_16():
    """§10.1: the per-op union occupies bytes 16..64; `last` follows it at 64."""
    members = {p.split(".")[0] for p in parse_fields(TEST_CMD_UNION)}
    fields = dict(ffi.typeof("struct iommu_test_cmd").fields)
    assert members == {n for n, f in fields.items() if f.type.kind == "struct"}
    for m in members:
        assert abi.offsetof("iommu_test_cmd", m) == 16, m
        assert ffi.sizeof(fields[m].type) <= 48, m
    assert max(ffi.sizeof(fields[m].type) for m in members) == 48  # dirty
    assert abi.offsetof("iommu_test_cmd", "last") == 64
    assert abi.sizeof("iommu_test_cmd") == 72


# --------------------------------------------------------------------------
# command numbers

# iommufd.md §2.1: (name, nr, struct, kernel size, min size, field ending the min size)
IOMMUFD_COMMANDS = [
    ("IOMMU_DESTROY", 0x80, "iommu_destroy", 8, 8, "id"),
    ("IOMMU_IOAS_ALLOC", 0x81, "iommu_ioas_alloc", 12, 12, "out_ioas_id"),
    ("IOMMU_IOAS_ALLOW_IOVAS", 0x82, "iommu_ioas_allow_iovas", 24, 24, "allowed_iovas"),
    ("IOMMU_IOAS_COPY", 0x83, "iommu_ioas_copy", 40, 40, "src_iova"),
    ("IOMMU_IOAS_IOVA_RANGES", 0x84, "iommu_ioas_iova_ranges", 32, 32, "out_iova_alignment"),
    ("IOMMU_IOAS_MAP", 0x85, "iommu_ioas_map", 40, 40, "iova"),
    ("IOMMU_IOAS_UNMAP", 0x86, "iommu_ioas_unmap", 24, 24, "length"),
    ("IOMMU_OPTION", 0x87, "iommu_option", 24, 24, "val64"),
    ("IOMMU_VFIO_IOAS", 0x88, "iommu_vfio_ioas", 12, 12, "__reserved"),
    ("IOMMU_HWPT_ALLOC", 0x89, "iommu_hwpt_alloc", 48, 24, "__reserved"),
    ("IOMMU_GET_HW_INFO", 0x8a, "iommu_hw_info", 40, 32, "__reserved"),
    ("IOMMU_HWPT_SET_DIRTY_TRACKING", 0x8b, "iommu_hwpt_set_dirty_tracking", 16, 16, None),
    ("IOMMU_HWPT_GET_DIRTY_BITMAP", 0x8c, "iommu_hwpt_get_dirty_bitmap", 48, 48, "data"),
    ("IOMMU_HWPT_INVALIDATE", 0x8d, "iommu_hwpt_invalidate", 32, 32, None),
    ("IOMMU_FAULT_QUEUE_ALLOC", 0x8e, "iommu_fault_alloc", 16, 16, "out_fault_fd"),
    ("IOMMU_IOAS_MAP_FILE", 0x8f, "iommu_ioas_map_file", 40, 40, "iova"),
    ("IOMMU_VIOMMU_ALLOC", 0x90, "iommu_viommu_alloc", 40, 24, "out_viommu_id"),
    ("IOMMU_VDEVICE_ALLOC", 0x91, "iommu_vdevice_alloc", 24, 24, "virt_id"),
    ("IOMMU_IOAS_CHANGE_PROCESS", 0x92, "iommu_ioas_change_process", 8, 8, None),
    ("IOMMU_VEVENTQ_ALLOC", 0x93, "iommu_veventq_alloc", 32, 28, "out_veventq_fd"),
    ("IOMMU_HW_QUEUE_ALLOC", 0x94, "iommu_hw_queue_alloc", 40, 40, "length"),
    ("IOMMU_TEST_CMD", 0xa0, "iommu_test_cmd", 72, 68, "last"),
]

# iommufd.md §9 (VFIO type1 compat, _IO(';', 100 + n))
VFIO_COMMANDS = [
    ("VFIO_GET_API_VERSION", 0x3b64), ("VFIO_CHECK_EXTENSION", 0x3b65), ("VFIO_SET_IOMMU", 0x3b66),
    ("VFIO_IOMMU_GET_INFO", 0x3b70), ("VFIO_IOMMU_MAP_DMA", 0x3b71),
    ("VFIO_IOMMU_UNMAP_DMA", 0x3b72), ("VFIO_IOMMU_ENABLE", 0x3b73),
    ("VFIO_IOMMU_DISABLE", 0x3b74), ("VFIO_IOMMU_DIRTY_PAGES", 0x3b75),
]

# guest_memfd.md §1.1: (name, direction, nr, struct or byte size, value in the spec table)
KVM_COMMANDS = [
    ("KVM_CREATE_GUEST_MEMFD", "rw", 0xd4, "kvm_create_guest_memfd", 0xC040AED4),
    ("KVM_SET_USER_MEMORY_REGION2", "w", 0x49, "kvm_userspace_memory_region2", 0x40A0AE49),
    ("KVM_SET_USER_MEMORY_REGION", "w", 0x46, "kvm_userspace_memory_region", 0x4020AE46),
    ("KVM_SET_MEMORY_ATTRIBUTES", "w", 0xd2, "kvm_memory_attributes", 0x4020AED2),
    ("KVM_PRE_FAULT_MEMORY", "rw", 0xd5, 64, 0xC040AED5),
    ("KVM_CHECK_EXTENSION", "none", 0x03, 0, 0xAE03),
    ("KVM_CREATE_VM", "none", 0x01, 0, 0xAE01),
    ("KVM_RUN", "none", 0x80, 0, 0xAE80),
    ("KVM_SET_MEMORY_ATTRIBUTES2", "rw", 0xd2, "kvm_memory_attributes2", 0xC080AED2),
]


@pytest.mark.parametrize("name,nr,sname,ksize,minsize,minfield", IOMMUFD_COMMANDS,
                         ids=[c[0] for c in IOMMUFD_COMMANDS])
def test_iommufd_command(name, nr, sname, ksize, minsize, minfield):
    """iommufd.md §2.1: cmd == (0x3b << 8) | nr == _IO(';', nr); struct and min size."""
    cmd = getattr(abi, name)
    assert cmd == (0x3b << 8) | nr
    assert cmd == abi._IO(abi.IOMMUFD_TYPE, nr) == abi._IO(ord(";"), nr)
    assert abi._IOC_DIR(cmd) == abi._IOC_NONE and abi._IOC_SIZE(cmd) == 0
    assert abi._IOC_TYPE(cmd) == 0x3b and abi._IOC_NR(cmd) == nr
    assert abi.sizeof(sname) == ksize
    if minfield is None:
        assert minsize == ksize
    else:
        _, off, fsize = cffi_leaves(ffi.typeof(abi.ctype_name(sname)))[minfield]
        assert off + fsize == minsize
    if name != "IOMMU_TEST_CMD":
        assert getattr(abi, "IOMMUFD_CMD_" + name[len("IOMMU_"):]) == nr


def test_iommufd_cmd_base_and_type():
    assert abi.IOMMUFD_TYPE == ord(";") == 0x3b
    assert abi.IOMMUFD_CMD_BASE == 0x80
    assert abi.IOMMU_TEST_CMD == abi._IO(abi.IOMMUFD_TYPE, abi.IOMMUFD_CMD_BASE + 32)
    nrs = sorted(v for k, v in abi.CONSTANTS.items()
                 if k.startswith("IOMMUFD_CMD_") and k != "IOMMUFD_CMD_BASE")
    assert nrs == list(range(0x80, 0x95)), "iommufd §2.1: nr 0x80..0x94, no gap, no duplicate"


@pytest.mark.parametrize("name,value", VFIO_COMMANDS, ids=[c[0] for c in VFIO_COMMANDS])
def test_vfio_command(name, value):
    """iommufd.md §9: VFIO type1 numbers, _IO(';', 100 + n)."""
    assert getattr(abi, name) == value
    assert value == abi._IO(0x3b, abi._IOC_NR(value)) and abi._IOC_NR(value) >= 100


@pytest.mark.parametrize("name,direction,nr,size,value", KVM_COMMANDS, ids=[c[0] for c in KVM_COMMANDS])
def test_kvm_command(name, direction, nr, size, value):
    """guest_memfd.md §1.1: the number recomputed from OUR struct size equals the spec value."""
    enc = {"rw": abi._IOWR, "w": abi._IOW, "r": abi._IOR}
    if direction == "none":
        computed = abi._IO(abi.KVMIO, nr)
    else:
        computed = enc[direction](abi.KVMIO, nr, size)  # size: struct name -> sizeof from uapi.h
    assert computed == value
    assert getattr(abi, name) == value


def test_kvmio():
    assert abi.KVMIO == 0xAE


def test_exec_call_number():
    """GMEMFS_EXEC_CALL is _IOWR('G', 1, struct gmemfs_exec_call): FUSE copies
    the struct in and out (restricted ioctl, size-encoded command)."""
    assert abi.GMEMFS_EXEC_CALL == abi._IOWR(ord("G"), 1, "gmemfs_exec_call")
    assert abi.GMEMFS_EXEC_MMAP == abi._IOWR(ord("G"), 2, "gmemfs_exec_mmap")


# --------------------------------------------------------------------------
# constants

EXPECTED_CONSTANTS = {
    "iommufd §4.6": dict(IOMMU_IOAS_MAP_FIXED_IOVA=1, IOMMU_IOAS_MAP_WRITEABLE=2, IOMMU_IOAS_MAP_READABLE=4),
    "iommufd §4.10": dict(IOMMU_OPTION_RLIMIT_MODE=0, IOMMU_OPTION_HUGE_PAGES=1,
                          IOMMU_OPTION_OP_SET=0, IOMMU_OPTION_OP_GET=1),
    "iommufd §5": dict(IOMMU_VFIO_IOAS_GET=0, IOMMU_VFIO_IOAS_SET=1, IOMMU_VFIO_IOAS_CLEAR=2),
    "iommufd §6.1": dict(
        IOMMU_HWPT_ALLOC_NEST_PARENT=1 << 0, IOMMU_HWPT_ALLOC_DIRTY_TRACKING=1 << 1,
        IOMMU_HWPT_FAULT_ID_VALID=1 << 2, IOMMU_HWPT_ALLOC_PASID=1 << 3,
        IOMMU_HWPT_DATA_NONE=0, IOMMU_HWPT_DATA_VTD_S1=1, IOMMU_HWPT_DATA_ARM_SMMUV3=2,
        IOMMU_HWPT_DATA_AMD_GUEST=3,
        IOMMU_VTD_S1_SRE=1 << 0, IOMMU_VTD_S1_EAFE=1 << 1, IOMMU_VTD_S1_WPE=1 << 2,
        IOMMU_HW_INFO_TYPE_NONE=0, IOMMU_HW_INFO_TYPE_DEFAULT=0, IOMMU_HW_INFO_TYPE_INTEL_VTD=1,
        IOMMU_HW_INFO_TYPE_ARM_SMMUV3=2, IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV=3, IOMMU_HW_INFO_TYPE_AMD=4,
        IOMMU_HW_INFO_FLAG_INPUT_TYPE=1 << 0, IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17=1 << 0,
        IOMMU_HW_CAP_DIRTY_TRACKING=1 << 0, IOMMU_HW_CAP_PCI_PASID_EXEC=1 << 1,
        IOMMU_HW_CAP_PCI_PASID_PRIV=1 << 2, IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED=1 << 3,
        IOMMU_HWPT_DIRTY_TRACKING_ENABLE=1, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR=1,
        IOMMU_HWPT_INVALIDATE_DATA_VTD_S1=0, IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3=1,
        IOMMU_VTD_INV_FLAGS_LEAF=1 << 0,
        IOMMU_PGFAULT_FLAGS_PASID_VALID=1 << 0, IOMMU_PGFAULT_FLAGS_LAST_PAGE=1 << 1,
        IOMMU_PGFAULT_PERM_READ=1 << 0, IOMMU_PGFAULT_PERM_WRITE=1 << 1,
        IOMMU_PGFAULT_PERM_EXEC=1 << 2, IOMMU_PGFAULT_PERM_PRIV=1 << 3,
        IOMMUFD_PAGE_RESP_SUCCESS=0, IOMMUFD_PAGE_RESP_INVALID=1,
        IOMMU_VIOMMU_TYPE_DEFAULT=0, IOMMU_VIOMMU_TYPE_ARM_SMMUV3=1, IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV=2,
        IOMMU_VEVENTQ_FLAG_LOST_EVENTS=1 << 0,
        IOMMU_VEVENTQ_TYPE_DEFAULT=0, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3=1, IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV=2,
        IOMMU_HW_QUEUE_TYPE_DEFAULT=0, IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV=1),
    "iommufd §10.2": dict(
        IOMMU_TEST_OP_ADD_RESERVED=1, IOMMU_TEST_OP_MOCK_DOMAIN=2, IOMMU_TEST_OP_MD_CHECK_MAP=3,
        IOMMU_TEST_OP_MD_CHECK_REFS=4, IOMMU_TEST_OP_CREATE_ACCESS=5,
        IOMMU_TEST_OP_DESTROY_ACCESS_PAGES=6, IOMMU_TEST_OP_ACCESS_PAGES=7, IOMMU_TEST_OP_ACCESS_RW=8,
        IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT=9, IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE=10,
        IOMMU_TEST_OP_ACCESS_REPLACE_IOAS=11, IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS=12,
        IOMMU_TEST_OP_DIRTY=13, IOMMU_TEST_OP_MD_CHECK_IOTLB=14, IOMMU_TEST_OP_TRIGGER_IOPF=15,
        IOMMU_TEST_OP_DEV_CHECK_CACHE=16, IOMMU_TEST_OP_TRIGGER_VEVENT=17,
        IOMMU_TEST_OP_PASID_ATTACH=18, IOMMU_TEST_OP_PASID_REPLACE=19, IOMMU_TEST_OP_PASID_DETACH=20,
        IOMMU_TEST_OP_PASID_CHECK_HWPT=21, IOMMU_TEST_OP_DMABUF_GET=22,
        IOMMU_TEST_OP_DMABUF_REVOKE=23, IOMMU_TEST_OP_MD_CHECK_DMABUF=24),
    "iommufd §10.3": dict(
        MOCK_APERTURE_START=1 << 24, MOCK_APERTURE_LAST=(1 << 31) - 1, MOCK_PAGE_SIZE=2048,
        MOCK_HUGE_PAGE_SIZE=512 * 2048,
        MOCK_IOMMUPT_DEFAULT=0, MOCK_IOMMUPT_HUGE=1, MOCK_IOMMUPT_AMDV1=2,
        MOCK_FLAGS_ACCESS_WRITE=1, MOCK_FLAGS_ACCESS_SYZ=0x10000,
        MOCK_ACCESS_RW_WRITE=1, MOCK_ACCESS_RW_SLOW_PATH=4,
        MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES=1,
        MOCK_FLAGS_DEVICE_NO_DIRTY=1, MOCK_FLAGS_DEVICE_PASID=4,
        MOCK_NESTED_DOMAIN_IOTLB_ID_MAX=3, MOCK_NESTED_DOMAIN_IOTLB_NUM=4,
        MOCK_DEV_CACHE_ID_MAX=3, MOCK_DEV_CACHE_NUM=4,
        IOMMU_TEST_PASID_RESERVED=1024, MOCK_PASID_WIDTH=20,
        IOMMU_HW_INFO_TYPE_SELFTEST=0xfeedbeef, IOMMU_HW_INFO_SELFTEST_REGVAL=0xdeadbeef,
        IOMMU_HWPT_DATA_SELFTEST=0xdead, IOMMU_TEST_IOTLB_DEFAULT=0xbadbeef,
        IOMMU_TEST_DEV_CACHE_DEFAULT=0xbaddad,
        IOMMU_HWPT_INVALIDATE_DATA_SELFTEST=0xdeadbeef,
        IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID=0xdadbeef,
        IOMMU_VIOMMU_TYPE_SELFTEST=0xdeadbeef,
        IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST=0xdeadbeef,
        IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID=0xdadbeef,
        IOMMU_VEVENTQ_TYPE_SELFTEST=0xbeefbeef, IOMMU_HW_QUEUE_TYPE_SELFTEST=0xdeadbeef,
        IOMMU_TEST_HW_QUEUE_MAX=2, IOMMU_TEST_INVALIDATE_FLAG_ALL=1),
    "vfio.h (type1 compat, vfio_compat.c)": dict(
        VFIO_API_VERSION=0, VFIO_TYPE1_IOMMU=1, VFIO_SPAPR_TCE_IOMMU=2, VFIO_TYPE1v2_IOMMU=3,
        VFIO_DMA_CC_IOMMU=4, VFIO_EEH=5, VFIO_TYPE1_NESTING_IOMMU=6, VFIO_SPAPR_TCE_v2_IOMMU=7,
        VFIO_NOIOMMU_IOMMU=8, VFIO_UNMAP_ALL=9, VFIO_UPDATE_VADDR=10,
        VFIO_IOMMU_INFO_PGSIZES=1, VFIO_IOMMU_INFO_CAPS=2,
        VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE=1, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL=3,
        VFIO_DMA_MAP_FLAG_READ=1, VFIO_DMA_MAP_FLAG_WRITE=2, VFIO_DMA_MAP_FLAG_VADDR=4,
        VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP=1, VFIO_DMA_UNMAP_FLAG_ALL=2,
        VFIO_DMA_UNMAP_FLAG_VADDR=4),
    "guest_memfd §1.2": dict(
        KVM_CAP_USER_MEMORY2=231, KVM_CAP_MEMORY_FAULT_INFO=232, KVM_CAP_MEMORY_ATTRIBUTES=233,
        KVM_CAP_GUEST_MEMFD=234, KVM_CAP_VM_TYPES=235, KVM_CAP_PRE_FAULT_MEMORY=236,
        KVM_CAP_GUEST_MEMFD_FLAGS=244, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES=250),
    "guest_memfd §1.3": dict(
        GUEST_MEMFD_FLAG_MMAP=1 << 0, GUEST_MEMFD_FLAG_INIT_SHARED=1 << 1,
        KVM_MEM_LOG_DIRTY_PAGES=1, KVM_MEM_READONLY=2, KVM_MEM_GUEST_MEMFD=4,
        KVM_MEMORY_ATTRIBUTE_PRIVATE=1 << 3, KVM_EXIT_MEMORY_FAULT=39,
        KVM_MEMORY_EXIT_FLAG_PRIVATE=1 << 3,
        GMEMFS_GUEST_MEMFD_MAGIC=0x474d454d, GMEMFS_ANON_INODE_FS_MAGIC=0x09041934,
        KVM_X86_DEFAULT_VM=0, KVM_X86_SW_PROTECTED_VM=1, KVM_X86_SEV_VM=2, KVM_X86_SEV_ES_VM=3,
        KVM_X86_SNP_VM=4, KVM_X86_TDX_VM=5),
    "guest_memfd §2.4": dict(GMEMFS_KVM_RUN_EXIT_OFFSET=32),
    "gmemfs extension: DMA": dict(
        GMEMFS_TEST_OP_DMA=0x1000, GMEMFS_DMA_WRITE=1, GMEMFS_DMA_PRIVATE=2,
        GMEMFS_DMA_MAX_LENGTH=64 << 20, GMEMFS_DMA_FAULT_NONE=0, GMEMFS_DMA_FAULT_UNMAPPED=1,
        GMEMFS_DMA_FAULT_PERM=2, GMEMFS_DMA_FAULT_REVOKED=3, GMEMFS_DMA_FAULT_DENIED=4,
        GMEMFS_DMA_FAULT_BACKING=5, GMEMFS_DMA_FAULT_RMP=6, GMEMFS_DMA_FAULT_GPT=7,
        GMEMFS_DMA_FAULT_SEPT=8, GMEMFS_DMA_FAULT_MACHINE_CHECK=9,
        GMEMFS_DMA_FAULT_INVALIDATED=10),
    "gmemfs extension: exec": dict(
        GMEMFS_EXEC_CALL=0xC0584701, GMEMFS_EXEC_MMAP=0xC0304702, GMEMFS_EXEC_PASS=0, GMEMFS_EXEC_DONE=1,
        GMEMFS_EXEC_NEWFD=2, GMEMFS_EXEC_NEWFD_RETURN=1, GMEMFS_EXEC_TOKEN_LEN=32),
    "gmemfs extension: policies": dict(
        GMEMFS_OPTION_GMEM_POLICY=0x1000, GMEMFS_GMEM_POLICY_NONE=0,
        GMEMFS_GMEM_POLICY_REVOKE=1, GMEMFS_GMEM_POLICY_INVALIDATE=2,
        GMEMFS_GMEM_POLICY_MIRROR=3, GMEMFS_GMEM_POLICY_PIN=4),
    # guest_memfd.md §8 (a gmem file on gmemfs reports the FUSE magic)
    "guest_memfd §8": dict(GMEMFS_FUSE_SUPER_MAGIC=0x65735546),
    "guest_memfd §4.3 (fallocate modes)": dict(
        GMEMFS_FALLOC_FL_KEEP_SIZE=0x01, GMEMFS_FALLOC_FL_PUNCH_HOLE=0x02,
        GMEMFS_FALLOC_FL_NO_HIDE_STALE=0x04, GMEMFS_FALLOC_FL_COLLAPSE_RANGE=0x08,
        GMEMFS_FALLOC_FL_ZERO_RANGE=0x10, GMEMFS_FALLOC_FL_INSERT_RANGE=0x20,
        GMEMFS_FALLOC_FL_UNSHARE_RANGE=0x40, GMEMFS_FALLOC_FL_WRITE_ZEROES=0x80),
}

# <linux/vfio.h> (Linux 7.2) device ABI; ours to the edu device
EXPECTED_CONSTANTS["vfio.h device cdev"] = dict(
    VFIO_DEVICE_GET_INFO=0x3b6b, VFIO_DEVICE_GET_REGION_INFO=0x3b6c, VFIO_DEVICE_GET_IRQ_INFO=0x3b6d,
    VFIO_DEVICE_SET_IRQS=0x3b6e, VFIO_DEVICE_RESET=0x3b6f, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO=0x3b70,
    VFIO_DEVICE_PCI_HOT_RESET=0x3b71, VFIO_DEVICE_IOEVENTFD=0x3b74, VFIO_DEVICE_FEATURE=0x3b75,
    VFIO_DEVICE_BIND_IOMMUFD=0x3b76, VFIO_DEVICE_ATTACH_IOMMUFD_PT=0x3b77,
    VFIO_DEVICE_DETACH_IOMMUFD_PT=0x3b78,
    VFIO_DEVICE_FLAGS_RESET=1, VFIO_DEVICE_FLAGS_PCI=2, VFIO_DEVICE_FLAGS_CAPS=0x80,
    VFIO_REGION_INFO_FLAG_READ=1, VFIO_REGION_INFO_FLAG_WRITE=2, VFIO_REGION_INFO_FLAG_MMAP=4,
    VFIO_REGION_INFO_FLAG_CAPS=8,
    VFIO_IRQ_INFO_EVENTFD=1, VFIO_IRQ_INFO_MASKABLE=2, VFIO_IRQ_INFO_AUTOMASKED=4,
    VFIO_IRQ_INFO_NORESIZE=8,
    VFIO_IRQ_SET_DATA_NONE=1, VFIO_IRQ_SET_DATA_BOOL=2, VFIO_IRQ_SET_DATA_EVENTFD=4,
    VFIO_IRQ_SET_ACTION_MASK=8, VFIO_IRQ_SET_ACTION_UNMASK=0x10, VFIO_IRQ_SET_ACTION_TRIGGER=0x20,
    VFIO_IRQ_SET_DATA_TYPE_MASK=7, VFIO_IRQ_SET_ACTION_TYPE_MASK=0x38,
    VFIO_PCI_BAR0_REGION_INDEX=0, VFIO_PCI_ROM_REGION_INDEX=6, VFIO_PCI_CONFIG_REGION_INDEX=7,
    VFIO_PCI_VGA_REGION_INDEX=8, VFIO_PCI_NUM_REGIONS=9, VFIO_PCI_OFFSET_SHIFT=40,
    VFIO_PCI_INTX_IRQ_INDEX=0, VFIO_PCI_MSI_IRQ_INDEX=1, VFIO_PCI_MSIX_IRQ_INDEX=2,
    VFIO_PCI_ERR_IRQ_INDEX=3, VFIO_PCI_REQ_IRQ_INDEX=4, VFIO_PCI_NUM_IRQS=5,
    VFIO_DEVICE_IOEVENTFD_8=1, VFIO_DEVICE_IOEVENTFD_16=2, VFIO_DEVICE_IOEVENTFD_32=4,
    VFIO_DEVICE_IOEVENTFD_64=8, VFIO_DEVICE_IOEVENTFD_SIZE_MASK=0xf,
    VFIO_DEVICE_FEATURE_MASK=0xffff, VFIO_DEVICE_FEATURE_GET=0x10000, VFIO_DEVICE_FEATURE_SET=0x20000,
    VFIO_DEVICE_FEATURE_PROBE=0x40000, VFIO_DEVICE_FEATURE_MIGRATION=1,
    VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE=2, VFIO_DEVICE_FEATURE_DMA_LOGGING_START=6,
    VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP=7, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT=8,
    VFIO_DEVICE_FEATURE_MIG_DATA_SIZE=9, VFIO_DEVICE_BIND_FLAG_TOKEN=1, VFIO_DEVICE_ATTACH_PASID=1,
    VFIO_DEVICE_DETACH_PASID=1,
    GMEMFS_EDU_VENDOR_ID=0x1234, GMEMFS_EDU_DEVICE_ID=0x11e8, GMEMFS_EDU_BAR0_SIZE=0x100000,
    GMEMFS_EDU_DMA_BUF=0x40000, GMEMFS_EDU_DMA_SIZE=4096)

_CONST_PARAMS = [(sec, n, v) for sec, d in EXPECTED_CONSTANTS.items() for n, v in d.items()]


@pytest.mark.parametrize("section,name,value", _CONST_PARAMS, ids=[f"{s}:{n}" for s, n, _ in _CONST_PARAMS])
def test_constant_matches_spec(section, name, value):
    assert name in abi.CONSTANTS, f"{section}: {name} missing from uapi.h"
    assert abi.CONSTANTS[name] == value
    assert getattr(abi, name) == value and name in abi.__all__


def test_every_header_constant_is_checked():
    """No #define in uapi.h escapes the spec checks above (add new ones there)."""
    checked = {n for _, n, _ in _CONST_PARAMS}
    checked |= {c[0] for c in IOMMUFD_COMMANDS} | {c[0] for c in VFIO_COMMANDS} | {c[0] for c in KVM_COMMANDS}
    checked |= {"IOMMU" + "FD_CMD_" + c[0][len("IOMMU_"):] for c in IOMMUFD_COMMANDS if c[0] != "IOMMU_TEST_CMD"}
    checked |= {"IOMMUFD_TYPE", "IOMMUFD_CMD_BASE", "KVMIO"}
    assert sorted(set(abi.CONSTANTS) - checked) == []
    assert sorted(checked - set(abi.CONSTANTS)) == []


def test_constants_are_the_header_defines():
    """CONSTANTS is exactly the set of `#define NAME <int>` lines of uapi.h, parsed independently."""
    text = re.sub(r"/\*.*?\*/", "", Path(abi.HEADER).read_text(), flags=re.S)
    defines = dict(re.findall(r"^\s*#define\s+(\w+)\s+(\S+)\s*$", text, flags=re.M))
    assert {k: int(v, 0) for k, v in defines.items()} == abi.CONSTANTS


def test_header_is_cdef_clean():
    """uapi.h stays parseable by cffi: no includes, conditionals or pragmas."""
    text = re.sub(r"/\*.*?\*/", "", Path(abi.HEADER).read_text(), flags=re.S)
    directives = re.findall(r"^\s*#\s*(\w+)", text, flags=re.M)
    assert set(directives) == {"define"}
    assert Path(abi.INCLUDE_DIR, "gmemfs_uapi.h") == Path(abi.C_HEADER)
    assert Path(abi.C_HEADER).is_file() and os.path.isabs(abi.INCLUDE_DIR)


# --------------------------------------------------------------------------
# helpers of ioctl_abi

def test_new_to_bytes_from_bytes():
    p = abi.new("iommu_ioas_map", size=40, flags=abi.IOMMU_IOAS_MAP_READABLE, ioas_id=7,
                user_va=0x1122334455667788, length=0x2000, iova=0x10000)
    raw = abi.to_bytes(p)
    assert raw == struct.pack("<IIIIQQQ", 40, 4, 7, 0, 0x1122334455667788, 0x2000, 0x10000)
    assert abi.to_bytes(p[0]) == raw
    assert abi.sizeof(p) == 40
    q = abi.from_bytes("struct iommu_ioas_map", raw[:20])  # short: zero-padded
    assert (q.size, q.flags, q.ioas_id, q.length, q.iova) == (40, 4, 7, 0, 0)
    assert q.user_va == 0x55667788
    r = abi.from_bytes("iommu_ioas_map", raw + b"\xff" * 8)  # long: truncated
    assert abi.to_bytes(r) == raw


def test_new_union_members():
    c = abi.new("iommu_test_cmd", size=72, op=abi.IOMMU_TEST_OP_DIRTY, id=3,
                dirty={"flags": 1, "iova": 0x1000, "out_nr_dirty": 9}, last=0xabcd)
    raw = abi.to_bytes(c)
    assert len(raw) == 72
    assert struct.unpack_from("<IIII I4x QQQQQ I", raw) == (72, 13, 3, 0, 1, 0x1000, 0, 0, 0, 9, 0xabcd)
    assert c.add_reserved.length == 0x1000  # dirty.iova seen through another member (both @24)
    h = abi.new("iommu_hw_info", in_data_type=5)
    assert h.out_data_type == 5
    a = abi.new("kvm_memory_attributes2", offset=0x2000, size=0x1000,
                attributes=abi.KVM_MEMORY_ATTRIBUTE_PRIVATE)
    assert a.address == 0x2000
    assert abi.to_bytes(a)[:24] == struct.pack("<QQQ", 0x2000, 0x1000, 8)


def test_offsetof_forms():
    assert abi.offsetof("iommu_test_cmd", "dirty.out_nr_dirty") == 56
    assert abi.offsetof("iommu_test_cmd", "dirty", "out_nr_dirty") == 56
    assert abi.offsetof("struct iommu_hw_info", "out_capabilities") == 32
    with pytest.raises(Exception):
        abi.offsetof("iommu_hw_info", "no_such_field")
    with pytest.raises(Exception):
        abi.sizeof("no_such_struct")


def test_ioc_known_values():
    """Values straight from guest_memfd.md §1.1 (not from our header)."""
    assert abi._IOWR(0xAE, 0xd4, 64) == 0xC040AED4
    assert abi._IOW(0xAE, 0x49, 160) == 0x40A0AE49
    assert abi._IOW(0xAE, 0xd2, 32) == 0x4020AED2
    assert abi._IOWR(0xAE, 0xd2, 128) == 0xC080AED2
    assert abi._IOR(0xAE, 0x01, 8) == 0x8008AE01
    assert abi._IO(0xAE, 0x03) == 0xAE03
    assert abi._IOC_SIZE(0xC080AED2) == 128 and abi._IOC_DIR(0xC080AED2) == 3
    assert abi._IOC_TYPE(0xC080AED2) == 0xAE and abi._IOC_NR(0xC080AED2) == 0xd2
    # the ENOTTY probes of §1.1 differ from the real number
    assert abi._IOWR(0xAE, 0xd4, 16) != abi.KVM_CREATE_GUEST_MEMFD
    assert abi._IOW(0xAE, 0xd4, 64) != abi.KVM_CREATE_GUEST_MEMFD
    with pytest.raises(ValueError):
        abi._IOW(0xAE, 0x100, 8)
    with pytest.raises(ValueError):
        abi._IOW(0xAE, 1, 1 << 14)


@given(d=st.integers(0, 3), t=st.integers(0, 255), nr=st.integers(0, 255), size=st.integers(0, (1 << 14) - 1))
def test_ioc_roundtrip(d, t, nr, size):
    cmd = abi._IOC(d, t, nr, size)
    assert 0 <= cmd < 1 << 32
    assert (abi._IOC_DIR(cmd), abi._IOC_TYPE(cmd), abi._IOC_NR(cmd), abi._IOC_SIZE(cmd)) == (d, t, nr, size)


@settings(max_examples=200)
@given(name=st.sampled_from(sorted(abi.STRUCTS)), data=st.binary(max_size=200))
def test_bytes_roundtrip(name, data):
    size = abi.sizeof(name)
    p = abi.from_bytes(name, data)
    expected = (data + bytes(size))[:size]
    assert abi.to_bytes(p) == expected
    assert abi.to_bytes(abi.from_bytes(name, abi.to_bytes(p))) == expected


# --------------------------------------------------------------------------
# gcc: the same header compiled as C

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")

# Where system kernel uAPI headers are looked up.  Point this at a
# `make headers_install` tree (its usr/include) to check a newer kernel.
SYS_INCLUDE = os.environ.get("GMEMFS_ABI_SYSTEM_INCLUDE", "/usr/include")


def _sys_flags():
    return [] if SYS_INCLUDE == "/usr/include" else ["-I", SYS_INCLUDE]


def _gcc(tmp_path: Path, name: str, source: str, flags=()):
    src = tmp_path / f"{name}.c"
    exe = tmp_path / name
    src.write_text(source)
    cmd = [GCC, "-std=gnu11", "-O0", "-Wall", "-Wextra", "-Werror", *flags, "-o", str(exe), str(src)]
    return exe, subprocess.run(cmd, capture_output=True, text=True)


def compiles(tmp_path: Path, name: str, source: str, flags=()) -> bool:
    return _gcc(tmp_path, name, source, flags)[1].returncode == 0


def compile_c(tmp_path: Path, name: str, source: str, flags=(), run=True, expect_fail=False):
    exe, res = _gcc(tmp_path, name, source, flags)
    if expect_fail:
        assert res.returncode != 0, f"{name}: expected a compile error\n{source}"
        return res.stderr
    assert res.returncode == 0, f"gcc failed for {name}:\n{res.stderr}\n--- source ---\n{source}"
    if not run:
        return ""
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    return out.stdout


def c_struct_lines(name, paths, cname=None):
    """printf lines for the size/alignment of a struct and offset/size of each field path."""
    cname = cname or f"struct {name}"
    lines = [f'printf("S {name} %zu %zu\\n", sizeof({cname}), _Alignof({cname}));']
    for p in paths:
        lines.append(f'printf("F {name} {p} %zu %zu\\n", offsetof({cname}, {p}), '
                     f'sizeof((({cname} *)0)->{p}));')
    return lines


def c_const_lines(names, guard=False):
    out = []
    for n in names:
        line = f'printf("C {n} %llu\\n", (unsigned long long)({n}));'
        out.append(f"#ifdef {n}\n{line}\n#else\nprintf(\"M {n}\\n\");\n#endif" if guard else line)
    return out


def c_program(includes, body_lines):
    inc = "\n".join(f"#include {i}" for i in includes)
    body = textwrap.indent("\n".join(body_lines), "    ")
    return f"#include <stdio.h>\n#include <stddef.h>\n{inc}\n\nint main(void)\n{{\n{body}\n    return 0;\n}}\n"


def parse_output(out: str):
    structs, fields, consts, missing = {}, {}, {}, set()
    for line in out.splitlines():
        kind, *rest = line.split()
        if kind == "S":
            structs[rest[0]] = (int(rest[1]), int(rest[2]))
        elif kind == "F":
            fields[(rest[0], rest[1])] = (int(rest[2]), int(rest[3]))
        elif kind == "C":
            consts[rest[0]] = int(rest[1])
        elif kind == "M":
            missing.add(rest[0])
    return structs, fields, consts, missing


def cffi_layout(name):
    t = ffi.typeof(abi.ctype_name(name))
    leaves = cffi_leaves(t)
    return (ffi.sizeof(t), ffi.alignof(t)), {p: (off, size) for p, (_, off, size) in leaves.items()}


@needs_gcc
def test_gcc_and_cffi_agree(tmp_path):
    """gcc compiling gmemfs_uapi.h gives the same sizes, alignments, offsets and
    constant values as cffi reading uapi.h."""
    body = []
    for name in abi.STRUCTS:
        body += c_struct_lines(name, cffi_layout(name)[1])
    body += c_const_lines(sorted(abi.CONSTANTS))
    out = compile_c(tmp_path, "abi_layout", c_program(['"gmemfs_uapi.h"'], body),
                    ["-I", abi.INCLUDE_DIR])
    structs, fields, consts, _ = parse_output(out)
    assert sorted(structs) == sorted(abi.STRUCTS)
    for name in abi.STRUCTS:
        (size, align), leaves = cffi_layout(name)
        assert structs[name] == (size, align), f"struct {name}: gcc vs cffi (size, align)"
        for p, v in leaves.items():
            assert fields[(name, p)] == v, f"{name}.{p}: gcc (offset, size) vs cffi"
    assert consts == abi.CONSTANTS


@needs_gcc
@pytest.mark.parametrize("std", ["c99", "c11", "gnu11", "c17"])
def test_c_header_standalone(tmp_path, std):
    """gmemfs_uapi.h compiles on its own, twice included, pedantic, without system kvm.h."""
    src = c_program(['"gmemfs_uapi.h"', '"gmemfs_uapi.h"'], [
        "struct iommu_test_cmd c = { .size = sizeof(c), .op = IOMMU_TEST_OP_DIRTY };",
        "c.dirty.iova = 1;",
        'printf("%zu %u\\n", sizeof(c), (unsigned)c.op);'])
    flags = ["-I", abi.INCLUDE_DIR, f"-std={std}", "-pedantic-errors", "-DGMEMFS_UAPI_NO_SYSTEM_KVM_H"]
    assert compile_c(tmp_path, "standalone", src, flags).split() == ["72", "13"]


# --------------------------------------------------------------------------
# coexistence with libc and system kernel headers in C clients

SYS_HEADERS = ["<fcntl.h>", "<sys/vfs.h>", "<linux/falloc.h>", "<linux/magic.h>", "<linux/vfio.h>",
               "<linux/kvm.h>"]


@needs_gcc
@pytest.mark.parametrize("order", ["system-first", "gmemfs-first"])
def test_c_coexists_with_system_headers(tmp_path, order):
    """A client may include libc and kernel headers before or after gmemfs_uapi.h
    (with -Wall -Wextra -Werror) and sees gmemfs' values."""
    have = [h for h in SYS_HEADERS
            if any(Path(d, h.strip("<>")).exists() for d in (SYS_INCLUDE, "/usr/include"))]
    includes = have + ['"gmemfs_uapi.h"'] if order == "system-first" else ['"gmemfs_uapi.h"'] + have
    body = [
        "struct kvm_create_guest_memfd g = { .size = 4096, .flags = GUEST_MEMFD_FLAG_MMAP };",
        "struct kvm_userspace_memory_region r = { .slot = 1 };",
        "struct iommu_ioas_map m = { .size = sizeof(m) };",
        'printf("%zu %zu %zu %#x %#x %#x\\n", sizeof(g), sizeof(r), sizeof(m), '
        "(unsigned)KVM_CREATE_VM, (unsigned)VFIO_IOMMU_MAP_DMA, (unsigned)GMEMFS_FALLOC_FL_PUNCH_HOLE);",
    ]
    out = compile_c(tmp_path, "coexist", c_program(includes, body), ["-I", abi.INCLUDE_DIR, *_sys_flags()])
    assert out.split() == ["64", "32", "40", "0xae01", "0x3b71", "0x2"]


@needs_gcc
def test_c_iommufd_h_guard(tmp_path):
    """<linux/iommufd.h> after gmemfs_uapi.h is a no-op; before it is a clear error.
    (Uses a stand-in linux/iommufd.h, since the real one may not exist here.)"""
    fake = tmp_path / "fake" / "linux"
    fake.mkdir(parents=True)
    (fake / "iommufd.h").write_text(
        "#ifndef _IOMMUFD_H\n#define _IOMMUFD_H\n#error stand-in iommufd.h was not suppressed\n#endif\n")
    flags = ["-I", str(tmp_path / "fake"), "-I", abi.INCLUDE_DIR]
    src = c_program(['"gmemfs_uapi.h"', "<linux/iommufd.h>"], ['printf("%d\\n", IOMMU_IOAS_MAP);'])
    assert compile_c(tmp_path, "after", src, flags).split() == [str(0x3b85)]
    (fake / "iommufd.h").write_text("#ifndef _IOMMUFD_H\n#define _IOMMUFD_H\n#endif\n")
    src = c_program(["<linux/iommufd.h>", '"gmemfs_uapi.h"'], ['printf("%d\\n", IOMMU_IOAS_MAP);'])
    err = compile_c(tmp_path, "before", src, flags, expect_fail=True)
    assert "replaces <linux/iommufd.h>" in err


def _fake_new_kvm_h(tmp_path: Path, gmem_size: int) -> list[str]:
    """A stand-in <linux/kvm.h> shaped like 6.8+ (guest_memfd structs present)."""
    d = tmp_path / f"fakekvm{gmem_size}" / "linux"
    d.mkdir(parents=True)
    (d / "kvm.h").write_text(textwrap.dedent(f"""\
        #ifndef __LINUX_KVM_H
        #define __LINUX_KVM_H
        #include <linux/types.h>
        #define KVMIO 0xAE
        struct kvm_userspace_memory_region {{ __u32 slot; __u32 flags; __u64 guest_phys_addr;
            __u64 memory_size; __u64 userspace_addr; }};
        struct kvm_userspace_memory_region2 {{ __u32 slot; __u32 flags; __u64 guest_phys_addr;
            __u64 memory_size; __u64 userspace_addr; __u64 guest_memfd_offset; __u32 guest_memfd;
            __u32 pad1; __u64 pad2[14]; }};
        struct kvm_memory_attributes {{ __u64 address; __u64 size; __u64 attributes; __u64 flags; }};
        struct kvm_create_guest_memfd {{ __u64 size; __u64 flags; __u64 reserved[{(gmem_size - 16) // 8}]; }};
        #define KVM_SET_USER_MEMORY_REGION _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)
        #define KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
        #define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
        #define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
        #define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)
        #endif
        """))
    return ["-I", str(d.parent), "-I", abi.INCLUDE_DIR]


@needs_gcc
def test_c_coexists_with_newer_kvm_h(tmp_path):
    """With a 6.8+-style <linux/kvm.h> (stand-in) both orders compile, the kernel
    struct names stay usable, and a size disagreement is a compile error."""
    flags = _fake_new_kvm_h(tmp_path, 64)
    body = ["struct kvm_create_guest_memfd g = { .size = 1 };",
            "struct kvm_memory_attributes a = { .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE };",
            "struct kvm_memory_attributes2 a2 = { .offset = 1 };",
            'printf("%zu %zu %zu\\n", sizeof(g), sizeof(a), sizeof(a2));']
    for order in (["<linux/kvm.h>", '"gmemfs_uapi.h"'], ['"gmemfs_uapi.h"', "<linux/kvm.h>"]):
        assert compile_c(tmp_path, "newkvm", c_program(order, body), flags).split() == ["64", "32", "128"]
    flags = _fake_new_kvm_h(tmp_path, 72)
    err = compile_c(tmp_path, "badkvm", c_program(['"gmemfs_uapi.h"'], body), flags, expect_fail=True)
    assert "disagrees with gmemfs on kvm_create_guest_memfd" in err


# --------------------------------------------------------------------------
# against the system's own kernel headers

def _linux_version_code() -> int | None:
    p = Path(SYS_INCLUDE, "linux/version.h")
    m = re.search(r"LINUX_VERSION_CODE\s+(\d+)", p.read_text()) if p.exists() else None
    return int(m.group(1)) if m else None


def _linux_version() -> str:
    v = _linux_version_code()
    if v is None:
        return "unknown version"
    return f"{v >> 16}.{(v >> 8) & 0xff} (LINUX_VERSION_CODE {v})"


def _section_names(*prefixes):
    return sorted(n for sec, d in EXPECTED_CONSTANTS.items() if sec.startswith(prefixes) for n in d)


IOMMUFD_UAPI_STRUCTS = [e[1] for e in LAYOUTS if e[0].startswith("iommufd §") and not e[0].startswith("iommufd §10")]
IOMMUFD_UAPI_CONSTANTS = (_section_names("iommufd §4", "iommufd §5", "iommufd §6")
                          + [c[0] for c in IOMMUFD_COMMANDS if c[0] != "IOMMU_TEST_CMD"]
                          + ["IOMMUFD_TYPE", "IOMMUFD_CMD_BASE"]
                          + ["IOMMUFD_CMD_" + c[0][len("IOMMU_"):] for c in IOMMUFD_COMMANDS
                             if c[0] != "IOMMU_TEST_CMD"])


def _compare(structs, fields, consts, struct_names, const_names):
    compared = 0
    for name in struct_names:
        if name not in structs:
            continue
        (size, _align), leaves = cffi_layout(name)
        assert structs[name][0] == size, f"sizeof(struct {name}): system header vs uapi.h"
        for p, v in leaves.items():
            assert fields[(name, p)] == v, f"{name}.{p} (offset, size): system header vs uapi.h"
        compared += 1
    for n in const_names:
        if n in consts:
            assert consts[n] == abi.CONSTANTS[n], f"{n}: system header vs uapi.h"
            compared += 1
    return compared


@needs_gcc
def test_system_iommufd_h(tmp_path):
    """uapi.h vs the system <linux/iommufd.h> (structs, enums and command numbers)."""
    hdr = Path(SYS_INCLUDE, "linux/iommufd.h")
    if not hdr.exists():
        pytest.skip(f"{hdr} does not exist: the system kernel headers ({_linux_version()}) predate the "
                    "iommufd uAPI or are not installed; set GMEMFS_ABI_SYSTEM_INCLUDE to a newer "
                    "headers_install tree to run this check")
    probe = compile_c(tmp_path, "probe", c_program(["<linux/iommufd.h>"], [
        "#ifdef IOMMU_HW_QUEUE_ALLOC", 'printf("new\\n");', "#endif"]), _sys_flags())
    if "new" not in probe:
        pytest.skip(f"{hdr} ({_linux_version()}) is older than the 7.2 ABI (no IOMMU_HW_QUEUE_ALLOC)")

    items = [(n, c_struct_lines(n, cffi_layout(n)[1])) for n in IOMMUFD_UAPI_STRUCTS]
    items += [(n, c_const_lines([n])) for n in IOMMUFD_UAPI_CONSTANTS]
    # Items newer than the installed header do not compile: find them one by one.
    src = c_program(["<linux/iommufd.h>"], [line for _, lines in items for line in lines])
    try:
        out = compile_c(tmp_path, "sys_iommufd", src, _sys_flags())
        absent = []
    except AssertionError:
        absent = [n for n, lines in items
                  if not compiles(tmp_path, "one", c_program(["<linux/iommufd.h>"], lines), _sys_flags())]
        kept = [line for n, lines in items if n not in absent for line in lines]
        out = compile_c(tmp_path, "sys_iommufd", c_program(["<linux/iommufd.h>"], kept), _sys_flags())
    structs, fields, consts, _ = parse_output(out)
    compared = _compare(structs, fields, consts, IOMMUFD_UAPI_STRUCTS, IOMMUFD_UAPI_CONSTANTS)
    assert compared > 0
    if absent:
        msg = f"compared {compared} items; not in {hdr} ({_linux_version()}): {', '.join(absent)}"
        # a 7.2+ header must have all of them: then a missing name is our bug
        assert (_linux_version_code() or 0) < (7 << 16 | 2 << 8), msg
        pytest.xfail(msg)


KVM_STRUCT_GUARDS = {  # struct -> macro that exists iff the system header has the struct
    "kvm_userspace_memory_region": "KVM_SET_USER_MEMORY_REGION",
    "kvm_userspace_memory_region2": "KVM_SET_USER_MEMORY_REGION2",
    "kvm_memory_attributes": "KVM_SET_MEMORY_ATTRIBUTES",
    "kvm_create_guest_memfd": "KVM_CREATE_GUEST_MEMFD",
    "kvm_memory_attributes2": "KVM_SET_MEMORY_ATTRIBUTES2",  # [PROP]: compared if it ever appears
}
KVM_CONSTANTS = sorted(n for n in abi.CONSTANTS if n.startswith(("KVM", "GUEST_MEMFD_")))


@pytest.fixture(scope="module")
def system_kvm(tmp_path_factory):
    if GCC is None:
        pytest.skip("gcc is not installed")
    if not Path(SYS_INCLUDE, "linux/kvm.h").exists():
        pytest.skip(f"no {SYS_INCLUDE}/linux/kvm.h")
    tmp = tmp_path_factory.mktemp("syskvm")
    body = []
    for name, guard in KVM_STRUCT_GUARDS.items():
        body += [f"#ifdef {guard}", *c_struct_lines(name, cffi_layout(name)[1]), "#endif"]
    body += ['printf("R exit %zu\\n", offsetof(struct kvm_run, mmio));']
    body += ["#ifdef KVM_EXIT_MEMORY_FAULT",
             *[f'printf("R {f} %zu %zu\\n", offsetof(struct kvm_run, memory_fault.{f}), '
               f"sizeof(((struct kvm_run *)0)->memory_fault.{f}));" for f in ("flags", "gpa", "size")],
             "#endif"]
    body += c_const_lines(KVM_CONSTANTS, guard=True)
    out = compile_c(tmp, "sys_kvm", c_program(["<linux/kvm.h>"], body), _sys_flags())
    run = {}
    for line in out.splitlines():
        if line.startswith("R "):
            _, key, *vals = line.split()
            run[key] = tuple(int(v) for v in vals)
    return parse_output(out) + (run,)


def test_system_kvm_h_common(system_kvm):
    """Everything the system <linux/kvm.h> has in common with uapi.h matches:
    KVMIO, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_RUN, KVM_SET_USER_MEMORY_REGION
    and its struct, KVM_MEM_* flags, the kvm_run exit-union offset, and any
    guest_memfd item a newer header has."""
    structs, fields, consts, missing, run = system_kvm
    for must in ("KVMIO", "KVM_CREATE_VM", "KVM_CHECK_EXTENSION", "KVM_RUN", "KVM_SET_USER_MEMORY_REGION"):
        assert must in consts, f"{must} not found in the system <linux/kvm.h>"
    assert "kvm_userspace_memory_region" in structs
    compared = _compare(structs, fields, consts, KVM_STRUCT_GUARDS, KVM_CONSTANTS)
    assert compared >= 7
    assert run["exit"] == (abi.GMEMFS_KVM_RUN_EXIT_OFFSET,)


def test_system_kvm_h_guest_memfd(system_kvm):
    """guest_memfd.md §1/§2 items merged in 6.8+ vs the system <linux/kvm.h>."""
    structs, fields, consts, missing, run = system_kvm
    if "kvm_create_guest_memfd" not in structs:
        pytest.skip(f"system <linux/kvm.h> ({_linux_version()}) has no KVM_CREATE_GUEST_MEMFD / "
                    "struct kvm_create_guest_memfd (merged in Linux 6.8)")
    for name in ("kvm_create_guest_memfd", "kvm_userspace_memory_region2", "kvm_memory_attributes"):
        assert name in structs, f"{name} missing from a 6.8+ <linux/kvm.h>"
    for n in ("KVM_CREATE_GUEST_MEMFD", "KVM_SET_USER_MEMORY_REGION2", "KVM_CAP_GUEST_MEMFD",
              "KVM_MEM_GUEST_MEMFD", "KVM_MEMORY_ATTRIBUTE_PRIVATE", "KVM_EXIT_MEMORY_FAULT"):
        assert consts.get(n) == abi.CONSTANTS[n], n
    (_, _), leaves = cffi_layout("gmemfs_kvm_memory_fault")
    for f in ("flags", "gpa", "size"):
        off, size = run[f]
        assert (off - abi.GMEMFS_KVM_RUN_EXIT_OFFSET, size) == leaves[f], f"kvm_run.memory_fault.{f}"


@needs_gcc
def test_system_vfio_falloc_magic(tmp_path):
    """VFIO numbers (§9), fallocate modes and statfs magics vs <linux/vfio.h>,
    <linux/falloc.h> and <linux/magic.h> where they define them."""
    present = [h for h in ("linux/vfio.h", "linux/falloc.h", "linux/magic.h") if Path(SYS_INCLUDE, h).exists()]
    if not present:
        pytest.skip(f"none of linux/vfio.h, linux/falloc.h, linux/magic.h under {SYS_INCLUDE}")
    ours = {c[0]: c[0] for c in VFIO_COMMANDS}
    ours.update({n: n for n in EXPECTED_CONSTANTS["vfio.h device cdev"] if n.startswith("VFIO_")
                 and n != "VFIO_PCI_OFFSET_SHIFT"})
    ours.update({n: n[len("GMEMFS_"):] for n in abi.CONSTANTS
                 if n.startswith(("GMEMFS_FALLOC_FL_",)) or n.endswith("_MAGIC")})
    body = []
    for our, theirs in ours.items():
        body += [f"#ifdef {theirs}", f'printf("C {our} %llu\\n", (unsigned long long)({theirs}));',
                 "#else", f'printf("M {our}\\n");', "#endif"]
    out = compile_c(tmp_path, "sys_misc", c_program([f"<{h}>" for h in present], body), _sys_flags())
    _, _, consts, missing = parse_output(out)
    assert len(consts) >= 5, f"almost nothing to compare (missing: {sorted(missing)})"
    for n, v in consts.items():
        assert v == abi.CONSTANTS[n], f"{n}: system header vs uapi.h"
