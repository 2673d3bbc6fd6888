"""Soak of the whole stack: sim, policy, a repeated command sequence with a standing phase, the data
logger and the world-model monitor, started by `ros2 launch` as `make run` does, for --duration s.

Prints JSON and writes it (--out, with a PNG of latency and memory over time):
- messages: per topic, what each publisher says it sent (its own counter, printed at shutdown)
  against what the bags hold. The data logger runs as its own process, started before the stack and
  stopped after it has ended; the robot and the command sequence wait for its matched reader
  (`await_reader`, as with the launch file's own logger); a difference is what was lost, or what a
  node that does not wait sent before DDS had matched its writer with the logger's reader. For the
  400 Hz stamped streams also the gaps inside the recording (losses after that match);
- watchdog ticks and robot resets (falls), from the policy's and the simulator's diagnostics;
- latency at the robot (state stamp -> command arrival, the simulator's figures over its last 60 s,
  sampled every second) p50 / p99 / max over the run and per back-to-back 60 s window, and the
  probe's whole-run figures; the simulator's `wall_clock_steps` counts steps of the system clock
  (figures whose window holds one time across it);
- CPU share and memory (RSS) of every node sampled every 5 s, and each node's memory growth between
  the first and the last fifth of the run (a leak shows as growth);
- base drift at zero command: the odometry displacement over each standing phase of the sequence,
  over its second half, and projected to 10 minutes (the phase's own plus its second half's rate);
- the policy's ticks per mode (policy, stand hold, ...) and how often the world-model monitor raised
  its anomaly (the robot is the nominal one: each is a false alarm).

    python bench/bench_soak.py [--duration 3600] [--out runs/soak/soak.json]
Goals (issue 19): 0 lost, 0 watchdog ticks, 0 resets, latency p99 <= 2 ms and max <= 5 ms at the
robot, no memory growth, drift reported (<= 0.5 m per 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402

from rwm.robot import contract as C  # noqa: E402
from rwm_ros.command_sequence_node import DEFAULT_SEGMENTS  # noqa: E402
from rwm_ros.launch_stack import (  # noqa: E402
    bag_message_counts,
    launch_command,
    node_exits,
    published_counts,
    source_env,
    stack_report,
    start_logger,
    stop_process_group,
)
from rwm_ros.middleware import TRANSPORTS, script_dds_env  # noqa: E402
from rwm_ros.topics import LATCHED  # noqa: E402

WALK = DEFAULT_SEGMENTS
STAND_S = 60.0
"""Each loop of the sequence walks 16 s, then stands this long at zero command (`--stand-s`)."""
ANOMALY_RAISED = "anomaly: windowed prediction error"
WORLD_MODEL_STEPS = re.compile(r"\[world_model\] steps: (\{.*\})")
"""The world-model node's warning each time its anomaly flag turns true."""


def _node_name(proc: psutil.Process) -> str | None:
    for word in proc.cmdline():
        if word.startswith("__node:="):
            return word.split(":=", 1)[1]
    return None


def _sample_nodes(
    roots: list[subprocess.Popen], stop: threading.Event, rows: list, period_s: float = 5.0
) -> None:
    """(time, node, cpu % of a core, rss MB) of every node started by `roots`, every `period_s`."""
    procs: dict[str, psutil.Process] = {}
    start = time.monotonic()
    while not stop.wait(period_s):
        for root in roots:
            try:
                for child in psutil.Process(root.pid).children(recursive=True):
                    name = _node_name(child)
                    if name and name not in procs:
                        procs[name] = child
                        child.cpu_percent(None)  # baseline
            except psutil.Error:
                continue
        for name, proc in procs.items():
            try:
                rows.append(
                    (time.monotonic() - start, name, proc.cpu_percent(None), proc.memory_info().rss / 2**20)
                )
            except psutil.Error:
                continue


def _sample_diagnostics(domain: int, transport: str, stop: threading.Event, rows: list) -> None:
    """(time, sim's command latency p50 / p99 / max over its last 60 s, watchdog ticks, resets), 1 Hz."""
    import rclpy  # noqa: PLC0415
    from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
    from rclpy.context import Context  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    os.environ.update(script_dds_env(transport))  # as the launched stack's (source_env)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("soak_diagnostics", context=ctx)
    latest: dict[str, dict[str, str]] = {"sim": {}, "policy": {}}

    def on_diag(msg) -> None:
        for status in msg.status:
            if "real-time loop" in status.name:
                latest["sim"] = {kv.key: kv.value for kv in status.values}
            elif "control loop" in status.name:
                latest["policy"] = {kv.key: kv.value for kv in status.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    start, next_row = time.monotonic(), time.monotonic() + 1.0
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.2)
        if time.monotonic() >= next_row and "command_latency_p99_ms" in latest["sim"]:
            next_row += 1.0
            sim, policy = latest["sim"], latest["policy"]
            rows.append(
                (
                    time.monotonic() - start,
                    float(sim["command_latency_p50_ms"]),
                    float(sim["command_latency_p99_ms"]),
                    float(sim["command_latency_max_ms"]),
                    int(policy.get("ticks_watchdog", 0)),
                    int(sim.get("resets", 0)),
                )
            )
    node.destroy_node()
    ctx.try_shutdown()


def _stream_gaps_and_drift(bag_dir: Path) -> dict:
    """Gaps in the joint-state stamps (missing 400 Hz ticks inside the recording) and the base
    displacement over every standing phase (zero command for at least 30 s; its first 3 s skipped).
    A stopped robot settles (the policy steps until it stands still, then the stand hold keeps it),
    so the displacement is not linear in time: the 10-minute figure is the phase's own displacement
    plus the rate of its second half carried on to 10 minutes."""
    from rosbags.highlevel import AnyReader  # noqa: PLC0415

    stamps, odom, cmd = [], [], []
    bags = sorted(p for p in bag_dir.iterdir() if (p / "metadata.yaml").is_file())
    with AnyReader(bags) as reader:
        conns = [
            c for c in reader.connections if c.topic in (C.TOPIC_JOINT_STATES, C.TOPIC_ODOM, C.TOPIC_CMD_VEL)
        ]
        for conn, t_ns, raw in reader.messages(conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == C.TOPIC_JOINT_STATES:
                stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            elif conn.topic == C.TOPIC_ODOM:
                p = msg.pose.pose.position
                odom.append((t_ns, p.x, p.y))
            else:
                cmd.append((t_ns, abs(msg.linear.x) + abs(msg.linear.y) + abs(msg.angular.z)))
    stamps = np.sort(np.unique(np.asarray(stamps)))
    step = np.median(np.diff(stamps))
    missing = int(np.round(np.diff(stamps) / step).sum() - (len(stamps) - 1))
    odom, cmd = np.asarray(odom, dtype=np.float64), np.asarray(cmd, dtype=np.float64)
    drifts = []
    zero = cmd[:, 1] == 0.0
    edges = np.flatnonzero(np.diff(zero.astype(int)))
    starts = [0, *(edges + 1)] if zero[0] else list(edges + 1)
    for s in starts:
        if not zero[s]:
            continue
        end = s
        while end + 1 < len(cmd) and zero[end + 1]:
            end += 1
        t0, t1 = cmd[s, 0] + 3e9, cmd[end, 0]
        if t1 - t0 < 27e9:
            continue
        inside = odom[(odom[:, 0] >= t0) & (odom[:, 0] <= t1)]
        if len(inside) > 1:
            half = inside[inside[:, 0] >= (t0 + t1) / 2]
            if len(half) < 2:  # odometry ended before the second half: no rate to project
                continue
            drifts.append(
                (
                    float(np.hypot(*(inside[-1, 1:] - inside[0, 1:]))),
                    float(np.hypot(*(half[-1, 1:] - half[0, 1:]))),
                    (half[-1, 0] - half[0, 0]) / 1e9,
                    (t1 - t0) / 1e9,
                )
            )
    per_10_min = [d + late / late_s * max(600.0 - s, 0.0) for d, late, late_s, s in drifts]
    return {
        "joint_state_ticks_recorded": len(stamps),
        "joint_state_ticks_missing_inside_recording": missing,
        "standing_phases": len(drifts),
        "drift_m_per_phase": [round(d, 4) for d, *_ in drifts],
        "drift_m_second_half_per_phase": [round(late, 4) for _, late, *_ in drifts],
        "drift_m_per_10_min_projected_max": round(max(per_10_min), 4) if per_10_min else None,
    }


def _after_start_up(latency: np.ndarray, skip_s: float = 120.0) -> dict:
    """p99 and max over the sim's 60 s windows that end after `skip_s`: start-up apart from the run
    (a window holds 60 s, so one stall at start-up otherwise shows in every window of the first minute)."""
    later = latency[latency[:, 0] >= skip_s] if len(latency) else latency
    if not len(later):
        return {}
    return {
        f"p99_max_over_windows_after_{skip_s:g}_s": round(float(later[:, 2].max()), 3),
        f"max_after_{skip_s:g}_s": round(float(later[:, 3].max()), 3),
    }


def _every_window(latency: np.ndarray, window_s: float = 60.0) -> list[list[float]]:
    """[end s, p50, p99, max] of back-to-back 60 s windows (the sim's figures over its last 60 s, taken
    every 60 s): the run's course in the JSON, not only in the plot."""
    rows, next_end = [], window_s
    for t, p50, p99, peak in latency[:, :4] if len(latency) else ():
        if t >= next_end:
            rows.append(
                [round(float(t), 1), round(float(p50), 3), round(float(p99), 3), round(float(peak), 3)]
            )
            next_end += window_s * (1 + (t - next_end) // window_s)  # on the 60 s grid, even after a gap
    return rows


def _plot(path: Path, latency: np.ndarray, usage: list) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    if len(latency):
        for col, label in ((1, "p50"), (2, "p99"), (3, "max")):
            a.plot(latency[:, 0] / 60, latency[:, col], label=label)
    a.axhline(2.0, color="k", ls="--", lw=0.8, label="p99 goal")
    a.set(ylabel="state -> command at the robot (ms)\n(simulator, last 60 s)", yscale="log")
    a.legend(fontsize=8)
    for name in sorted({r[1] for r in usage}):
        rows = np.array([(t, rss) for t, n, _, rss in usage if n == name])
        b.plot(rows[:, 0] / 60, rows[:, 1], label=name)
    b.set(xlabel="time (min)", ylabel="RSS (MB)")
    b.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


WATCHDOG_EVENT = re.compile(r"\[(\d+\.\d+)\] \[policy\]: (mode \w+ -> watchdog \(.*\))")


def watchdog_events(launch_log: str) -> list[str]:
    """The policy's own account of each watchdog hold (what it last received, and when), with its
    wall-clock stamp (s since the epoch) to line it up with other records of the run."""
    return [f"{m.group(1)}: {m.group(2)}" for m in WATCHDOG_EVENT.finditer(launch_log)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3600.0)
    ap.add_argument("--domain", type=int, default=80 + os.getpid() % 10)
    ap.add_argument("--out", default="runs/soak/soak.json")
    ap.add_argument(
        "--dds",
        choices=TRANSPORTS,
        default="stack",
        help="the stack's Fast DDS profile, or Fast DDS's default",
    )
    ap.add_argument(
        "--stand-s",
        type=float,
        default=STAND_S,
        help="zero command this long after each 16 s walk (600 with --duration 660: ten minutes of standing)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    params = work / "soak.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "/**/command_sequence": {
                    "ros__parameters": {
                        "loop": True,
                        "segments": [*WALK, args.stand_s, 0.0, 0.0, 0.0],
                        "await_reader": "data_logger",
                    }
                },
                # the sources wait for the logger, as with the launch file's own (record:=true)
                "/**/anymal_sim": {"ros__parameters": {"await_reader": "data_logger"}},
                "/**/policy": {"ros__parameters": {"await_reader": "data_logger"}},
                "/**/state_publisher": {"ros__parameters": {"await_reader": "data_logger"}},
            }
        )
    )
    bags = work / "bags"
    env = source_env(args.domain, args.dds)
    logger = start_logger(bags, env, work / "logger.log")
    cmd = launch_command(
        duration=args.duration, report=True, world_model=True, record=False, params_file=params
    )
    log = (work / "launch.log").open("w")
    launch = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stop, usage, diagnostics = threading.Event(), [], []
    samplers = [
        threading.Thread(target=_sample_nodes, args=([launch, logger], stop, usage), daemon=True),
        threading.Thread(
            target=_sample_diagnostics, args=(args.domain, args.dds, stop, diagnostics), daemon=True
        ),
    ]
    for t in samplers:
        t.start()
    try:
        code = launch.wait(timeout=args.duration + 120)
    except subprocess.TimeoutExpired:  # a stack that does not end: stopped as a terminal's Ctrl-C would
        stop_process_group(launch, timeout_s=30.0)
        code = -1
    stop.set()
    for t in samplers:
        t.join(5.0)
    log.close()
    time.sleep(2.0)  # what the stack sent last is still on its way to the logger
    stop_process_group(logger, timeout_s=30.0)
    text = (work / "launch.log").read_text()
    logger_code = logger.returncode
    if code != 0 or logger_code != 0:
        print(text[-5000:], (work / "logger.log").read_text()[-3000:], sep="\n", file=sys.stderr)
        return 1
    published = published_counts(text)
    before_match = published_counts(text, before_match=True)
    recorded = bag_message_counts(bags)
    report = stack_report(text)
    policy_diagnostics = report.get("policy", {})
    latency = np.array(diagnostics)
    memory = {}
    for name in sorted({r[1] for r in usage}):
        rss = [r[3] for r in usage if r[1] == name]
        fifth = max(1, len(rss) // 5)
        memory[name] = {
            "rss_mb_first_fifth": round(float(np.mean(rss[:fifth])), 1),
            "rss_mb_last_fifth": round(float(np.mean(rss[-fifth:])), 1),
            "cpu_percent_mean": round(float(np.mean([r[2] for r in usage if r[1] == name])), 1),
        }
    result = {
        "duration_s": args.duration,
        "stand_s": args.stand_s,
        "node_exit_codes": {**node_exits(text), "logger_node (own process)": logger_code},
        "messages": {  # the latched topics are left out: every split opens with a copy of them
            t: {
                "published": n,
                "recorded": recorded.get(t, 0),
                "difference": n - recorded.get(t, 0),
                **({"published_before_a_reader_matched": before_match[t]} if t in before_match else {}),
            }
            for t, n in sorted(published.items())
            if t not in LATCHED
        },
        **_stream_gaps_and_drift(bags),
        "watchdog_ticks": int(policy_diagnostics.get("ticks_watchdog", 0)),
        "policy_ticks_by_mode": {
            k.removeprefix("ticks_"): int(v) for k, v in policy_diagnostics.items() if k.startswith("ticks_")
        },
        "world_model_anomalies_raised": text.count(ANOMALY_RAISED),
        "world_model_steps": json.loads(m.group(1)) if (m := WORLD_MODEL_STEPS.search(text)) else None,
        "resets": int(report.get("sim", {}).get("resets", 0)),
        "latency_at_robot_ms": {
            "p50_median": round(float(np.median(latency[:, 1])), 3) if len(latency) else None,
            "p99_max_over_windows": round(float(latency[:, 2].max()), 3) if len(latency) else None,
            "max": round(float(latency[:, 3].max()), 3) if len(latency) else None,
            **_after_start_up(latency),
            "windows": _every_window(latency),
        },
        "probe_whole_run": report.get("joint_command"),
        "simulator": report.get("sim"),
        "watchdog_events": watchdog_events(text),
        "nodes": memory,
        "log": str(work / "launch.log"),
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    _plot(out.with_suffix(".png"), latency, usage)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
