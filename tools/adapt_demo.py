"""`make adapt-demo`: the loop of issue 17 through `ros2 launch`, on a simulated robot beyond the
training family (a variant of `beyond_training:` in config/robot_variants.yaml).

1. Before: the stack as deployed (shipped policy, RWM-U health monitor, data logger) walks the shifted
   robot through a looping command sequence for --record-s; its bags go to OUT/bags.
2. Adapt, live: the stack again, with the trainer on (its own process, nice 19) reading those bags
   (`bag_dir`; recording off, so that it trains on them alone): it refines the world model and
   fine-tunes the policy (config/trainer.yaml's `adapt.dynamics`: in the simulator of the robot the
   bags identify, or in the model's imagination, MOPO-PPO), validates both and announces them; the
   world-model node and the policy node swap them in while the robot walks. The run goes on for
   --after-s after the policy swap, or ends once the trainer refused the policy.
3. Figures, before against after the swap (its blend and rollback window left out), from what the
   demo hears on the graph: tracking as the suite measures it (the normalized tracking reward of
   odometry against /cmd_vel), linear-velocity RMSE, falls (the simulator's resets), the monitor's
   uncertainty and its anomaly share; the versions made and the policy node's rollbacks. While the
   trainer works, the figures are split at the world-model swap (`after_model_swap`: the monitor on
   the refined model, the deployed policy still driving). JSON and a PNG in OUT.

    python tools/adapt_demo.py --variant friction_0.2 --record-s 300 --after-s 180 --out runs/adapt_demo
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from rwm.robot import contract as C  # noqa: E402
from rwm.sim.reward import RewardConfig, tracking_reward, tracking_terms  # noqa: E402
from rwm_ros.launch_stack import (  # noqa: E402
    launch_command,
    node_exits,
    source_env,
    stop_process_group,
)
from rwm_ros.middleware import script_dds_env  # noqa: E402

WALK = [4.0, 0.6, 0.0, 0.0, 4.0, 0.0, 0.3, 0.0, 4.0, 0.0, 0.0, 0.8, 4.0, -0.5, 0.0, 0.0,
        4.0, 0.8, 0.2, 0.0, 4.0, 0.3, -0.3, -0.5, 4.0, 0.0, 0.0, 0.0]  # fmt: skip
"""(duration s, vx, vy, yaw rate) segments looped for the whole run: the command changes of walking."""


class Listener:
    """The stack's live signals with their ROS stamps: the simulator's resets, the policy's version and
    rollbacks (/diagnostics), the monitor's uncertainty and anomaly."""

    def __init__(self, domain: int) -> None:
        self.domain = domain
        self.stop = threading.Event()
        self.resets: list[tuple[float, int]] = []
        self.policy: list[tuple[float, str, int]] = []
        self.model: list[tuple[float, str]] = []
        """(time, the world model the monitor runs) from its diagnostics."""
        self.uncertainty: list[tuple[float, float]] = []
        self.anomaly: list[tuple[float, bool]] = []
        self.odom: list[tuple[float, float, float, float]] = []
        """(time, vx, vy, yaw rate) of the base, in its own frame, at 50 Hz."""
        self.cmd: list[tuple[float, float, float, float]] = []
        """(time, vx, vy, yaw rate) of every /cmd_vel."""
        self.trainer: dict[str, str] = {}
        """The trainer's latest diagnostics (its stages' counts and last reason)."""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import rclpy  # noqa: PLC0415
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
        from geometry_msgs.msg import Twist  # noqa: PLC0415
        from nav_msgs.msg import Odometry  # noqa: PLC0415
        from rclpy.context import Context  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
        from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: PLC0415
        from std_msgs.msg import Bool, Float32  # noqa: PLC0415

        from rwm_ros.topics import (  # noqa: PLC0415
            FLAG_QOS,
            STREAM_WRITER_QOS,
            TOPIC_WM_ANOMALY,
            TOPIC_WM_UNCERTAINTY,
        )

        SENSOR_QOS = QoSProfile(depth=400, reliability=ReliabilityPolicy.BEST_EFFORT)  # noqa: N806

        os.environ.update(script_dds_env())  # as the launched stack's (source_env)
        ctx = Context()
        rclpy.init(context=ctx, domain_id=self.domain)
        node = rclpy.create_node("adapt_demo_listener", context=ctx)

        def on_diag(msg) -> None:
            t = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if "real-time loop" in status.name and "resets" in values:
                    self.resets.append((t, int(values["resets"])))
                elif "control loop" in status.name and "policy_version" in values:
                    self.policy.append(
                        (t, values["policy_version"], int(values.get("reloads_rolled_back", 0)))
                    )
                elif status.name.endswith(": health monitor"):
                    self.model.append((t, values["model"]))
                elif status.name.endswith(": trainer"):
                    self.trainer = values

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
        node.create_subscription(
            Float32,
            TOPIC_WM_UNCERTAINTY,
            lambda m: self.uncertainty.append((time.time(), m.data)),
            STREAM_WRITER_QOS,
        )
        node.create_subscription(
            Bool, TOPIC_WM_ANOMALY, lambda m: self.anomaly.append((time.time(), m.data)), FLAG_QOS
        )
        odom_count = [0]

        def on_odom(m) -> None:
            odom_count[0] += 1
            if odom_count[0] % 8 == 0:  # 400 Hz: every 8th, the policy's rate
                v, w = m.twist.twist.linear, m.twist.twist.angular
                self.odom.append((time.time(), v.x, v.y, w.z))

        # best effort: a slow reliable reader of a 400 Hz stream would hold up the simulator's writer
        node.create_subscription(Odometry, C.TOPIC_ODOM, on_odom, SENSOR_QOS)
        node.create_subscription(
            Twist,
            C.TOPIC_CMD_VEL,
            lambda m: self.cmd.append((time.time(), m.linear.x, m.linear.y, m.angular.z)),
            10,
        )
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        while not self.stop.is_set():
            executor.spin_once(timeout_sec=0.2)
        node.destroy_node()
        ctx.try_shutdown()

    def trainer_done(self) -> bool:
        """The trainer's first round has ended (both stages, or a refinement that failed) and it is idle."""
        return int(self.trainer.get("refinements", 0)) >= 1 and self.trainer.get("busy") == "False"

    def origin(self) -> float:
        """The time the first signal of this run was heard (the plots' zero)."""
        return min(series[0][0] for series in (self.odom, self.resets, self.uncertainty) if series)

    def swap_time(self, first_policy: str) -> float | None:
        """ROS time of the first diagnostics naming another policy than `first_policy`."""
        return next((t for t, version, _ in self.policy if version != first_policy), None)

    def model_swap_time(self) -> float | None:
        """ROS time of the first diagnostics naming another world model than the monitor started with."""
        return next((t for t, model in self.model if model != self.model[0][1]), None)


def _params_file(path: Path, trainer: dict | None) -> Path:
    params = {"/**/command_sequence": {"ros__parameters": {"loop": True, "segments": WALK}}}
    if trainer is not None:
        params["/**/world_model_trainer"] = {"ros__parameters": trainer}
    path.write_text(yaml.safe_dump(params))
    return path


def _run_stack(args, name: str, trainer: dict | None, until) -> Listener:
    """Launch the stack on the variant (recording into OUT/bags, or, with `trainer`, training from
    them); stop it (SIGINT, as Ctrl-C) once `until(listener, elapsed)`."""
    domain = 60 + os.getpid() % 20
    out = Path(args.out)
    cmd = launch_command(
        variant=args.variant,
        world_model=True,
        trainer=trainer is not None,
        record=trainer is None,
        bag_dir=out / "bags",  # the logger's directory, then the trainer's replay buffer
        params_file=_params_file(out / f"{name}.yaml", trainer),
    )
    listener = Listener(domain)
    listener.thread.start()
    log_path = out / f"{name}.log"
    with log_path.open("w") as log:
        launch = subprocess.Popen(
            cmd, env=source_env(domain), stdout=log, stderr=subprocess.STDOUT, cwd=out, start_new_session=True
        )
        start = time.monotonic()
        try:
            while launch.poll() is None and not until(listener, time.monotonic() - start):
                time.sleep(1.0)
        finally:
            stop_process_group(launch, timeout_s=60.0)
            listener.stop.set()
            listener.thread.join(5.0)
    exits = node_exits(log_path.read_text())
    print(f"[adapt_demo] {name}: {time.monotonic() - start:.0f} s, exits {exits}", flush=True)
    return listener


def _window(pairs: list[tuple[float, float]], t0: float, t1: float) -> np.ndarray:
    return np.array([v for t, v in pairs if t0 <= t < t1], dtype=np.float64)


def figures(listener: Listener, t0: float, t1: float) -> dict:
    """What the robot did between times t0 and t1: tracking as the suite measures it (odometry against
    the /cmd_vel in force), falls from the simulator's reset counter, the monitor's uncertainty and
    anomaly share."""
    odom, cmd = np.array(listener.odom), np.array(listener.cmd)
    reward = RewardConfig()
    row = {"seconds": round(t1 - t0, 1)}
    inside = odom[(odom[:, 0] >= t0) & (odom[:, 0] < t1)] if len(odom) and len(cmd) else np.zeros((0, 4))
    inside = inside[inside[:, 0] >= cmd[0, 0]] if len(inside) else inside
    if len(inside):
        command = cmd[np.searchsorted(cmd[:, 0], inside[:, 0], side="right") - 1, 1:]
        track = tracking_reward(tracking_terms(command, inside[:, 1:3], inside[:, 3], reward), reward)
        lin_err = ((command[:, 0:2] - inside[:, 1:3]) ** 2).sum(1)
        row.update(
            samples_50hz=len(inside),
            tracking=round(float(track.mean()), 4),
            lin_vel_rmse_m_s=round(float(np.sqrt(lin_err.mean())), 4),
        )
    resets = [n for t, n in listener.resets if t0 <= t < t1]
    if resets:
        row.update(
            falls=max(resets) - min(resets),
            falls_per_minute=round(60 * (max(resets) - min(resets)) / (t1 - t0), 3),
        )
    uncertainty = _window(listener.uncertainty, t0, t1)
    if len(uncertainty):
        row["uncertainty_mean"] = round(float(uncertainty.mean()), 5)
        # the monitor publishes its anomaly flag when it changes: the share of time it was raised
        times = np.array([t for t, _ in listener.uncertainty if t0 <= t < t1])
        changes = np.array(listener.anomaly or [(-np.inf, False)], dtype=np.float64)
        raised = changes[np.maximum(np.searchsorted(changes[:, 0], times, side="right") - 1, 0), 1]
        raised[times < changes[0, 0]] = 0.0
        row["anomaly_share"] = round(float(raised.mean()), 4)
    return row


def _trainer_results(state_file: Path) -> list[dict]:
    """What each of the trainer's stages measured, accepted or refused (its state file)."""
    return json.loads(state_file.read_text()).get("results", []) if state_file.is_file() else []


def _plot(
    path: Path, before: Listener, after: Listener, swap: float | None, model_swap: float | None
) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6), sharex=False)
    for listener, label in (
        (before, "before (deployed policy)"),
        (after, "trainer on, then the adapted policy"),
    ):
        if not (listener.odom or listener.resets or listener.uncertainty):
            continue
        t0 = listener.origin()
        if len(listener.uncertainty) >= 50:
            u = np.array(listener.uncertainty)
            smooth = np.convolve(u[:, 1], np.ones(50) / 50, mode="valid")
            a.plot((u[49:, 0] - t0) / 60, smooth, label=label, lw=0.8)
        if listener.resets:
            r = np.array(listener.resets, dtype=np.float64)
            b.step((r[:, 0] - t0) / 60, r[:, 1] - r[0, 1], where="post", label=label)
    for t, label, style in ((model_swap, "world-model swap", ":"), (swap, "policy swap", "--")):
        if t is not None and (after.odom or after.resets or after.uncertainty):
            for ax in (a, b):
                ax.axvline((t - after.origin()) / 60, color="k", ls=style, lw=0.8, label=label)
    a.set(ylabel="monitor uncertainty (1 s mean)")
    b.set(xlabel="time in run (min)", ylabel="falls (simulator resets)")
    for ax in (a, b):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="friction_0.2")
    ap.add_argument("--record-s", type=float, default=300.0, help="bags recorded before adapting")
    ap.add_argument("--after-s", type=float, default=180.0, help="walking measured after the swap")
    ap.add_argument("--adapt-timeout-s", type=float, default=1800.0, help="give up waiting for a swap")
    ap.add_argument("--out", default="runs/adapt_demo")
    ap.add_argument("--pretrain", default=str(ROOT / "data" / "pretrain"), help="the trainer's anchor data")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a terminated demo still stops its stack
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: the demo starts from a clean directory")
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    settle_s = 10.0  # soft start and the first command

    before = _run_stack(args, "before", None, lambda _, t: t >= args.record_s + settle_s)
    # The stack runs in OUT: the trainer's model_versions/ and policy_versions/ are there, and so are the
    # directories the world-model and policy nodes accept reloads from (the same relative defaults).
    trainer = {"pretrain": args.pretrain, "threads": 1, "adapt.threads": 1}
    first_policy: list[str] = []

    def adapted_long_enough(listener: Listener, elapsed: float) -> bool:
        if not first_policy and listener.policy:
            first_policy.append(listener.policy[0][1])
        swap = listener.swap_time(first_policy[0]) if first_policy else None
        if swap is None:  # no swap: the trainer refused the policy, or is slower than allowed
            return elapsed > args.adapt_timeout_s or (
                listener.trainer_done() and int(listener.trainer.get("policies_accepted", 0)) == 0
            )
        return time.time() - swap >= args.after_s

    after = _run_stack(args, "after", trainer, adapted_long_enough)
    swap = after.swap_time(first_policy[0]) if first_policy else None
    start_before = before.odom[0][0] + settle_s if before.odom else 0.0
    start_after = after.odom[0][0] + settle_s if after.odom else 0.0
    end_after = after.odom[-1][0] if after.odom else 0.0
    result = {
        "variant": args.variant,
        "before": figures(before, start_before, before.odom[-1][0] if before.odom else 0.0),
        "swap_time": swap,
        "model_versions": sorted(p.name for p in (out / "model_versions").glob("rwm_v*.onnx")),
        "policy_versions": sorted(p.name for p in (out / "policy_versions").glob("policy_v*.onnx")),
        "rollbacks": max((r for *_, r in after.policy), default=0),
        "trainer_diagnostics": after.trainer,
        "trainer": _trainer_results(out / "model_versions" / "trainer_state.json"),
    }
    grace = 5.0  # the blend and the rollback window
    model_swap = after.model_swap_time()
    result["model_swap_time"] = model_swap
    policy_from = swap if swap is not None else end_after
    if model_swap is None or model_swap + grace >= policy_from:
        result["while_training"] = figures(after, start_after, policy_from)
    else:  # the monitor on the refined model, the deployed policy still driving
        result["while_training"] = figures(after, start_after, model_swap)
        result["after_model_swap"] = figures(after, model_swap + grace, policy_from)
    if swap is not None:
        result["after"] = figures(after, swap + grace, end_after)
    text = json.dumps(result, indent=1, default=str).replace(f"{ROOT}/", "")  # paths in the checkout
    (out / "adapt_demo.json").write_text(text + "\n")
    _plot(out / "adapt_demo.png", before, after, swap, model_swap)
    keep = ("stage", "accepted", "reason", "error_before", "error_after", "new_error_before",
            "new_error_after", "deployed", "candidate", "wall_s")  # fmt: skip
    shown = {**result, "trainer": [{k: r[k] for k in keep if k in r} for r in result["trainer"]]}
    print(json.dumps(shown, indent=1, default=str))
    # The loop ran if the trainer finished (a refused version is a result too); not if it timed out.
    return 0 if swap is not None or after.trainer_done() else 1


if __name__ == "__main__":
    sys.exit(main())
