"""Emulated PCI devices (models; no FUSE): a config space and QEMU's edu."""
