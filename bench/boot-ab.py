#!/usr/bin/env python3
"""Interleaved A/B of two atoll-hvt builds booting one kernel.

Usage: bench/boot-ab.py TENDER_A TENDER_B KERNEL [RUNS]

Runs `TENDER --stats KERNEL` RUNS times (default 60) for each tender,
alternating, and prints each one's median and p90 wall time and its VM exit
count (the `exits=` of `--stats`). Interleaving puts both under the same
machine load; compare the two lines of one run, not across runs.
"""
import statistics
import subprocess
import sys
import time


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__.strip().splitlines()[2])
    tenders = {"A": sys.argv[1], "B": sys.argv[2]}
    kernel = sys.argv[3]
    runs = int(sys.argv[4]) if len(sys.argv) == 5 else 60
    times = {name: [] for name in tenders}
    exits = {}
    for _ in range(runs):
        for name, tender in tenders.items():
            start = time.perf_counter()
            out = subprocess.run([tender, "--stats", kernel], capture_output=True)
            times[name].append((time.perf_counter() - start) * 1000)
            if out.returncode != 0:
                sys.exit(f"{tender} exited with {out.returncode}: {out.stderr.decode()[-300:]}")
            exits[name] = next((w for w in out.stderr.decode().split() if w.startswith("exits=")), "exits=?")
    for name, tender in tenders.items():
        ms = sorted(times[name])
        print(f"{name} {tender}: median {statistics.median(ms):.2f} ms, p90 {ms[int(len(ms) * 0.9)]:.2f} ms, {exits[name]}")


if __name__ == "__main__":
    main()
