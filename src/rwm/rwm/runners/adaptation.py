"""Policy adaptation from the robot's own bags, with rsl-rl's PPO, in one of two places (`dynamics`):

- `imagination`: MOPO-PPO (RWM-U, arXiv 2504.16680). The deployed policy (its ONNX actor; the critic
  learns from scratch) is fine-tuned in the imagination of a world-model ensemble refined on the bags,
  the imagined robots starting from real histories (mostly the bags', some pretraining data), each
  imagined step's reward lowered by the ensemble's disagreement times `uncertainty_penalty`.
- `identified`: real-to-sim. The bags identify the robot within the simulator's family
  (`rwm.sim.identification`: the variant whose short replays of the logged targets stay closest to
  the logged states), and the deployed policy is fine-tuned in the simulator on a mixture of that
  robot and the training family (`RobotMixture`), so that it does not forget the nominal robot.
  In imagination every candidate declined on the robot of its bags (models/README.md); the
  simulator's physics carries what the learned model got wrong. Its limit: the robot must be close to
  a member of the simulated family.

Validation before anything is written: the candidate and the deployed policy both run the same
simulated episodes of the nominal robot (a seed used for nothing else); the candidate is accepted
only if it falls no more often and its tracking is not lower beyond `tracking_tolerance`. Then
`policy_v<N>.onnx` appears in the versions directory, atomically (written to a temporary name and
renamed), beside `policy_v<N>.json` with its figures. The simulator only judges: on the robot, the
policy node's rollback (a fall, a watchdog hold or an anomaly soon after the swap) is the last guard.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from rsl_rl.runners import OnPolicyRunner

from rwm.data.array_dataset import ArrayDataset
from rwm.data.bag_loader import load_bags
from rwm.data.trajectory import Trajectory
from rwm.evaluation.policy_eval import PolicyEvalConfig, evaluate_policy
from rwm.export.policy_onnx import load_actor_from_onnx
from rwm.export.runtime import OnnxPolicy
from rwm.models.factory import load_robot_checkpoint
from rwm.rl.imagination_env import ImaginationConfig, ImaginationEnv
from rwm.rl.vec_env import AnymalVecEnv
from rwm.robot.frames import gravity_z_at_tilt
from rwm.robot.mjcf import build_robot
from rwm.runners.mbpo import deterministic_policy
from rwm.runners.ppo import PPOConfig, TrainConfig, export_runner_policy, runner_config, warm_up_critic
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig, PushConfig
from rwm.sim.identification import IdentificationConfig, identify_robot
from rwm.sim.variants import NOMINAL, TRAINING_RANGES, RobotMixture, RobotVariant
from rwm.storage.replay_buffer import ReplayBuffer
from rwm.training.distributed import check_device

VERSION = re.compile(r"policy_v(\d+)\.onnx$")
SOURCES = {
    "imagination": "adapt-policy (MOPO-PPO)",
    "identified": "adapt-policy (PPO on the identified robot)",
}
DYNAMICS = tuple(SOURCES)


@dataclass
class AdaptConfig:
    """A policy adaptation's budget and its acceptance rule (the trainer node's `adapt.` parameters)."""

    critic_warmup: int = field(default=20, metadata={"range": (0, 100_000)})
    """PPO iterations with the actor frozen first: the critic starts from scratch, and an actor
    updated on a fresh critic's advantages forgets what it could do."""
    iterations: int = field(default=60, metadata={"range": (1, 100_000)})
    """PPO updates of the actor (after the critic's warm-up): 60 were the MOPO-PPO runs'; on the
    identified robot 30 (after 40, nominal tracking fell by up to 0.012 on one seed; models/README.md)."""
    uncertainty_penalty: float = field(default=1.0, metadata={"range": (0.0, 1000.0)})
    """MOPO's lambda: each imagined step's reward is lowered by this times the ensemble's disagreement."""
    init_std: float = field(default=0.3, metadata={"range": (0.0, 10.0)})
    """Exploration std the deployed actor starts fine-tuning with (raw action units)."""
    learning_rate: float = field(default=3e-4, metadata={"range": (0.0, 1.0)})
    """PPO's initial learning rate (adaptive on the KL, as in rsl-rl)."""
    freeze_normalization: bool = True
    """Keep the deployed actor's observation normalization as its training fitted it. rsl-rl
    otherwise refits it on the imagined robots of the bags, which moves every input the actor sees,
    outside PPO's KL step. On a floor of friction 0.2 after 25 iterations, refitted: 46 of 50
    validation episodes fell (the deployed policy: 35); frozen: 38, tracking 0.579 (0.532). After 60
    the candidate declined either way (models/README.md)."""
    imagination: ImaginationConfig = field(
        default_factory=lambda: ImaginationConfig(
            num_envs=512,
            online_fraction=0.8,
            termination_penalty=2.0,
            max_tilt_gravity_z=gravity_z_at_tilt(20.0),
            obs_noise=TRAINING_RANGES.obs_noise,
        )
    )
    """Imagined robots: most start from the bags' histories; a fall is a tilt beyond 20 degrees (as for
    MBPO-PPO: `rwm fall-tilt`), and the observations carry the sensor noise the deployed policy was
    trained with (without both, a fine-tuned candidate fell in 5 of 50 nominal episodes where the
    deployed policy fell in none). `identified` takes its robot count and fall penalty."""
    validation_episodes: int = field(default=50, metadata={"range": (1, 100_000)})
    """Simulated episodes on the nominal robot that judge a candidate against the deployed policy."""
    validation_episode_s: float = field(default=20.0, metadata={"range": (1.0, 3600.0)})
    """Length of each validation episode, s."""
    validation_seed: int = 4711
    """Seed of the simulated validation episodes (used for nothing else)."""
    tracking_tolerance: float = field(default=0.01, metadata={"range": (0.0, 1.0)})
    """A candidate's nominal tracking may be this much lower than the deployed policy's."""
    seed: int = 0
    """Seed of the imagined or simulated robots, of PPO and of the identification's replays."""
    threads: int = field(default=2, metadata={"range": (1, 256)})
    """Torch threads, and for `identified` the simulator's and the replays' (the trainer beside a
    running stack keeps to 1)."""
    device: str = "cpu"
    """Where imagination and PPO run (cpu|cuda); validation simulates on the CPU."""
    dynamics: str = "imagination"
    """Where the policy is fine-tuned: `imagination` (MOPO-PPO in the world model) or `identified`
    (PPO in the simulator set to the robot identified from the bags, mixed with the training family)."""
    identified_fraction: float = field(default=0.25, metadata={"range": (0.0, 1.0)})
    """`identified`: share of the simulated robots that are the identified robot (the rest are drawn
    from the training family). On ice after 40 iterations (seed 3), 0.5 cost 0.036 of nominal
    tracking and 0.25 cost 0.006; trained on the ice robot alone, 0.115 (models/README.md)."""
    identification: IdentificationConfig = field(default_factory=IdentificationConfig)
    """`identified`: how the bags are replayed (its seed and threads are this config's)."""

    def __post_init__(self) -> None:
        if self.dynamics not in DYNAMICS:
            raise ValueError(f"adapt: dynamics {self.dynamics!r} is not one of {DYNAMICS}")
        if not 0.0 <= self.identified_fraction <= 1.0:
            raise ValueError(f"adapt: identified_fraction {self.identified_fraction} must be in [0, 1]")


@dataclass
class AdaptResult:
    accepted: bool
    reason: str
    version: int | None = None
    onnx: str | None = None
    deployed: dict = field(default_factory=dict)
    """The deployed policy on the validation episodes (and on `check_variant`, when given)."""
    candidate: dict = field(default_factory=dict)
    bag_rows: int = 0
    fall_starts: int = 0
    """Imagined robots started from a history that led into a real fall (`fall_start_fraction`)."""
    identified: dict = field(default_factory=dict)
    """`identified` dynamics: the robot found in the bags and the replay errors (its and the nominal
    robot's)."""
    wall_s: float = 0.0


def next_policy_version(versions_dir: Path) -> int:
    found = [int(m.group(1)) for p in versions_dir.glob("policy_v*.onnx") if (m := VERSION.search(p.name))]
    return max(found, default=0) + 1


def validation_figures(policy, obs_dim: int, cfg: AdaptConfig, variant: RobotVariant) -> dict:
    """A policy on `cfg`'s validation episodes of one simulated robot: falls, tracking, RMSE."""
    run = evaluate_policy(
        policy,
        obs_dim,
        PolicyEvalConfig(
            episodes=cfg.validation_episodes,
            episode_length_s=cfg.validation_episode_s,
            seed=cfg.validation_seed,
            variant=variant,
        ),
    )
    return {k: run[k] for k in ("falls", "tracking_reward_normalized", "lin_vel_rmse_m_s", "episodes")}


def freeze_observation_normalization(actor) -> None:
    """Stop an rsl-rl actor's normalizer from learning (its own `until`: it learns until its count)."""
    normalizer = actor.obs_normalizer
    normalizer.until = int(normalizer.count)


def fine_tune_deployed(env, policy: str | Path, cfg: AdaptConfig, log_dir: str | Path) -> OnPolicyRunner:
    """The deployed actor (ONNX) fine-tuned with PPO in `env` on `cfg`'s budget: a fresh critic warmed
    up first, then the actor's iterations. `env` is the imagination or the identified robot's
    simulator; `tools/adaptation_oracle.py` runs the same in the shifted robot's own simulator."""
    ppo = PPOConfig(init_std=cfg.init_std, learning_rate=cfg.learning_rate)
    runner = OnPolicyRunner(
        env, runner_config(TrainConfig(ppo=ppo, seed=cfg.seed)), log_dir=str(log_dir), device=cfg.device
    )
    load_actor_from_onnx(runner.alg.actor, policy)
    if cfg.freeze_normalization:
        freeze_observation_normalization(runner.alg.actor)
    warm_up_critic(runner, cfg.critic_warmup)
    runner.learn(num_learning_iterations=cfg.iterations, init_at_random_ep_len=cfg.critic_warmup == 0)
    return runner


def adapt_policy(
    policy: str | Path,
    world_model: str | Path | None,
    bags: list[Path],
    versions_dir: str | Path,
    cfg: AdaptConfig = AdaptConfig(),
    pretrain: str | Path | None = None,
    check_variant: tuple[str, RobotVariant] | None = None,
) -> AdaptResult:
    """Fine-tune `policy` (ONNX) on `bags` where `cfg.dynamics` says (the imagination of
    `world_model`, a checkpoint, ideally an ensemble refined on the bags; or the simulator of the robot
    identified in them), validate, and write a new version. `check_variant` (name, variant) adds
    figures on that simulated robot to the result, for the record; acceptance is on the nominal robot."""
    if cfg.dynamics == "imagination" and world_model is None:
        raise ValueError("adapt: imagination needs a world model; give one, or use dynamics 'identified'")
    start = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    versions = Path(versions_dir)
    versions.mkdir(parents=True, exist_ok=True)
    trajectories, report = load_bags(bags)
    usable = [t for t in trajectories if len(t) > cfg.imagination.history]
    result = AdaptResult(False, "", bag_rows=sum(len(t) for t in usable))
    if not usable:
        result.reason = f"no trajectory of more than {cfg.imagination.history} steps in the bags: {report}"
        return result
    if cfg.dynamics == "identified":
        env = identified_simulation(usable, cfg, result)
    else:
        buffer = ReplayBuffer(ArrayDataset(pretrain) if pretrain else None, seed=cfg.seed)
        for t in usable:
            buffer.add(t.state, t.action, t.contacts)
        model, _ = load_robot_checkpoint(world_model)
        model.to(check_device(cfg.device))
        imagined = replace(cfg.imagination, uncertainty_penalty=cfg.uncertainty_penalty, seed=cfg.seed)
        env = ImaginationEnv(model, buffer, imagined)
    with tempfile.TemporaryDirectory(dir=versions, prefix=".adapt-") as tmp:
        try:
            deployed = OnnxPolicy(policy)
            runner = fine_tune_deployed(env, policy, cfg, tmp)
        finally:
            env.close()
        result.fall_starts = getattr(env, "fall_starts", 0)
        candidate = deterministic_policy(runner)
        checks = [("nominal", NOMINAL), *([check_variant] if check_variant else [])]
        obs_dim = deployed.obs_dim
        result.deployed = {name: validation_figures(deployed, obs_dim, cfg, v) for name, v in checks}
        result.candidate = {name: validation_figures(candidate, obs_dim, cfg, v) for name, v in checks}
        before, after = result.deployed["nominal"], result.candidate["nominal"]
        result.wall_s = round(time.time() - start, 1)
        if after["falls"] > before["falls"]:
            result.reason = (
                f"more falls on the nominal robot: {after['falls']} > {before['falls']}; policy kept"
            )
            return result
        if (
            after["tracking_reward_normalized"]
            < before["tracking_reward_normalized"] - cfg.tracking_tolerance
        ):
            result.reason = (
                f"nominal tracking fell: {after['tracking_reward_normalized']:.3f} < "
                f"{before['tracking_reward_normalized']:.3f} - {cfg.tracking_tolerance}; policy kept"
            )
            return result
        version = next_policy_version(versions)
        onnx_tmp = Path(tmp) / "policy.onnx"
        meta = {
            "source": SOURCES[cfg.dynamics],
            "version": version,
            "parent": str(policy),
            "bag_rows": result.bag_rows,
        }
        export_runner_policy(runner, onnx_tmp, meta)
        result.accepted, result.reason, result.version = True, "validated", version
        final = versions / f"policy_v{version}.onnx"
        result.onnx = str(final)
        (versions / f"policy_v{version}.json").write_text(
            json.dumps({**asdict(result), "config": asdict(cfg)}, indent=1, default=str)
        )
        os.replace(onnx_tmp, final)  # last: its appearance announces a complete version
    return result


def training_mixture(robot: RobotVariant, fraction: float) -> RobotMixture:
    """`robot` at `fraction` of the resets, the training family at the rest, every robot with the
    sensor noise the deployed policy was trained with."""
    return RobotMixture(replace(robot, obs_noise=TRAINING_RANGES.obs_noise), fraction)


def identified_simulation(
    trajectories: list[Trajectory], cfg: AdaptConfig, result: AdaptResult
) -> AnymalVecEnv:
    """The simulator of the robot the bags identify (recorded in `result.identified`), mixed with the
    training family at `cfg.identified_fraction`; the deployed policy's sensor noise on every robot."""
    robot = build_robot()
    logs = [(t.state, t.action, t.contacts) for t in trajectories]
    found = identify_robot(robot, logs, replace(cfg.identification, seed=cfg.seed, threads=cfg.threads))
    result.identified = {
        "variant": asdict(found.variant),
        "replay_error": round(found.error, 5),
        "nominal_replay_error": round(found.nominal_error, 5),
        "evaluations": found.evaluations,
    }
    env_cfg = EnvConfig(
        num_envs=cfg.imagination.num_envs,
        pushes=PushConfig(enabled=True),
        randomization=training_mixture(found.variant, cfg.identified_fraction),
        termination_penalty=cfg.imagination.termination_penalty,
        seed=cfg.seed,
        num_threads=cfg.threads,
    )
    return AnymalVecEnv(env_cfg, BatchedAnymalEnv(env_cfg, robot))
