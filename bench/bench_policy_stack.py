"""Benchmark of the control stack: the simulated ANYmal D, the policy node, the command sequence and
the data logger, started by `ros2 launch rwm_bringup anymal.launch.py` exactly as `make run` does,
measured by the stack probe (real-time priority 40, standing in for the robot's command receiver).

Prints JSON, timing in three places (jitter: p99 of |interval - median|):
- at_robot: where the command is consumed (the simulated robot's driver, last 60 s of the run):
  latency from a joint-state stamp to the arrival of the command that answers it (the command carries
  that state's stamp), and the jitter of the command arrivals;
- control_loop: the policy node's own figures (last 60 s): the jitter of its 50 Hz period (when each
  state-driven tick began) and the latency from the state's stamp to its command being published;
- at_probe: the stack probe (whole run, start-up included);
then the CPU share of every node (% of one core) and the tracking figures.

    python bench/bench_policy_stack.py [--duration 30] [--no-record]
Goals (issue 5): latency p99 <= 2 ms (at the robot), control-period jitter p99 <= 1 ms at 50 Hz.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

from rwm_ros.launch_stack import launch_command, source_env, stack_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--domain", type=int, default=90 + os.getpid() % 10)
    ap.add_argument("--no-record", action="store_true", help="without the data logger (record:=false)")
    args = ap.parse_args()
    params = Path(tempfile.mkdtemp()) / "bench.yaml"
    params.write_text("/**/command_sequence:\n  ros__parameters:\n    loop: true\n")
    cmd = launch_command(
        duration=args.duration,
        report=True,
        record=not args.no_record,
        bag_dir="/tmp/bench_rb",
        params_file=params,
    )
    proc = subprocess.run(
        cmd, env=source_env(args.domain), capture_output=True, text=True, timeout=args.duration + 60
    )
    try:
        report = stack_report(proc.stdout)
    except ValueError:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    cmd_timing, sim, loop = report["joint_command"], report.get("sim", {}), report.get("policy", {})
    robot = {k: float(sim[f"command_{k}"]) for k in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms")}
    robot["period_jitter_p99_ms"] = float(sim["command_arrival_jitter_p99_ms"])
    out = {
        "duration_s": args.duration,
        "record": not args.no_record,
        "command_rate_hz": cmd_timing["rate_hz"],
        "at_robot": robot,
        "control_loop": {
            "period_jitter_p99_ms": float(loop["period_jitter_p99_ms"]),
            "state_to_command_p50_ms": float(loop["state_to_command_latency_p50_ms"]),
            "state_to_command_p99_ms": float(loop["state_to_command_latency_p99_ms"]),
        },
        "at_probe": {
            "latency_p50_ms": cmd_timing["latency_p50_ms"],
            "latency_p99_ms": cmd_timing["latency_p99_ms"],
            "latency_max_ms": cmd_timing["latency_max_ms"],
            "period_jitter_p99_ms": cmd_timing["arrival_jitter_p99_ms"],
        },
        "joint_states_rate_hz": report["joint_states"]["rate_hz"],
        "cpu_percent_of_a_core": {k: v["cpu_percent_of_a_core"] for k, v in report["nodes"].items()},
        "tracking": report.get("tracking"),
        "sim_resets": sim.get("resets"),
        "goal_latency_p99_le_2ms": robot["latency_p99_ms"] <= 2.0,
        "goal_control_period_jitter_p99_le_1ms": float(loop["period_jitter_p99_ms"]) <= 1.0,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
