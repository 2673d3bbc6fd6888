"""`make adapt-demo`: the loop of issue 17 through `ros2 launch`, on a simulated robot beyond the
training family (a variant of `beyond_training:` in config/robot_variants.yaml).

1. Before: the stack as deployed (shipped policy, RWM-U health monitor, data logger) walks the shifted
   robot through a looping command sequence for --record-s; its bags go to OUT/bags_before.
2. Adapt, live: the stack again, with the trainer on (its own process, nice 19) reading those bags: it
   refines the world model and fine-tunes the policy in its imagination (MOPO-PPO), validates both
   and announces them; the world-model node and the policy node swap them in while the robot walks.
   The run goes on for --after-s after the policy swap; its bags go to OUT/bags_after.
3. Figures, before against after the swap (the blend and the rollback window left out): tracking as
   the suite measures it (the normalized tracking reward of every 50 Hz row of the bags), linear
   velocity RMSE, falls (the simulator's resets), the monitor's uncertainty and its anomaly share;
   the policy node's version and rollbacks. JSON and a PNG in OUT.

    python tools/adapt_demo.py --variant payload_25kg --record-s 300 --after-s 180 --out runs/adapt_demo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from rwm.data.bag_loader import load_bags  # noqa: E402
from rwm.robot import contract as C  # noqa: E402
from rwm.sim.reward import RewardConfig  # noqa: E402
from rwm_ros.launch_stack import launch_command, node_exits, source_env, stop_process_group  # noqa: E402

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
        self.uncertainty: list[tuple[float, float]] = []
        self.anomaly: list[tuple[float, bool]] = []
        self.trainer: dict[str, str] = {}
        """The trainer's latest diagnostics (its stages' counts and last reason)."""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import rclpy  # noqa: PLC0415
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
        from rclpy.context import Context  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
        from std_msgs.msg import Bool, Float32  # noqa: PLC0415

        from rwm_ros.topics import STREAM_WRITER_QOS, TOPIC_WM_ANOMALY, TOPIC_WM_UNCERTAINTY  # noqa: PLC0415

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
            Bool, TOPIC_WM_ANOMALY, lambda m: self.anomaly.append((time.time(), m.data)), 10
        )
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        while not self.stop.is_set():
            executor.spin_once(timeout_sec=0.2)
        node.destroy_node()
        ctx.try_shutdown()

    def trainer_done(self) -> bool:
        """Both stages have run once and the trainer is idle (a rejected policy makes no swap)."""
        return int(self.trainer.get("adaptations", 0)) >= 1 and self.trainer.get("busy") == "False"

    def swap_time(self, first_policy: str) -> float | None:
        """ROS time of the first diagnostics naming another policy than `first_policy`."""
        return next((t for t, version, _ in self.policy if version != first_policy), None)


def _params_file(path: Path, trainer: dict | None) -> Path:
    params = {"/**/command_sequence": {"ros__parameters": {"loop": True, "segments": WALK}}}
    if trainer is not None:
        params["/**/world_model_trainer"] = {"ros__parameters": trainer}
    path.write_text(yaml.safe_dump(params))
    return path


def _run_stack(args, name: str, bag_dir: Path, trainer: dict | None, until) -> tuple[Listener, str]:
    """Launch the stack on the variant; stop it (SIGINT, as Ctrl-C) once `until(listener, elapsed)`."""
    domain = 60 + os.getpid() % 20
    out = Path(args.out)
    cmd = launch_command(
        variant=args.variant,
        world_model=True,
        trainer=trainer is not None,
        bag_dir=bag_dir,
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
    text = log_path.read_text()
    print(f"[adapt_demo] {name}: {time.monotonic() - start:.0f} s, exits {node_exits(text)}", flush=True)
    return listener, text


def _window(pairs: list[tuple[float, float]], t0: float, t1: float) -> np.ndarray:
    return np.array([v for t, v in pairs if t0 <= t < t1], dtype=np.float64)


def figures(bag_dir: Path, listener: Listener, t0: float, t1: float) -> dict:
    """What the robot did between ROS times t0 and t1: tracking from its bags (the suite's measure),
    falls from the simulator's reset counter, the monitor's uncertainty and anomaly share."""
    trajectories, _ = load_bags(sorted(p for p in bag_dir.iterdir() if (p / "metadata.yaml").is_file()))
    reward = RewardConfig()
    track, lin_sq, rows = 0.0, 0.0, 0
    for t in trajectories:
        keep = (t.time >= t0) & (t.time < t1)
        if not keep.any():
            continue
        s, cmd = t.state[keep], t.command[keep]
        lin_err = ((cmd[:, 0:2] - s[:, C.LIN_VEL][:, 0:2]) ** 2).sum(1)
        yaw_err = (cmd[:, 2] - s[:, C.ANG_VEL][:, 2]) ** 2
        wl, wy = reward.lin_vel_tracking, reward.yaw_rate_tracking
        terms = wl * np.exp(-lin_err / reward.tracking_sigma) + wy * np.exp(-yaw_err / reward.tracking_sigma)
        track += float(terms.sum() / (wl + wy))
        lin_sq += float(lin_err.sum())
        rows += int(keep.sum())
    resets = [n for t, n in listener.resets if t0 <= t < t1]
    uncertainty = _window(listener.uncertainty, t0, t1)
    anomaly = _window(listener.anomaly, t0, t1)
    return {
        "seconds": round(t1 - t0, 1),
        "rows_50hz": rows,
        "tracking": round(track / rows, 4) if rows else None,
        "lin_vel_rmse_m_s": round(float(np.sqrt(lin_sq / rows)), 4) if rows else None,
        "falls": (max(resets) - min(resets)) if resets else None,
        "falls_per_minute": round(60.0 * (max(resets) - min(resets)) / (t1 - t0), 3) if resets else None,
        "uncertainty_mean": round(float(uncertainty.mean()), 5) if len(uncertainty) else None,
        "anomaly_share": round(float(anomaly.mean()), 4) if len(anomaly) else None,
    }


def _plot(path: Path, before: Listener, after: Listener, swap: float | None) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6), sharex=False)
    for listener, label in (
        (before, "before (deployed policy)"),
        (after, "trainer on, then the adapted policy"),
    ):
        if listener.uncertainty:
            u = np.array(listener.uncertainty)
            t = u[:, 0] - u[0, 0]
            a.plot(t / 60, np.convolve(u[:, 1], np.ones(50) / 50, mode="same"), label=label, lw=0.8)
        if listener.resets:
            r = np.array(listener.resets, dtype=np.float64)
            b.step((r[:, 0] - r[0, 0]) / 60, r[:, 1] - r[0, 1], where="post", label=label)
    if swap is not None and after.uncertainty:
        for ax in (a, b):
            ax.axvline((swap - after.uncertainty[0][0]) / 60, color="k", ls="--", lw=0.8, label="policy swap")
    a.set(ylabel="monitor uncertainty (1 s mean)")
    b.set(xlabel="time in run (min)", ylabel="falls (simulator resets)")
    for ax in (a, b):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="payload_25kg")
    ap.add_argument("--record-s", type=float, default=300.0, help="bags recorded before adapting")
    ap.add_argument("--after-s", type=float, default=180.0, help="walking measured after the swap")
    ap.add_argument("--adapt-timeout-s", type=float, default=1800.0, help="give up waiting for a swap")
    ap.add_argument("--out", default="runs/adapt_demo")
    ap.add_argument("--pretrain", default=str(ROOT / "data" / "pretrain"), help="the trainer's anchor data")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: the demo starts from a clean directory")
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    settle_s = 10.0  # soft start and the first command

    before, _ = _run_stack(
        args, "before", out / "bags_before", None, lambda _, t: t >= args.record_s + settle_s
    )
    # The stack runs in OUT: the trainer's model_versions/ and policy_versions/ are there, and so are the
    # directories the world-model and policy nodes accept reloads from (the same relative defaults).
    trainer = {
        "replay_buffer": str(out / "bags_before"),
        "pretrain": args.pretrain,
        "adapt.threads": 1,
        "threads": 1,
    }
    first_policy: list[str] = []

    def adapted_long_enough(listener: Listener, elapsed: float) -> bool:
        if not first_policy and listener.policy:
            first_policy.append(listener.policy[0][1])
        swap = listener.swap_time(first_policy[0]) if first_policy else None
        if swap is None:  # no swap: the trainer refused the policy, or gave up, or is slower than allowed
            return elapsed > args.adapt_timeout_s or (
                listener.trainer_done() and int(listener.trainer.get("policies_accepted", 0)) == 0
            )
        return time.time() - swap >= args.after_s

    after, _ = _run_stack(args, "after", out / "bags_after", trainer, adapted_long_enough)
    # The stack publishes from start to end; the bags of "after" are the logger's (bag_dir of that run).
    swap = after.swap_time(first_policy[0]) if first_policy else None
    t_before = (before.resets[0][0] + settle_s, before.resets[-1][0]) if before.resets else (0.0, 0.0)
    result = {
        "variant": args.variant,
        "before": figures(out / "bags_before", before, *t_before),
        "swap_ros_time": swap,
        "policy_versions": sorted(p.name for p in (out / "policy_versions").glob("policy_v*.onnx")),
        "model_versions": sorted(p.name for p in (out / "model_versions").glob("rwm_v*.onnx")),
        "rollbacks": max((r for *_, r in after.policy), default=0),
        "trainer_diagnostics": after.trainer,
        "trainer": [
            json.loads(p.read_text()) for p in sorted((out / "policy_versions").glob("policy_v*.json"))
        ],
    }
    start_after = after.resets[0][0] + settle_s if after.resets else 0.0
    end_after = after.resets[-1][0] if after.resets else 0.0
    if swap is None:
        result["while_training"] = figures(out / "bags_after", after, start_after, end_after)
    else:
        grace = 5.0  # the blend and the rollback window
        result["while_training"] = figures(out / "bags_after", after, start_after, swap)
        result["after"] = figures(out / "bags_after", after, swap + grace, end_after)
    (out / "adapt_demo.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    _plot(out / "adapt_demo.png", before, after, swap)
    print(json.dumps({k: v for k, v in result.items() if k != "trainer"}, indent=1, default=str))
    # The loop ran if the trainer finished (a refused version is a result too); not if it timed out.
    return 0 if swap is not None or after.trainer_done() else 1


if __name__ == "__main__":
    sys.exit(main())
