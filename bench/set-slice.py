#!/usr/bin/env python3
"""Sets the EEVDF scheduler slice (Linux 6.12+) of a running process's
threads, by thread name: how the slice table of docs/PERFORMANCE.md
("Short scheduler slices for the I/O thread") was measured before the
tender set its I/O thread's slice itself.

Usage (root):
  bench/set-slice.py PID NAME=NS [NAME=NS ...]   # e.g. 1234 net-io=100000 atoll-hvt=20000000

A NAME of `*` matches every thread not named otherwise; NS=0 restores the
kernel's default. A wrapper that boots a tender and then sets its slices
can stand as a SERVER of bench/http-ab.sh:

  #!/bin/bash
  ( sleep 0.5; bench/set-slice.py $$ net-io=100000 ) &
  exec target/release/atoll-hvt "$@"
"""
import ctypes
import os
import struct
import sys

SYS_SCHED_SETATTR = 314  # x86_64
SCHED_OTHER = 0


def set_slice(tid: int, slice_ns: int) -> None:
    # struct sched_attr, version 0 (48 bytes): size, policy, flags, nice,
    # priority, runtime (the slice, for SCHED_OTHER), deadline, period.
    attr = struct.pack("=IIQiIQQQ", 48, SCHED_OTHER, 0, os.getpriority(os.PRIO_PROCESS, tid), 0, slice_ns, 0, 0)
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_SCHED_SETATTR, tid, buf, 0) != 0:
        raise OSError(ctypes.get_errno(), f"sched_setattr({tid})")


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    pid = int(sys.argv[1])
    wanted = dict(arg.split("=", 1) for arg in sys.argv[2:])
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            name = comm.read().strip()
        slice_ns = wanted.get(name, wanted.get("*"))
        if slice_ns is not None:
            set_slice(int(tid), int(slice_ns))
            print(f"{name} ({tid}): slice {int(slice_ns) or 'default'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
