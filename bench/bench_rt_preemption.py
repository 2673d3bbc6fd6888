"""How long a busy SCHED_FIFO thread is preempted when an ordinary task waits on its CPU.

On kernels with the fair deadline server (Linux 6.12 and later), ordinary (CFS) tasks that wait get
50 ms of every second, preempting every real-time thread on that CPU; `sched_rt_runtime_us` no longer
decides it. The stack's simulator and policy are SCHED_FIFO, so a stall of this size stops both
(docs/startup/README.md). This pins a busy SCHED_FIFO 99 thread and a busy ordinary process to one
CPU for --seconds and prints the gaps in the real-time thread's run (JSON). Needs CAP_SYS_NICE.

    python bench/bench_rt_preemption.py [--cpu 1] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0, help="how long the real-time thread runs")
    ap.add_argument("--gap-ms", type=float, default=2.0, help="a pause longer than this counts")
    args = ap.parse_args()
    ordinary = subprocess.Popen(  # the waiting ordinary task, busy on the same CPU
        ["taskset", "-c", str(args.cpu), sys.executable, "-c", "while True: pass"]
    )
    try:
        time.sleep(0.2)
        os.sched_setaffinity(0, {args.cpu})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(99))
        gaps, end = [], time.perf_counter() + args.seconds
        last = time.perf_counter()
        while last < end:  # busy: only preemption makes a gap
            now = time.perf_counter()
            if now - last > args.gap_ms / 1e3:
                gaps.append(round((now - last) * 1e3, 1))
            last = now
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    finally:
        ordinary.kill()
        ordinary.wait()
    print(
        json.dumps(
            {
                "kernel": os.uname().release,
                "sched_rt_runtime_us": int(Path("/proc/sys/kernel/sched_rt_runtime_us").read_text()),
                "seconds": args.seconds,
                "gaps_over_gap_ms": len(gaps),
                "longest_gap_ms": max(gaps, default=0.0),
                "gaps_ms": gaps[:20],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
