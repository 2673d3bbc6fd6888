"""Benchmark of the control stack: the simulated ANYmal D, the policy node and the command sequence,
started by the runner exactly as `make run` does, measured by the runner's probe.

Prints JSON: end-to-end latency from a joint-state stamp to the arrival of the joint command that
answers it (p50/p99; the command carries that state's stamp), the jitter of the 50 Hz command period
(p99 of |interval - median|), the CPU share of every node (% of one core) and the tracking figures.

    python bench/bench_policy_stack.py [--duration 30]
Goals: latency p99 <= 2 ms, jitter p99 <= 1 ms at 50 Hz.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

from rwm_ros.runner import child_env  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--domain", type=int, default=90 + os.getpid() % 10)
    ap.add_argument("--record", action="store_true", help="also run the data logger (record:=true)")
    args = ap.parse_args()
    env = child_env()
    env.update(ROS_DOMAIN_ID=str(args.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    cmd = [sys.executable, "-m", "rwm_ros.runner", "--config", str(ROOT / "config" / "anymal.yaml")]
    cmd += ["--duration", str(args.duration), "--report", "--set", "command_sequence.loop=true"]
    cmd += [
        "--set",
        f"record={'true' if args.record else 'false'}",
        "--set",
        "data_logger.directory=/tmp/bench_rb",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.duration + 60)
    if proc.returncode != 0 or "[runner] report: " not in proc.stdout:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    report = json.loads(proc.stdout.split("[runner] report: ", 1)[1])
    cmd_timing = report["joint_command"]
    out = {
        "duration_s": args.duration,
        "command_rate_hz": cmd_timing["rate_hz"],
        "latency_p50_ms": cmd_timing["latency_p50_ms"],
        "latency_p99_ms": cmd_timing["latency_p99_ms"],
        "latency_max_ms": cmd_timing["latency_max_ms"],
        "period_jitter_p99_ms": cmd_timing["arrival_jitter_p99_ms"],
        "joint_states_rate_hz": report["joint_states"]["rate_hz"],
        "cpu_percent_of_a_core": report["cpu_percent_of_a_core"],
        "tracking": report.get("tracking"),
        "sim_resets": report.get("sim", {}).get("resets"),
        "goals_met": cmd_timing["latency_p99_ms"] <= 2.0 and cmd_timing["arrival_jitter_p99_ms"] <= 1.0,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
