"""Consecutive starts of the main job (`make run`'s stack through `ros2 launch`): does the policy ever
trip its own watchdog? Each start runs for --duration s with the stack probe's report; the policy's
watchdog ticks and the simulator's resets come from the report, and every "-> watchdog" line of the
policy node (which inputs were how old, and the gap between its ticks) is collected.

    python bench/bench_startup.py [--starts 20] [--duration 25] [--world-model] [--out runs/startup.json]
        [--logs runs/startup_logs]
Goal (issue 19): 0 watchdog ticks in 20 consecutive starts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

from rwm_ros.launch_stack import (  # noqa: E402
    launch_command,
    node_exits,
    source_env,
    stack_report,
    stop_process_group,
)
from rwm_ros.middleware import TRANSPORTS  # noqa: E402

SCHED_FIFO = 1
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _threads_of_session(session: int) -> dict[tuple[int, int], tuple[str, int, float]]:
    """(pid, tid) -> (process:thread name, scheduling policy, CPU seconds) of every thread whose
    process belongs to `session` (the launch and its nodes)."""
    out = {}
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            head = (pid_dir / "stat").read_text()
            if int(head.rsplit(")", 1)[1].split()[3]) != session:  # field 6: session id
                continue
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
            names = [a[8:].decode() for a in argv if a.startswith(b"__node:=")]
            process = names[0] if names else Path(argv[0].decode() or "?").name
            for task in (pid_dir / "task").iterdir():
                stat = (task / "stat").read_text()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                f = stat.rsplit(")", 1)[1].split()  # f[0] is field 3
                cpu = (int(f[11]) + int(f[12])) * TICK_S  # utime + stime
                out[(int(pid_dir.name), int(task.name))] = (f"{process}:{comm}", int(f[38]), cpu)
        except (OSError, ValueError, IndexError):  # a process or thread that ended meanwhile
            continue
    return out


class RealtimeLoad:
    """The CPU time taken by the stack's SCHED_FIFO threads, per second of wall time.

    Why: when real-time threads keep a CPU busy while an ordinary task waits there, the kernel's fair
    server gives that task 50 ms of the second, preempting every real-time thread on the CPU
    (`bench/bench_rt_preemption.py`): the simulator and the policy, both SCHED_FIFO, would then stall
    together for about 50 ms, the size of the start-up stalls seen. This shows how near a CPU's worth
    the real-time threads come, and which ones (by thread: the nodes name their own threads)."""

    def __init__(self, session: int, period_s: float = 0.1) -> None:
        self.session, self.period_s = session, period_s
        self.samples: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(self.period_s):
            self.samples.append((time.monotonic() - t0, _threads_of_session(self.session)))

    def stop(self) -> dict:
        """Stop sampling; the busiest second of the real-time threads (who used it), and the median."""
        self._stop.set()
        self._thread.join()
        worst = {"rt_cpu_s_per_s": 0.0, "at_s": None, "threads": {}}
        seconds = []
        per = max(1, round(1.0 / self.period_s))
        for i in range(per, len(self.samples)):
            (t_a, a), (t_b, b) = self.samples[i - per], self.samples[i]
            used = {}
            for key, (name, policy, cpu) in b.items():
                # FIFO at both ends: a node's start-up work before it raised its priority is not counted
                if policy == SCHED_FIFO and key in a and a[key][1] == SCHED_FIFO:
                    used[name] = used.get(name, 0.0) + cpu - a[key][2]
            total = sum(used.values()) / (t_b - t_a)
            seconds.append(total)
            if total > worst["rt_cpu_s_per_s"]:
                top = sorted(used.items(), key=lambda kv: -kv[1])[:8]
                worst = {
                    "rt_cpu_s_per_s": round(total, 3),
                    "at_s": round(t_b, 1),
                    "threads": {k: round(v, 3) for k, v in top},
                }
        median = round(float(statistics.median(seconds)), 3) if seconds else None
        return {**worst, "median_rt_cpu_s_per_s": median}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--duration", type=float, default=25.0)
    ap.add_argument("--world-model", action="store_true", help="with the health monitor on")
    ap.add_argument("--out", default="runs/startup.json")
    ap.add_argument(
        "--dds",
        choices=TRANSPORTS,
        default="stack",
        help="the stack's Fast DDS profile, or Fast DDS's default",
    )
    ap.add_argument(
        "--logs", help="keep the launch output of each start that tripped or failed in this folder"
    )
    args = ap.parse_args()
    domain = 40 + os.getpid() % 20
    runs = []
    for i in range(args.starts):
        with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
            cmd = launch_command(
                duration=args.duration, report=True, world_model=args.world_model, bag_dir=Path(tmp) / "bags"
            )
            proc = subprocess.Popen(
                cmd,
                env=source_env(domain, args.dds),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            load = RealtimeLoad(proc.pid)
            try:
                text, _ = proc.communicate(timeout=args.duration + 90)
            except subprocess.TimeoutExpired:
                stop_process_group(proc, timeout_s=20.0)
                text = proc.stdout.read() if proc.stdout else ""
            busiest = load.stop()
        try:
            report = stack_report(text)
        except ValueError:
            report = {}
        row = {
            "start": i,
            "exit_code": proc.returncode,
            "watchdog_ticks": int(report.get("policy", {}).get("ticks_watchdog", 0)),
            "resets": int(report.get("sim", {}).get("resets", 0)),
            # whether the simulator itself ran late, and how long its publish() calls could block
            "sim_max_lateness_ms": float(report.get("sim", {}).get("max_lateness_ms", "nan")),
            "sim_publish_max_ms": float(report.get("sim", {}).get("publish_max_ms", "nan")),
            "latency_at_robot_ms": {
                k: report.get("joint_command", {}).get(f"latency_{k}_ms") for k in ("p50", "p99", "max")
            },
            # the same joint states seen by another process: did the stream stop for everyone?
            "probe_joint_states_gap_max_ms": float(
                report.get("joint_states", {}).get("arrival_interval_max_ms", "nan")
            ),
            "busiest_realtime_second": busiest,
            "nodes_failed": {name: code for name, code in node_exits(text).items() if code != 0},
            "error_lines": [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line][:8],
            "watchdog_lines": [
                line.split("]: ", 1)[-1] for line in text.splitlines() if "-> watchdog" in line
            ],
        }
        runs.append(row)
        print(json.dumps(row), flush=True)
        if args.logs and (row["watchdog_ticks"] or row["exit_code"]):
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            (Path(args.logs) / f"start_{i}.log").write_text(text)
    result = {
        "sched_rt_runtime_us": int(Path("/proc/sys/kernel/sched_rt_runtime_us").read_text()),
        "starts": len(runs),
        "duration_s": args.duration,
        "world_model": args.world_model,
        "starts_failed": sum(r["exit_code"] != 0 for r in runs),
        "starts_with_watchdog": sum(r["watchdog_ticks"] > 0 for r in runs),
        "watchdog_ticks": sum(r["watchdog_ticks"] for r in runs),
        "resets": sum(r["resets"] for r in runs),
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    return 0 if result["starts_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
