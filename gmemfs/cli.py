"""gmemfs command line.

    gmemfs mount MOUNTPOINT [-f|--foreground] [--debug] [--log-file F] [-o OPT[,OPT...]]
    gmemfs umount MOUNTPOINT
    gmemfs exec [--mount MNT] [-o OPT[,OPT...]] [--debug] [--log-file F] [--] PROG ARGS...

Without -f, ``mount`` returns once the mount is ready (the server keeps running
in the background); the exit status says whether it worked, and a mount that
cannot happen says why.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys

# -o options that are gmemfs's own; everything else goes to the FUSE mount
GMEMFS_OPTIONS = {"policy", "platform", "tdx_shared_bit", "cca_shared_bit", "strict",
                  "vfio_devices"}


def split_options(opts: list[str]):
    own, fuse = {}, []
    for group in opts:
        for opt in group.split(","):
            opt = opt.strip()
            if not opt:
                continue
            key, eq, value = opt.partition("=")
            if key in GMEMFS_OPTIONS:
                own[key] = value if eq else "1"
            else:
                fuse.append(opt)
    return own, fuse


def _setup_logging(debug: bool, log_file: str | None):
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s gmemfs[%(process)d] %(levelname)s "
                                           "%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def run_server(mountpoint: str, own_opts: dict, fuse_opts: list[str], debug: bool,
               ready_fd: int | None = None, detached_log: bool = False) -> int:
    import trio
    from gmemfs import fuse_ll
    from gmemfs.fs import GmemFS

    def on_ready():
        if ready_fd is not None:
            os.write(ready_fd, b"ok\n")
            os.close(ready_fd)
            # a background server lets go of the terminal (or of the pipes of
            # whoever ran `gmemfs mount`): its log goes to --log-file, if any
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 1)
            if not detached_log:
                os.dup2(devnull, 2)
            os.close(devnull)

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # every open iommufd context, held host file and pidfd is an fd here
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    # until the trio loop takes over signals: SIGTERM unwinds like SIGINT, so
    # the finally below unmounts
    signal.signal(signal.SIGTERM, terminate)
    try:
        fs = GmemFS({"on_ready": on_ready, **own_opts})   # ValueError: bad -o policy=... etc.
        session = fuse_ll.Session(fs, mountpoint, mount_options=fuse_opts, debug=debug)
        fs.session = session
        session.mount()
    except (fuse_ll.MountError, ValueError) as e:
        if ready_fd is not None:
            os.write(ready_fd, f"error: {e}\n".encode())
        print(f"gmemfs: {e}", file=sys.stderr)
        return 1
    logging.getLogger("gmemfs").info("mounted on %s", session.mountpoint)
    # the request path allocates a few short-lived objects per request and
    # makes no reference cycles: collect rarely, and never scan what start-up
    # left behind (fewer multi-microsecond pauses in the tail of the round trip)
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 50, 100)
    try:
        trio.run(session.serve)
    except KeyboardInterrupt:
        pass
    finally:
        session.unmount()
        logging.getLogger("gmemfs").info("unmounted %s", session.mountpoint)
    return 0


def cmd_mount(args) -> int:
    own, fuse = split_options(args.options or [])
    if args.vfio_devices is not None:
        own["vfio_devices"] = str(args.vfio_devices)
    _setup_logging(args.debug, args.log_file)
    if args.foreground:
        return run_server(args.mountpoint, own, fuse, args.debug)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)
        rc = 1
        try:
            rc = run_server(args.mountpoint, own, fuse, args.debug, ready_fd=w,
                            detached_log=bool(args.log_file))
        finally:
            os._exit(rc)
    os.close(w)
    msg = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        msg += chunk
        if msg.endswith(b"\n"):
            break
    os.close(r)
    text = msg.decode(errors="replace").strip()
    if text == "ok":
        print(f"gmemfs: mounted on {os.path.abspath(args.mountpoint)} (server pid {pid})")
        return 0
    if not text.startswith("error:"):
        _, status = os.waitpid(pid, 0)
        text = f"error: the server exited before the mount was ready (status {status})"
    print(f"gmemfs: {text[6:].strip()}", file=sys.stderr)
    return 1


def cmd_umount(args) -> int:
    return subprocess.call(["fusermount3", "-u", args.mountpoint])


def cmd_exec(args) -> int:
    from gmemfs import exec as gexec
    _setup_logging(args.debug, args.log_file)
    return gexec.run(args)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gmemfs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mount", help="mount gmemfs on MOUNTPOINT")
    m.add_argument("mountpoint")
    m.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground (default: return once mounted)")
    m.add_argument("--debug", action="store_true",
                   help="log every ioctl: decoded command, caller, result errno")
    m.add_argument("--log-file", help="log here instead of stderr")
    m.add_argument("--vfio-devices", type=int, metavar="N",
                   help="emulated VFIO PCI devices (QEMU's edu) at MNT/vfio/devices/vfio0.. "
                        "(default 1; 0: no MNT/vfio)")
    m.add_argument("-o", dest="options", action="append", metavar="OPT[,OPT...]",
                   help="mount options: allow_other, ... and gmemfs options "
                        "(policy=, platform=, ...)")
    m.set_defaults(func=cmd_mount)
    u = sub.add_parser("umount", help="unmount (fusermount3 -u)")
    u.add_argument("mountpoint")
    u.set_defaults(func=cmd_umount)
    x = sub.add_parser("exec", help="run a program with /dev/iommu and /dev/kvm served by gmemfs",
                       description="Run PROG (and its threads and children) under a seccomp "
                       "supervisor: open(\"/dev/iommu\") and open(\"/dev/kvm\") get fds on "
                       "MNT/iommu and MNT/kvm, and the ioctls whose kernel form returns a new fd "
                       "work. Without --mount, a private gmemfs is mounted for PROG's lifetime. "
                       "The exit status is PROG's.")
    x.add_argument("--mount", metavar="MNT", help="an existing gmemfs mount to use")
    x.add_argument("-o", dest="options", action="append", metavar="OPT[,OPT...]",
                   help="options of the private mount (policy=, platform=, ...)")
    x.add_argument("--debug", action="store_true", help="log every decision of the supervisor "
                   "(and every ioctl of a private mount)")
    x.add_argument("--log-file", help="log here instead of stderr")
    x.add_argument("argv", nargs=argparse.REMAINDER, metavar="PROG ARGS")
    x.set_defaults(func=cmd_exec)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
