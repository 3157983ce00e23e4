"""gmemfs: a FUSE filesystem emulating guest_memfd and iommufd descriptors."""
