"""Evaluate a policy in simulation the same way for every policy (PPO, MBPO-PPO, any ONNX export).

100 robots run one episode of 20 s each with commands from the training distribution and a fixed
seed; a fall ends that robot's episode. Reported: the tracking reward normalized to [0, 1]
(weighted exp kernels of linear and yaw-rate tracking over the sum of their weights, averaged over
all steps lived), linear-velocity and yaw-rate RMSE (also split into the first second after a command
change and the rest), falls with when and under which command they happened, and wall time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from rwm.robot.policy_io import includes_last_action, raw_to_targets
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig
from rwm.sim.commands import CommandConfig
from rwm.sim.reward import tracking_reward
from rwm.sim.variants import NOMINAL, RobotVariant, variants_named

TRANSIENT_S = 1.0
"""Steps within this time after a command change count as transient in the RMSE split."""


Controller = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
"""What drives the robots instead of the bare policy: (robots, 45) states, (robots, 3) commands,
time s -> (robots, 12) joint targets (`rwm.control.simulated.SimulatedControlLoops`)."""


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
    variant: RobotVariant = NOMINAL
    """The simulated robot's deviation from its model (`rwm.sim.dynamics`)."""


def _env_config(cfg: PolicyEvalConfig, obs_dim: int, commands: CommandConfig | None = None) -> EnvConfig:
    """One robot per episode, no pushes; commands from the training distribution unless given."""
    return EnvConfig(
        num_envs=cfg.episodes,
        robot=cfg.robot,
        episode_length_s=cfg.episode_length_s,
        seed=cfg.seed,
        num_threads=cfg.num_threads,
        include_last_action=includes_last_action(obs_dim),
        variant=cfg.variant,
        commands=commands or CommandConfig(),
    )


def evaluate_policy(
    policy: Callable[[np.ndarray], np.ndarray],
    obs_dim: int,
    cfg: PolicyEvalConfig = PolicyEvalConfig(),
    controller: Controller | None = None,
) -> dict:
    """Run `policy` (observations -> raw actions, batched) and return the summary figures.
    `controller` ((robots, 45) states, (robots, 3) commands, time s -> (robots, 12) joint targets):
    drive the robots with it instead, e.g. the deployed control loop
    (`rwm.control.simulated.SimulatedControlLoops`), fed the state with the variant's sensor noise
    (`BatchedAnymalEnv.measured_state`); tracking is still judged on the commands given."""
    env_cfg = _env_config(cfg, obs_dim)
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
    for k in range(steps):
        command = env.command.copy()
        if controller is None:
            targets = raw_to_targets(policy(obs))
        else:
            targets = controller(env.measured_state(), env.command, k * env_cfg.reward.dt)
        out = env.step(targets)
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


def evaluate_standing(
    policy: Callable[[np.ndarray], np.ndarray],
    obs_dim: int,
    cfg: PolicyEvalConfig = PolicyEvalConfig(),
    interval_s: float = 60.0,
    walk_s: float = 0.0,
    controller: Controller | None = None,
) -> dict:
    """Zero command for a whole episode: how far each robot's base wanders (the ground plane's
    horizontal distance from where it started), the figure a robot left standing is judged on; also,
    per `interval_s`, the median distance moved in it (a robot that rests, then starts to shuffle).

    `walk_s`: first walk that long under a command from the training distribution (a robot stopped
    after walking shuffles sooner), then stand; the drift counts from the stop. `controller`
    ((robots, 45) states, (robots, 3) commands, time s -> (robots, 12) joint targets): drive the
    robots with it instead of the bare policy, e.g. the deployed control loop
    (`rwm.control.simulated.SimulatedControlLoops`, its stand hold included), fed the state with the
    variant's sensor noise."""
    commands = CommandConfig(standing_fraction=1.0 if walk_s <= 0 else 0.0, resample_time_s=1e9)
    env = BatchedAnymalEnv(_env_config(cfg, obs_dim, commands))

    def base_xy() -> np.ndarray:
        return np.array([d.qpos[0:2] for d in env.datas])

    walk_steps = round(walk_s / env.cfg.reward.dt)
    start = last = base_xy()
    fell = np.zeros(cfg.episodes, dtype=bool)
    interval = max(1, round(interval_s / env.cfg.reward.dt))
    per_interval = []
    obs = env.observation()
    for k in range(1, env.max_episode_steps):  # the last step would reset every robot
        if k == walk_steps:
            env.command[:] = 0.0
            start = last = base_xy()
        if controller is None:
            targets = raw_to_targets(policy(obs))
        else:
            targets = controller(env.measured_state(), env.command, k * env.cfg.reward.dt)
        out = env.step(targets)
        fell |= out.terminated
        obs = out.obs
        if k > walk_steps and (k - walk_steps) % interval == 0:
            now = base_xy()
            moved = np.linalg.norm(now - last, axis=1)[~fell]
            per_interval.append(round(float(np.median(moved)), 3) if len(moved) else None)
            last = now
    drift = np.linalg.norm(base_xy() - start, axis=1)[~fell]
    env.close()
    return {
        "episodes": cfg.episodes,
        "duration_s": cfg.episode_length_s - walk_s,
        "walked_first_s": walk_s,
        "seed": cfg.seed,
        "falls": int(fell.sum()),
        "drift_m_median": round(float(np.median(drift)), 3) if len(drift) else None,
        "drift_m_max": round(float(drift.max()), 3) if len(drift) else None,
        "interval_s": interval_s,
        "moved_m_median_per_interval": per_interval,
    }


SUMMED = ("episodes", "falls", "steps_evaluated")


def evaluate_on_variants(
    policy: Callable[[np.ndarray], np.ndarray],
    obs_dim: int,
    names: list[str],
    cfg: PolicyEvalConfig = PolicyEvalConfig(),
    nominal_seeds: int = 5,
    variants_file: str | None = None,
    new_controller: Callable[[], Controller] | None = None,
) -> dict:
    """The robot-variant suite: `cfg.episodes` episodes on each named variant (`nominal` on
    `nominal_seeds` seeds, cfg.seed, cfg.seed + 1, ...); per variant the falls, tracking and RMSE.
    `new_controller`: a fresh controller of `cfg.episodes` robots for each run (`evaluate_policy`)."""
    variants = variants_named(names, variants_file)
    results = {}
    for name in names:
        seeds = [cfg.seed + k for k in range(nominal_seeds if name == "nominal" else 1)]
        runs = [
            evaluate_policy(
                policy,
                obs_dim,
                replace(cfg, seed=s, variant=variants[name]),
                new_controller() if new_controller else None,
            )
            for s in seeds
        ]
        merged = {k: sum(r[k] for r in runs) for k in SUMMED}
        steps = merged["steps_evaluated"]
        for key in ("tracking_reward_normalized", "lin_vel_rmse_m_s", "yaw_rate_rmse_rad_s"):
            weighted = sum(r[key] ** (2 if "rmse" in key else 1) * r["steps_evaluated"] for r in runs) / steps
            merged[key] = round(float(np.sqrt(weighted) if "rmse" in key else weighted), 4)
        for key in ("lin_vel_rmse_first_s_after_command_change_m_s", "lin_vel_rmse_steady_m_s"):
            merged[key] = runs[0][key] if len(runs) == 1 else round(float(np.mean([r[key] for r in runs])), 4)
        merged["fall_rate"] = round(merged["falls"] / merged["episodes"], 4)
        merged["seeds"] = seeds
        merged["fall_events"] = [
            dict(e, seed=s) for r, s in zip(runs, seeds, strict=True) for e in r["fall_events"]
        ]
        merged["variant"] = dataclasses.asdict(variants[name])
        results[name] = merged
    return results


def variants_table(results: dict) -> str:
    """Markdown: one row per variant."""
    rows = [
        "| robot variant | episodes | falls | tracking | lin. vel. RMSE steady / after a change (m/s) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['episodes']} | {r['falls']} ({100 * r['fall_rate']:.1f} %) | "
            f"{r['tracking_reward_normalized']:.3f} | {r['lin_vel_rmse_steady_m_s']} / "
            f"{r['lin_vel_rmse_first_s_after_command_change_m_s']} |"
        )
    return "\n".join(rows) + "\n"


def plot_variants(results: dict, path: str, title: str) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = list(results)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    a.bar(names, [100 * results[n]["fall_rate"] for n in names], color="tab:red")
    a.set(ylabel="falls, % of episodes", title=f"{title}: falls")
    b.bar(names, [results[n]["tracking_reward_normalized"] for n in names], color="tab:blue")
    b.set(ylabel="tracking (normalized)", ylim=(0, 1), title=f"{title}: tracking")
    for ax in (a, b):
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
