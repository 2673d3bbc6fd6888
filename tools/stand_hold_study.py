"""How soon does the policy node's stand hold catch a robot stopped after walking, and how far does the
robot wander before it does? Robots walk 5 s under a training command through the deployed control
loop (`rwm.control.simulated`), then get the zero command for 60 s (`--walk-s 0`: from their start,
through the soft start, as the main job's robot stands its first seconds); per candidate setting of the hold
(`SafetyConfig` fields as JSON), the base's displacement from 3 s after the stop (what
`bench/bench_soak.py` counts per standing phase), when each robot was first held, how fast its base
moved in the 3 s after (while held: a robot rocking on its held targets; at all), and falls.

    python tools/stand_hold_study.py --robots 40 --seed 777 \
        --candidates '{"default": {}, "still_0.1": {"stand_still_s": 0.1}}' [--walk-s 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm")]

import numpy as np  # noqa: E402

from rwm.control.policy_loop import Mode  # noqa: E402
from rwm.control.safety import SafetyConfig  # noqa: E402
from rwm.control.simulated import SimulatedControlLoops  # noqa: E402
from rwm.export.runtime import OnnxPolicy  # noqa: E402
from rwm.robot import contract as C  # noqa: E402
from rwm.robot.policy_io import includes_last_action  # noqa: E402
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig  # noqa: E402
from rwm.sim.commands import CommandConfig  # noqa: E402

SKIP_S, STAND_S = 3.0, 60.0
SWAY_S = 3.0
"""The base's largest horizontal speed in this long after the hold first takes the robot: while held
(`sway`, how much it rocks; capped by the speed that releases it) and whoever has it (`moved`: a robot
that tips is released and caught by the policy)."""


def judge(policy: OnnxPolicy, safety: SafetyConfig, robots: int, seed: int, walk_s: float = 5.0) -> dict:
    env = BatchedAnymalEnv(
        EnvConfig(
            num_envs=robots,
            episode_length_s=walk_s + STAND_S + 1.0,
            seed=seed,
            include_last_action=includes_last_action(policy.obs_dim),
            commands=CommandConfig(resample_time_s=1e9),
        )
    )
    loops = SimulatedControlLoops(policy, policy.obs_dim, robots, safety)
    walk, skip, end = (round(s / C.POLICY_DT) for s in (walk_s, walk_s + SKIP_S, walk_s + STAND_S))
    fell = np.zeros(robots, dtype=bool)
    held_at = np.full(robots, np.nan)
    sway = np.zeros(robots)
    moved = np.zeros(robots)
    start = None
    for k in range(1, end + 1):
        if k == max(walk, 1):  # before the first tick when the robots do not walk
            env.command[:] = 0.0
        if k == skip:
            start = np.array([d.qpos[:2] for d in env.datas])
        fell |= env.step(loops(env.measured_state(), env.command, k * C.POLICY_DT)).terminated
        held = np.array([loop.mode is Mode.STAND for loop in loops.loops])
        if k > walk:
            held_at = np.where(np.isnan(held_at) & held, (k - walk) * C.POLICY_DT, held_at)
            since_held = (k - walk) * C.POLICY_DT - held_at
            speed = np.hypot(*np.array([d.qvel[:2] for d in env.datas]).T)
            sway = np.where(held & (since_held <= SWAY_S), np.maximum(sway, speed), sway)
            moved = np.where(since_held <= SWAY_S, np.maximum(moved, speed), moved)  # NaN: not yet held
    drift = np.linalg.norm(np.array([d.qpos[:2] for d in env.datas]) - start, axis=1)[~fell]
    env.close()
    return {
        "falls": int(fell.sum()),
        "drift_m_median": round(float(np.median(drift)), 3),
        "drift_m_max": round(float(drift.max()), 3),
        "held_after_s_median": round(float(np.nanmedian(held_at)), 2),
        "held_after_s_max": round(float(np.nanmax(held_at)), 2),
        "never_held": int(np.isnan(held_at).sum()),
        "sway_m_s_median": round(float(np.median(sway[~fell])), 3),
        "sway_m_s_max": round(float(sway[~fell].max()), 3),
        "moved_m_s_median": round(float(np.median(moved[~fell])), 3),
        "moved_m_s_max": round(float(moved[~fell].max()), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="models/anymal_d_ppo.onnx")
    ap.add_argument("--robots", type=int, default=40)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--walk-s", type=float, default=5.0, help="seconds walked before the stop (0: none)")
    ap.add_argument("--candidates", default='{"default": {}}', help="JSON: name -> SafetyConfig fields")
    ap.add_argument("--out", default="runs/stand_hold_study.json")
    args = ap.parse_args()
    policy = OnnxPolicy(args.policy)
    results = {}
    for name, fields in json.loads(args.candidates).items():
        safety = replace(SafetyConfig(), **fields)
        results[name] = {**fields, **judge(policy, safety, args.robots, args.seed, args.walk_s)}
        print(json.dumps({name: results[name]}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "candidates": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
