"""Evaluate a policy in simulation the same way for every policy (PPO, MBPO-PPO, any ONNX export).

100 robots run one episode of 20 s each with commands from the training distribution and a fixed
seed; a fall ends that robot's episode. Reported: the tracking reward normalized to [0, 1]
(weighted exp kernels of linear and yaw-rate tracking over the sum of their weights, averaged over
all steps lived), linear-velocity and yaw-rate RMSE (also split into the first second after a command
change and the rest), falls with when and under which command they happened, and wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rwm.robot.policy_io import includes_last_action, raw_to_targets
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig
from rwm.sim.reward import tracking_reward

TRANSIENT_S = 1.0
"""Steps within this time after a command change count as transient in the RMSE split."""


def _rms(sum_sq: float, count: int) -> float | None:
    """Root mean square, or None when no step fell in the group."""
    return round(float(np.sqrt(sum_sq / count)), 4) if count else None


@dataclass(frozen=True)
class PolicyEvalConfig:
    episodes: int = 100
    episode_length_s: float = 20.0
    seed: int = 12345
    robot: str = "anymal_d"
    num_threads: int = 0


def evaluate_policy(
    policy: Callable[[np.ndarray], np.ndarray], obs_dim: int, cfg: PolicyEvalConfig = PolicyEvalConfig()
) -> dict:
    """Run `policy` (observations -> raw actions, batched) and return the summary figures."""
    env_cfg = EnvConfig(
        num_envs=cfg.episodes,
        robot=cfg.robot,
        episode_length_s=cfg.episode_length_s,
        seed=cfg.seed,
        num_threads=cfg.num_threads,
        include_last_action=includes_last_action(obs_dim),
    )
    env = BatchedAnymalEnv(env_cfg)
    n, steps = cfg.episodes, env.max_episode_steps
    alive = np.ones(n, dtype=bool)
    lived = np.zeros(n)
    track = np.zeros(n)
    lin_sq = np.zeros(n)
    yaw_sq = np.zeros(n)
    transient = round(TRANSIENT_S / env_cfg.reward.dt)
    since_change = np.zeros(n, dtype=np.int64)
    lin_sq_transient, count_transient = 0.0, 0
    falls: list[dict] = []
    obs = env.observation()
    start = time.perf_counter()
    for _ in range(steps):
        command = env.command.copy()
        out = env.step(raw_to_targets(policy(obs)))
        s = out.final_state
        lived += alive
        track += alive * tracking_reward(out.terms, env_cfg.reward)
        lin_err = ((command[:, 0:2] - s[:, 0:2]) ** 2).sum(1)
        lin_sq += alive * lin_err
        yaw_sq += alive * (command[:, 2] - s[:, 5]) ** 2
        in_transient = alive & (since_change < transient)
        lin_sq_transient += float(lin_err[in_transient].sum())
        count_transient += int(in_transient.sum())
        for i in np.flatnonzero(alive & out.terminated):
            falls.append(
                {
                    "episode": int(i),
                    "time_s": round(float(lived[i]) * env_cfg.reward.dt, 2),
                    "command": np.round(command[i], 2).tolist(),
                }
            )
        alive &= ~out.terminated
        since_change = np.where((env.command != command).any(1), 0, since_change + 1)
        obs = out.obs
    wall = time.perf_counter() - start
    env.close()
    total = lived.sum()
    return {
        "episodes": n,
        "episode_length_s": cfg.episode_length_s,
        "seed": cfg.seed,
        "falls": int((~alive).sum()),
        "tracking_reward_normalized": round(float(track.sum() / total), 4),
        "lin_vel_rmse_m_s": round(float(np.sqrt(lin_sq.sum() / total)), 4),
        "lin_vel_rmse_first_s_after_command_change_m_s": _rms(lin_sq_transient, count_transient),
        "lin_vel_rmse_steady_m_s": _rms(float(lin_sq.sum()) - lin_sq_transient, int(total) - count_transient),
        "yaw_rate_rmse_rad_s": round(float(np.sqrt(yaw_sq.sum() / total)), 4),
        "steps_evaluated": int(total),
        "fall_events": falls,
        "wall_time_s": round(wall, 1),
    }
