"""The world-model monitor in the running stack on robot variants: issue 17's detection goal, live.

For each variant and repeat, `ros2 launch` the main job as `make run` does (the simulated robot with
`variant:=NAME`, the policy, the command sequence walking in a loop, the data logger) with the
world-model node on: when /cmd_vel first asks the robot to move (heard from outside), and when the
node raised /rwm/world_model/anomaly (its own log line, stamped when it raised it: a listener that
matched the node's writer late missed an alarm 1.8 s after start). Detection time is the first alarm
after the first moving command (an alarm while the robot still stood counts as 0 s); on the nominal
robot every alarm is a false one.
The node judges nothing in its warm-up (config/world_model.yaml; the model's 32 steps, 0.64 s) and
takes the median over its model's window (0.5 s, held 0.1 s), so no alarm comes earlier than about 1.2 s
after the policy's first command; when the sequence first asks to move, relative to that, depends on
the order in which the nodes came up.
Falls are the simulator's resets (the stack probe's report). `rwm eval-monitor` measures the same rule
offline on 20 batched robots per variant; this is the node, its DDS inputs and its timing.

    python bench/bench_monitor_stack.py [--variants nominal payload_15kg motors_75 delay_20ms]
        [--repeats 3] [--duration 30] [--start-delay 3] [--out runs/monitor_stack/monitor_stack.json]
Goal (issue 17): the anomaly within 2 s of moving on every variant that changes the dynamics
(payload, motor strength, delay) and never on the nominal robot.
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

import yaml  # noqa: E402

from rwm.robot import contract as C  # noqa: E402
from rwm_ros.command_sequence_node import DEFAULT_SEGMENTS  # noqa: E402
from rwm_ros.launch_stack import (  # noqa: E402
    launch_command,
    node_exits,
    source_env,
    stack_report,
    stop_process_group,
)
from rwm_ros.middleware import script_dds_env  # noqa: E402

WALK = DEFAULT_SEGMENTS
"""The main job's walk (forward, sideways, turn, backward, 4 s each)."""
DETECT_WITHIN_S = 2.0


ALARM = re.compile(r"\[WARN\] \[(\d+\.\d+)\] \[(?:[\w.]+\.)?world_model\]: anomaly:")
"""The node's own log line when it raises the anomaly, stamped with the wall clock."""


def _listen(domain: int, stop: threading.Event, events: dict) -> None:
    """Arrival time (wall clock) of the first moving /cmd_vel."""
    import rclpy  # noqa: PLC0415
    from geometry_msgs.msg import Twist  # noqa: PLC0415
    from rclpy.context import Context  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    os.environ.update(script_dds_env())  # as the launched stack's (source_env)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("monitor_stack_bench", context=ctx)

    def on_cmd(msg: Twist) -> None:
        if events["moving"] is None and (msg.linear.x or msg.linear.y or msg.angular.z):
            events["moving"] = time.time()

    node.create_subscription(Twist, C.TOPIC_CMD_VEL, on_cmd, 10)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.1)
    node.destroy_node()
    ctx.try_shutdown()


def run_once(variant: str, duration: float, start_delay: float, domain: int, work: Path) -> dict:
    params = work / "params.yaml"
    sequence = {"loop": True, "segments": WALK, "start_delay_s": start_delay}
    params.write_text(yaml.safe_dump({"/**/command_sequence": {"ros__parameters": sequence}}))
    events: dict = {"moving": None}
    stop = threading.Event()
    listener = threading.Thread(target=_listen, args=(domain, stop, events), daemon=True)
    listener.start()
    time.sleep(1.0)  # the listener's subscriptions exist before the stack starts
    cmd = launch_command(
        duration=duration,
        report=True,
        world_model=True,
        variant=variant,
        bag_dir=work / "bags",
        params_file=params,
    )
    log = work / "launch.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=source_env(domain), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=duration + 120)
        except subprocess.TimeoutExpired:
            stop_process_group(proc, timeout_s=30.0)
            code = -1
    stop.set()
    listener.join(5.0)
    text = log.read_text()
    if code != 0:
        raise RuntimeError(f"the stack on {variant} exited with {code}:\n{text[-4000:]}")
    moving = events["moving"]
    alarms = [float(t) for t in ALARM.findall(text)]
    after = [max(t - moving, 0.0) for t in alarms] if moving is not None else []
    sim = stack_report(text).get("sim", {})
    return {
        "node_exit_codes": node_exits(text),
        "alarms": len(alarms),
        "first_alarm_after_moving_s": round(min(after), 2) if after else None,
        "resets": int(sim.get("resets", -1)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=["nominal", "payload_15kg", "motors_75", "delay_20ms"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of each run")
    ap.add_argument(
        "--start-delay",
        type=float,
        default=3.0,
        help="standing before the first step, s (the launch file's 3)",
    )
    ap.add_argument("--domain", type=int, default=71)
    ap.add_argument("--out", default="runs/monitor_stack/monitor_stack.json")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {}
    for variant in args.variants:
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="monitor-stack-") as work:
                r = run_once(variant, args.duration, args.start_delay, args.domain, Path(work))
            runs.setdefault(variant, []).append(r)
            print(f"{variant} #{repeat}: {json.dumps(r)}", flush=True)
    summary = {}
    for variant, rs in runs.items():
        firsts = [r["first_alarm_after_moving_s"] for r in rs]
        summary[variant] = {
            "runs": len(rs),
            "runs_alarmed": sum(f is not None for f in firsts),
            f"runs_alarmed_within_{DETECT_WITHIN_S:g}_s_of_moving": sum(
                f is not None and f <= DETECT_WITHIN_S for f in firsts
            ),
            "first_alarm_after_moving_s": firsts,
            "alarms": sum(r["alarms"] for r in rs),
            "resets": sum(r["resets"] for r in rs),
        }
    result = {
        "command": "python bench/bench_monitor_stack.py " + " ".join(sys.argv[1:]),
        "duration_s": args.duration,
        "start_delay_s": args.start_delay,
        "detect_within_s": DETECT_WITHIN_S,
        "variants": summary,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        "| variant | runs | alarmed | within 2 s of moving | first alarm after moving (s) | alarms | falls |"
    )
    print("|---|---|---|---|---|---|---|")
    for variant, s in summary.items():
        firsts = ", ".join("-" if f is None else f"{f:.2f}" for f in s["first_alarm_after_moving_s"])
        within = s[f"runs_alarmed_within_{DETECT_WITHIN_S:g}_s_of_moving"]
        cells = (variant, s["runs"], s["runs_alarmed"], within, firsts, s["alarms"], s["resets"])
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
