"""End to end: the families of issue 16 from a C client on a real mount
(tests/c/iommu_conformance.c). Each expectation names its kernel rule; the
rules are in docs/IOMMUFD_KERNEL_NOTES.md with their source files."""

import subprocess

EXPECTED = {
    # drivers/iommu/iommufd/vfio_compat.c
    "vfio_api_version": "0",                 # VFIO_API_VERSION
    "vfio_ext_type1v2": "1",
    "vfio_ext_spapr": "0",
    "vfio_map_short_argsz": "EINVAL",        # argsz < minsz before the compat IOAS
    "vfio_map_no_ioas": "ENODEV",            # get_compat_ioas
    "vfio_ioas_get_none": "ENODEV",          # GET does not create one (get_compat_ioas)
    "vfio_ioas_set": "ok",
    "vfio_set_iommu_type1v2": "ok",
    "vfio_set_iommu_spapr": "EINVAL",
    "vfio_map_unknown_flag": "EINVAL",
    "vfio_map": "ok",                        # always a fixed IOVA
    "vfio_map_overlap": "EEXIST",            # iopt_map_user_pages on a used IOVA
    "vfio_get_info_16": "ok",                # minsz 16
    "vfio_info_argsz": str(24 + 12 + 16 + 16),  # info + DMA_AVAIL + IOVA_RANGE(1)
    "vfio_info_untouched_after_16": "1",     # copy_to_user of min(argsz, 24)
    "vfio_get_info_full": "ok",
    "vfio_info_cap_offset": "24",
    "vfio_info_cap0": "3",                   # VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL first
    "vfio_info_cap1": "1",                   # then IOVA_RANGE
    "vfio_unmap_straddle": "ENOENT",         # TYPE1v2: no splitting
    "vfio_unmap_straddle_size": "0",         # size copied back on failure
    "vfio_unmap_dirty_flag": "EINVAL",       # GET_DIRTY_BITMAP unsupported
    "vfio_unmap_all_with_iova": "EINVAL",    # UNMAP_ALL needs iova = size = 0
    "vfio_unmap": "ok",
    "vfio_unmap_size": str(2 * 4096),
    "vfio_unmap_empty": "ok",                # nothing in range: success, 0 bytes
    "vfio_unmap_empty_size": "0",
    "vfio_dirty_pages": "ENOTTY",
    # drivers/iommu/iommufd/viommu.c + selftest.c
    "nest_parent": "ok",
    "viommu_short_size": "EINVAL",           # below the last mandatory member
    "viommu_flags": "EOPNOTSUPP",            # flags before the device lookup
    "viommu_type_default": "EOPNOTSUPP",
    "viommu_unknown_dev": "ENOENT",
    "viommu_unknown_type": "EOPNOTSUPP",     # the driver's vIOMMU type
    "viommu_hwpt_is_ioas": "ENOENT",         # wrong object type: a paging-HWPT lookup
    "viommu_not_nest_parent": "EINVAL",
    "viommu_alloc": "ok",
    "viommu_out_data": "0x1234",             # mock_viommu_init: out_data = in_data
    "viommu_mmap_length": str(2 * 4096),     # two pages of mmap region
    "vdevice_unknown_viommu": "ENOENT",
    "vdevice_viommu_is_ioas": "ENOENT",      # wrong object type
    "vdevice_unknown_dev": "ENOENT",
    "vdevice_alloc": "ok",
    "vdevice_again": "EEXIST",               # one vDEVICE per device
    "nested_on_viommu": "ok",
    "nested_on_viommu_data_too_long": "EINVAL",   # iommu_copy_struct_from_user
    "dev_cache_default": "ok",               # IOMMU_TEST_DEV_CACHE_DEFAULT
    "viommu_invalidate": "ok",
    "viommu_invalidate_done": "1",
    "dev_cache_cleared": "ok",
    "viommu_invalidate_unknown_vdev": "EINVAL",
    "viommu_invalidate_unknown_vdev_done": "0",   # entry_num written back on failure
    "hw_queue_unmapped": "ENOENT",           # the internal access finds no area
    "hw_queue_len0": "EINVAL",
    "hw_queue_overflow": "EOVERFLOW",
    "hw_queue_index_2": "EINVAL",            # mock: index >= 2
    "hw_queue_index_1_first": "EIO",         # mock: index - 1 must exist
    "hw_queue_0": "ok",
    "hw_queue_0_again": "EEXIST",
    "hw_queue_1": "ok",
    "unmap_under_hw_queue": "EBUSY",         # the access locks the areas
    "destroy_hw_queue_0_in_use": "EBUSY",    # queue 1 holds queue 0
    "veventq_depth0": "EINVAL",              # eventq.c checks before the fd
    "veventq_fd": "EOPNOTSUPP",              # FUSE cannot install an fd (issue 12)
    "destroy_parent_in_use": "EBUSY",        # the vIOMMU holds its parent
    "destroy_viommu_in_use": "EBUSY",        # the vDEVICE holds the vIOMMU
    "destroy_vdevice": "ok",
    "destroy_vdevice_again": "ENOENT",
    "destroyed_id_reused": "1",              # IOMMU_DESTROY frees the ID (lowest free)
    "vdevice_realloc": "ok",
    "destroy_hw_queue_1": "ok",
    "destroy_hw_queue_0": "ok",
    "unmap_after_hw_queue": "ok",
    "unbind_device_with_vdevice": "ok",      # device.c: the vDEVICE is aborted
    "destroy_tombstone": "ENOENT",           # iommufd_object_tombstone_user
    "tombstone_id_reused": "0",              # the ID stays reserved until close
    # ids of another context
    "other_ctx_viommu": "ENOENT",
    "other_ctx_vdevice": "ENOENT",
    "other_ctx_hwpt": "ENOENT",
    # device.c iommufd_hwpt_pasid_compat, selftest.c PASID ops
    "pasid_device": "ok",
    "pasid_hwpt": "ok",
    "pasid_attach_non_pasid_hwpt": "EINVAL",
    "pasid_attach_rid_not_compat": "EINVAL",  # the RID's domain is not PASID-compatible
    "rid_replace_pasid_hwpt": "ok",
    "pasid_attach": "ok",
    "pasid_check_hwpt": "ok",
    "rid_replace_non_pasid_hwpt": "EINVAL",  # PASIDs in use: the RID needs ALLOC_PASID
    "pasid_detach": "ok",
    "pasid_check_detached": "ok",
    # hw_pagetable.c iommufd_hwpt_alloc order
    "hwpt_nest_parent_fault": "EOPNOTSUPP",  # before the fault lookup
    "hwpt_unknown_fault": "ENOENT",          # the fault looked up after allocation
    "hwpt_unknown_flag": "EOPNOTSUPP",
    "hwpt_pt_is_device": "EINVAL",           # pt_id of a wrong object type
    # selftest.c iommufd_test_md_check_pa over MAP_FILE (file identity + offset)
    "map_file": "ok",
    "check_map_same_file_offset": "ok",
    "check_map_other_offset": "EINVAL",
    "check_map_other_file": "EINVAL",
    "check_map_unmapped_uptr": "EFAULT",
    "check_map_iova_not_mapped": "EINVAL",
    "check_map_on_ioas_id": "ENOENT",        # get_md_pagetable: a HWPT_PAGING lookup
}


def test_c_client_conformance_families(mount, cc):
    """VFIO compat, vIOMMU/vDEVICE/HW queue, PASID, HWPT_ALLOC order and
    MD_CHECK_MAP over a memfd MAP_FILE area, with the kernel's errno for bad
    input (short size, unknown flags, wrong object type, ids of another
    context, destroy while in use)."""
    exe = cc("iommu_conformance.c")
    out = subprocess.run([str(exe), str(mount.path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    res = dict(ln.split(None, 1) for ln in out.stdout.splitlines())
    rl = {k: res.pop(k) for k in ("cap_sys_resource", "rlimit_set_with_cap_state",
                                  "rlimit_set_bad_value_no_cap", "rlimit_set_no_cap")}
    assert {k: v for k, v in res.items() if EXPECTED.get(k) != v} == {}
    assert res.keys() == EXPECTED.keys()
    # main.c iommufd_option_rlimit_mode: capable(CAP_SYS_RESOURCE) first
    assert rl["rlimit_set_with_cap_state"] == ("ok" if rl["cap_sys_resource"] == "1" else "EPERM")
    assert rl["rlimit_set_bad_value_no_cap"] == "EPERM"
    assert rl["rlimit_set_no_cap"] == "EPERM"
    assert mount.alive()
