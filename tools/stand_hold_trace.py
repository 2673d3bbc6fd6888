"""One robot standing from its start through the deployed control loop (`rwm.control.simulated`):
what its body does while the policy node's stand hold has it. Prints, every `--every` ticks, the
loop's mode, the base's position and height, projected gravity, base velocity, which feet touch the
ground (x: in contact; LF, RF, LH, RH, the contract's order, as the torques) and the joint torques:
how the monitor's false alarms on standing robots were traced to robots tipping over a diagonal on
their held targets (`models/README.md`, the stand hold).

    python tools/stand_hold_trace.py --seed 4242 --robot 18 --seconds 6 [--robots 20]
        [--release-speed 0.3]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm")]

import numpy as np  # noqa: E402

from rwm.control.safety import SafetyConfig  # noqa: E402
from rwm.control.simulated import SimulatedControlLoops  # noqa: E402
from rwm.evaluation.monitor_eval import MonitorEvalConfig, suite_env_config  # noqa: E402
from rwm.export.runtime import OnnxPolicy  # noqa: E402
from rwm.robot import contract as C  # noqa: E402
from rwm.sim.batched_env import BatchedAnymalEnv  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="models/anymal_d_ppo.onnx")
    ap.add_argument("--seed", type=int, default=MonitorEvalConfig.seed)
    ap.add_argument("--robots", type=int, default=MonitorEvalConfig.robots, help="robots simulated")
    ap.add_argument("--robot", type=int, default=0, help="the one printed")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--every", type=int, default=5, help="print every this many 50 Hz ticks")
    ap.add_argument("--release-speed", type=float, help="stand_release_base_speed (default: SafetyConfig's)")
    args = ap.parse_args()
    if not 0 <= args.robot < args.robots:
        ap.error(f"--robot must be in 0..{args.robots - 1}")
    policy = OnnxPolicy(args.policy)
    safety = SafetyConfig()
    if args.release_speed is not None:
        safety = replace(safety, stand_release_base_speed=args.release_speed)
    # the suite's robots (commands then zeroed): robot N is the one `rwm eval-monitor` walks on this seed
    suite = MonitorEvalConfig(robots=args.robots, duration_s=args.seconds, seed=args.seed)
    env = BatchedAnymalEnv(suite_env_config(suite, policy.obs_dim))
    loops = SimulatedControlLoops(policy, policy.obs_dim, args.robots, safety)
    print("t (s)  mode       base x, y (m)  z (m)  gravity (base)  velocity (m/s)  feet  torques (Nm)")
    for k in range(round(args.seconds / C.POLICY_DT)):
        env.command[:] = 0.0
        env.command_step[:] = 0
        state = env.measured_state()
        targets = loops(state, env.command, k * C.POLICY_DT)
        if k % args.every == 0:
            s, q = state[args.robot], env.datas[args.robot].qpos
            feet = "".join("x" if c else "." for c in env.contacts[args.robot, C.FOOT_CONTACTS])
            print(
                f"{k * C.POLICY_DT:5.2f}  {loops.loops[args.robot].mode.value:10s} {q[0]:+.3f} {q[1]:+.3f}  "
                f"{q[2]:.3f}  {np.array2string(s[C.GRAVITY], precision=3, sign='+', suppress_small=True)}  "
                f"{np.array2string(s[C.LIN_VEL], precision=3, sign='+', suppress_small=True)}  {feet}  "
                f"{np.array2string(s[C.JOINT_TORQUE], precision=0, suppress_small=True, max_line_width=200)}"
            )
        env.step(targets)
    env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
