"""Batched environment throughput against the raw MuJoCo ceiling, measured in the same run.

Ceiling: `mj_step(model, data, 8)` on the same robots, split over the same worker threads, with no
state extraction, contacts, reward, commands or resets. Environment: `BatchedAnymalEnv.step` with
joint targets that wobble around the standing pose (contacts change as in walking data).
Prints JSON; the goal is ratio >= 0.70 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np

from rwm.robot import contract as C
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num-envs", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200, help="environment steps per measurement")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    env = BatchedAnymalEnv(EnvConfig(num_envs=args.num_envs, num_threads=args.threads, seed=0))
    rng = np.random.default_rng(0)
    actions = C.DEFAULT_JOINT_POS + rng.normal(0.0, 0.15, (args.steps, args.num_envs, 12))
    for k in range(20):  # warm-up
        env.step(actions[k])

    t0 = time.perf_counter()
    for k in range(args.steps):
        env.step(actions[k])
    env_time = time.perf_counter() - t0

    chunks = [env.datas[c[0] : c[-1] + 1] for c in env._chunks]
    model = env.model

    def raw(datas: list) -> None:
        for d in datas:
            mujoco.mj_step(model, d, C.DECIMATION)

    pool = ThreadPoolExecutor(len(chunks))
    t0 = time.perf_counter()
    for _ in range(args.steps):
        list(pool.map(raw, chunks))
    raw_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(max(1, args.steps // 4)):
        raw(env.datas)
    raw_single = (time.perf_counter() - t0) / max(1, args.steps // 4)
    pool.shutdown()
    env.close()

    n_phys = args.steps * args.num_envs * C.DECIMATION
    result = {
        "num_envs": args.num_envs,
        "threads": len(chunks),
        "env_steps_per_s": round(args.steps * args.num_envs / env_time),
        "env_physics_steps_per_s": round(n_phys / env_time),
        "raw_physics_steps_per_s": round(n_phys / raw_time),
        "raw_physics_steps_per_s_one_thread": round(args.num_envs * C.DECIMATION / raw_single),
        "ratio_env_to_raw": round(raw_time / env_time, 3),
        "goal_ratio": 0.70,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
