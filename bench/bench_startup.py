"""Consecutive starts of the main job (`make run`'s stack through `ros2 launch`): does the policy ever
trip its own watchdog? Each start runs for --duration s with the stack probe's report; the policy's
watchdog ticks and the simulator's resets come from the report, and every "-> watchdog" line of the
policy node (which inputs were how old, and the gap between its ticks) is collected.

    python bench/bench_startup.py [--starts 20] [--duration 25] [--world-model] [--out runs/startup.json]
Goal (issue 19): 0 watchdog ticks in 20 consecutive starts.
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

from rwm_ros.launch_stack import launch_command, source_env, stack_report, stop_process_group  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--duration", type=float, default=25.0)
    ap.add_argument("--world-model", action="store_true", help="with the health monitor on")
    ap.add_argument("--out", default="runs/startup.json")
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
                env=source_env(domain),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            try:
                text, _ = proc.communicate(timeout=args.duration + 90)
            except subprocess.TimeoutExpired:
                stop_process_group(proc, timeout_s=20.0)
                text = proc.stdout.read() if proc.stdout else ""
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
            "watchdog_lines": [
                line.split("]: ", 1)[-1] for line in text.splitlines() if "-> watchdog" in line
            ],
        }
        runs.append(row)
        print(json.dumps(row), flush=True)
    result = {
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
