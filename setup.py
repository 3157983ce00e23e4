# Everything is in setup.cfg; this file only exists because cffi's
# ``cffi_modules`` keyword (the libfuse3 binding, compiled at install time
# against libfuse3-dev, and the seccomp helpers of ``gmemfs exec``) must be
# passed to setup().
from setuptools import setup

setup(cffi_modules=["gmemfs/_fuse_build.py:ffibuilder", "gmemfs/_exec_build.py:ffibuilder"])
