#!/usr/bin/env python3
"""Runs a command whose io_uring waits fail: a seccomp filter makes every
io_uring_enter(2) that carries IORING_ENTER_EXT_ARG (a wait with an
argument block; plain submissions do not carry it) fail with ENOMEM, the
way a ring that broke for good answers. For the tests of what a program
does when its ring fails, which a healthy kernel never shows.

  failing_waits.py [--ring-fd N] PROGRAM [ARG...]

exec's PROGRAM under the filter; with --ring-fd, only the waits on the
ring whose fd is N fail (one worker of several).

unsupported() says why this machine cannot (not x86_64 or aarch64)."""
import ctypes
import errno
import os
import platform
import struct
import sys

IO_URING_ENTER = 426  # the same number on every architecture
IORING_ENTER_EXT_ARG = 8
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000

# Classic BPF over struct seccomp_data: nr at 0, arch at 4, args[3] (the
# flags of io_uring_enter) at 40, low half first on these little-endian
# machines.
LD_ABS_W, JEQ_K, JSET_K, RET_K = 0x20, 0x15, 0x45, 0x06


def unsupported():
    if platform.machine() not in AUDIT_ARCH:
        return f"no seccomp filter written for {platform.machine()}"
    return ""


def ring_fds(pid):
    """The fds of process `pid` that are io_uring instances: what --ring-fd
    picks from (a program's rings get the same fds in every start with the
    same options)."""
    fds = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == "anon_inode:[io_uring]":
                fds.append(int(name))
        except OSError:  # closed meanwhile
            pass
    return fds


def program(ring_fd=None):
    arch = AUDIT_ARCH[platform.machine()]
    # Each jump's offsets count from the next instruction; every "no" goes
    # to the last one, ALLOW.
    insns = [(LD_ABS_W, 0, 0, 4), (JEQ_K, 0, None, arch)]  # another ABI: allow
    insns += [(LD_ABS_W, 0, 0, 0), (JEQ_K, 0, None, IO_URING_ENTER)]
    if ring_fd is not None:  # args[0], the ring's fd, at 16
        insns += [(LD_ABS_W, 0, 0, 16), (JEQ_K, 0, None, ring_fd)]
    insns += [(LD_ABS_W, 0, 0, 40), (JSET_K, 0, None, IORING_ENTER_EXT_ARG)]
    insns += [(RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOMEM), (RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    allow = len(insns) - 1
    insns = [
        (c, jt, allow - i - 1 if jf is None else jf, k) for i, (c, jt, jf, k) in enumerate(insns)
    ]
    return b"".join(struct.pack("HBBI", *i) for i in insns), len(insns)


def install(ring_fd=None):
    libc = ctypes.CDLL(None, use_errno=True)
    # Declared: an address passed as a plain int would be cut to 32 bits.
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    code, count = program(ring_fd)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HxxxxxxP", count, ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fbuf), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


if __name__ == "__main__":
    argv, ring_fd = sys.argv[1:], None
    if argv[:1] == ["--ring-fd"] and len(argv) > 1 and argv[1].isdigit():
        argv, ring_fd = argv[2:], int(argv[1])
    if not argv or unsupported():
        usage = "usage: failing_waits.py [--ring-fd N] PROGRAM [ARG...]"
        sys.exit(f"failing_waits.py: {unsupported() or usage}")
    install(ring_fd)
    os.execv(argv[0], argv)
