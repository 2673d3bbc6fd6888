"""Batched environment throughput against the raw MuJoCo ceiling, measured in the same run.

Both runs start from the same snapshot of every robot and apply the same sequence of joint targets
(wobbling around the standing pose, so contacts change as in walking data), so the physics work is
the same. Ceiling: set `ctrl` and `mj_step(model, data, 8)`, split over the same worker threads,
with nothing else. Environment: `BatchedAnymalEnv.step` (state extraction, contacts, reward,
commands, resets, observation). Prints JSON; the goal is ratio >= 0.70 on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
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
    snapshot = [copy.copy(d) for d in env.datas]

    t0 = time.perf_counter()
    resets = 0
    for k in range(args.steps):
        out = env.step(actions[k])
        resets += int((out.terminated | out.truncated).sum())
    env_time = time.perf_counter() - t0
    model = env.model

    def raw_run(threads: int) -> float:
        datas = [copy.copy(d) for d in snapshot]
        chunks = [
            list(zip(c, datas[c[0] : c[-1] + 1], strict=True))
            for c in np.array_split(np.arange(len(datas)), threads)
        ]

        def raw(chunk: list, k: int) -> None:
            for i, d in chunk:
                d.ctrl[:] = actions[k, i]
                mujoco.mj_step(model, d, C.DECIMATION)

        with ThreadPoolExecutor(threads) as pool:
            t0 = time.perf_counter()
            for k in range(args.steps):
                list(pool.map(raw, chunks, [k] * len(chunks)))
            return time.perf_counter() - t0

    raw_time = raw_run(len(env._chunks))
    raw_single = raw_run(1)
    env.close()

    n_phys = args.steps * args.num_envs * C.DECIMATION
    result = {
        "num_envs": args.num_envs,
        "threads": len(env._chunks),
        "env_steps_per_s": round(args.steps * args.num_envs / env_time),
        "env_physics_steps_per_s": round(n_phys / env_time),
        "raw_physics_steps_per_s": round(n_phys / raw_time),
        "raw_physics_steps_per_s_one_thread": round(n_phys / raw_single),
        "resets_during_env_run": resets,
        "ratio_env_to_raw": round(raw_time / env_time, 3),
        "goal_ratio": 0.70,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
