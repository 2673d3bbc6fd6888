"""Benchmark of the simulated robot driver: does it hold 400 Hz at real-time factor 1.00 for a minute?

Starts `python -m rwm_ros.sim_node` as its own process (private ROS domain, loopback only), listens
to /anymal/joint_states and the node's diagnostics with the same probe as the launch file's report, and prints
JSON: real-time factor (simulated time carried by the stamps over wall time, and the node's own
count), publish rate (mean and the lowest/highest 1 s window), stamp and arrival jitter, latency
from stamp to arrival, and the CPU share of the node process (from /proc, 100 = one core).

    python bench/bench_sim_node.py [--duration 60] [--robot anymal_d] [--rate-hz 400]
Goal: real-time factor 1.00 +- 0.02 and 400 Hz in every 1 s window over 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

import psutil  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from rwm_ros.launch_stack import source_env  # noqa: E402
from rwm_ros.middleware import script_dds_env  # noqa: E402
from rwm_ros.realtime import ArrivalWindow  # noqa: E402
from rwm_ros.stack_probe import StackProbe  # noqa: E402


def spin_for(executor: SingleThreadedExecutor, seconds: float, until=lambda: False) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        executor.spin_once(timeout_sec=0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="measurement time, s (default 60)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds ignored after the first message")
    ap.add_argument("--robot", default="anymal_d")
    ap.add_argument("--rate-hz", type=float, default=400.0)
    a = ap.parse_args()

    os.environ["ROS_DOMAIN_ID"] = str(101 + os.getpid() % 100)  # private domain: 101..200
    os.environ.update(script_dds_env())
    cmd = [
        sys.executable,
        "-m",
        "rwm_ros.sim_node",
        "--ros-args",
        "-p",
        f"robot:={a.robot}",
        "-p",
        f"rate_hz:={a.rate_hz}",
        "--log-level",
        "warn",
    ]
    node = subprocess.Popen(cmd, env=source_env(), start_new_session=True)
    rclpy.init()
    probe = StackProbe(full=False)
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    try:
        spin_for(executor, 60.0, until=lambda: probe.joint_states.count > 0)
        if probe.joint_states.count == 0:
            print("no /anymal/joint_states within 60 s: the node did not start", file=sys.stderr)
            return 1
        spin_for(executor, a.warmup)
        probe.joint_states = ArrivalWindow(capacity=int(a.rate_hz * (a.duration + 5)))
        cpu0, own0, t0 = sum(psutil.Process(node.pid).cpu_times()[:2]), time.process_time(), time.monotonic()
        spin_for(executor, a.duration)
        cpu1, own1, t1 = sum(psutil.Process(node.pid).cpu_times()[:2]), time.process_time(), time.monotonic()
        spin_for(executor, 1.5)  # one more diagnostics message, covering the whole window
        report = probe.summary()
        js = report["joint_states"]
        sim = report.get("sim", {})
        out = {
            "robot": a.robot,
            "duration_s": round(t1 - t0, 2),
            "real_time_factor_stamps": js.get("real_time_factor"),
            "real_time_factor_node": float(sim["real_time_factor"]) if "real_time_factor" in sim else None,
            "rate_hz_mean": js.get("rate_hz"),
            "rate_hz_min_1s": js.get("rate_min_hz"),
            "rate_hz_max_1s": js.get("rate_max_hz"),
            "stamp_interval_ms": [js.get("stamp_interval_mean_ms"), js.get("stamp_interval_std_ms")],
            "arrival_jitter_std_ms": js.get("arrival_interval_std_ms"),
            "arrival_interval_p99_ms": js.get("arrival_interval_p99_ms"),
            "latency_ms_mean_p99_max": [
                js.get("latency_mean_ms"),
                js.get("latency_p99_ms"),
                js.get("latency_max_ms"),
            ],
            "node_late_ticks": int(sim.get("late_ticks", -1)),
            "node_max_lateness_ms": float(sim.get("max_lateness_ms", "nan")),
            "node_slips": int(sim.get("slips", -1)),
            "node_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "bench_cpu_percent": round(100 * (own1 - own0) / (t1 - t0), 1),
            "cores": os.cpu_count(),
        }
        rtf = out["real_time_factor_stamps"] or 0.0
        out["goal_met"] = bool(abs(rtf - 1.0) <= 0.02 and (js.get("rate_min_hz") or 0) >= 0.95 * a.rate_hz)
        print(json.dumps(out, indent=1))
        return 0 if out["goal_met"] else 1
    finally:
        executor.shutdown(timeout_sec=1.0)
        probe.destroy_node()
        rclpy.try_shutdown()
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=5)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()


if __name__ == "__main__":
    sys.exit(main())
