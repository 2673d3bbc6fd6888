"""Collect training data in simulation: rosbag2 recordings shaped like the real robot's, and array datasets.

`collect_bag` drives one AnymalSim the way the ROS stack drives the robot (targets at 50 Hz, held by
the drive PD for 8 physics steps, sensors at 400 Hz) so that simulated bags exercise the same loader
as hardware bags. `collect_dataset` runs the batched environment for volume. Both take an exploratory
controller by name now and a trained policy later.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np

from rwm.data.array_dataset import ArrayDatasetWriter, BatchedRecorder, DatasetMeta
from rwm.robot import contract as C
from rwm.sim.anymal_sim import AnymalSim
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig, PushConfig
from rwm.sim.commands import CommandConfig, CommandSampler
from rwm.sim.controllers import make_controller
from rwm.sim.variants import NOMINAL, RobotVariant, VariantRanges


class Controller(Protocol):
    """One robot: (episode time s, state (45,)) -> joint targets (12,), as in rwm.sim.controllers."""

    def reset(self, rng: np.random.Generator) -> None: ...

    def __call__(self, t: float, state: np.ndarray) -> np.ndarray: ...


class BatchPolicy(Protocol):
    """A batch of robots: (obs (N, obs_dim), state (N, 45)) -> joint targets (N, 12), rad, absolute.

    A policy may also define `reset_envs(ids)`; collect_dataset calls it for robots whose episode ended.
    """

    def __call__(self, obs: np.ndarray, state: np.ndarray) -> np.ndarray: ...


class ControllerBatch:
    """One exploratory controller per robot behind the batch-policy interface, restarted every episode."""

    def __init__(self, name: str, num_envs: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.controllers = [make_controller(name) for _ in range(num_envs)]
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.reset_envs(np.arange(num_envs))

    def reset_envs(self, ids: np.ndarray) -> None:
        for i in ids:
            self.controllers[i].reset(np.random.default_rng(self.rng.integers(2**63)))
        self.steps[ids] = 0

    def __call__(self, obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        targets = np.stack(
            [c(k * C.POLICY_DT, s) for c, k, s in zip(self.controllers, self.steps, state, strict=True)]
        )
        self.steps += 1
        return targets


def collect_bag(
    out_dir: str | Path,
    controller: str | Controller = "gait",
    duration_s: float = 60.0,
    seed: int = 0,
    storage: str = "mcap",
    robot: str = "anymal_d",
    cmd: Sequence[float] | None = None,
    reset_gap_s: float = 0.1,
    variant: RobotVariant = NOMINAL,
) -> dict:
    """Record a bag of one simulated robot (of `variant`); returns messages per topic, bag duration
    and falls.

    The command is `cmd` throughout, or sampled (CommandConfig ranges) at the start, every
    resample period and after each fall; /cmd_vel is written when it changes. A fallen robot gets a
    last joint command, is reset, and the clock skips `reset_gap_s` so the loader splits there.
    """
    from rwm.data.bag_writer import BagWriter  # here: array datasets need no rosbags

    if reset_gap_s <= 1.5 * C.POLICY_DT:
        raise ValueError(f"reset_gap_s must exceed {1.5 * C.POLICY_DT} s so that loaders split at resets")
    rng = np.random.default_rng(seed)
    sim = AnymalSim(robot_name=robot, variant=variant)
    ctrl = make_controller(controller) if isinstance(controller, str) else controller
    ctrl.reset(rng)
    commands = CommandConfig()
    sampler = CommandSampler(commands, rng)
    resample_steps = round(commands.resample_time_s / C.POLICY_DT)
    step_ns, gap_ns, end_ns = round(C.PHYSICS_DT * 1e9), round(reset_gap_s * 1e9), round(duration_s * 1e9)

    def next_command() -> np.ndarray:
        command = np.asarray(cmd, dtype=np.float64) if cmd is not None else sampler.sample(1)[0]
        if hasattr(ctrl, "set_command"):  # a policy tracks the command; exploratory controllers ignore it
            ctrl.set_command(command)
        return command

    falls, episode_steps, ns = 0, 0, 0
    with BagWriter(out_dir, storage) as bag:
        sim.reset(yaw=rng.uniform(-np.pi, np.pi))
        bag.write_cmd_vel(ns, next_command())
        bag.write_robot_sample(ns, sim)
        while ns < end_ns:
            state = sim.state()
            targets = ctrl(sim.time, state)
            bag.write_joint_command(ns, targets)
            if sim.fell:
                falls += 1
                ns += gap_ns
                sim.reset(yaw=rng.uniform(-np.pi, np.pi))
                ctrl.reset(rng)
                episode_steps = 0
                if cmd is None:
                    bag.write_cmd_vel(ns, next_command())
                bag.write_robot_sample(ns, sim)
                continue
            sim.set_targets(targets)
            for _ in range(C.DECIMATION):
                sim.step()
                ns += step_ns
                bag.write_robot_sample(ns, sim)
            episode_steps += 1
            if cmd is None and episode_steps % resample_steps == 0 and ns < end_ns:
                bag.write_cmd_vel(ns, next_command())
    return {
        "path": str(out_dir),
        "storage": storage,
        "messages": dict(bag.counts),
        "duration_s": ns / 1e9,
        "falls": falls,
    }


def collect_dataset(
    out_dir: str | Path,
    steps: int,
    num_envs: int = 64,
    controller: str | BatchPolicy = "gait",
    seed: int = 0,
    pushes: bool = True,
    robot: str = "anymal_d",
    episode_length_s: float = 20.0,
    num_threads: int = 0,
    randomization: VariantRanges | None = None,
    commands: CommandConfig = CommandConfig(),
    variant: RobotVariant | None = None,
) -> dict:
    """Run the batched environment for `steps` steps under `controller` and store every robot's trajectories.

    `controller` is a name from rwm.sim.controllers (one instance per robot) or a BatchPolicy;
    `randomization` draws a new robot at every reset (the data of a family of robots, stored with
    each robot's parameters, `ArrayDataset.robot_params`); `variant` makes every robot that one
    (stored with its parameters too); `commands` how often the command changes and how often it is
    zero (a deployed robot also stands).
    Returns transitions, rows, trajectories, falls and wall time.
    """
    if variant is not None and randomization is not None:
        raise ValueError("a dataset is of one robot variant or of a randomized family, not both")
    cfg = EnvConfig(
        num_envs=num_envs,
        robot=robot,
        seed=seed,
        num_threads=num_threads,
        episode_length_s=episode_length_s,
        pushes=PushConfig(enabled=pushes),
        randomization=randomization,
        commands=commands,
        variant=NOMINAL if variant is None else variant,
    )
    env = BatchedAnymalEnv(cfg)
    policy = (
        ControllerBatch(controller, num_envs, np.random.default_rng(seed + 1))
        if isinstance(controller, str)
        else controller
    )
    name = controller if isinstance(controller, str) else type(controller).__name__
    meta = DatasetMeta(
        robot=robot,
        seed=seed,
        source=f"batched_env {name}",
        extra={
            "num_envs": num_envs,
            "steps": steps,
            "pushes": pushes,
            "episode_length_s": episode_length_s,
            "randomization": None if randomization is None else asdict(randomization),
            "variant": None if variant is None else asdict(variant),
            "commands": asdict(commands),
        },
    )
    reset_envs = getattr(policy, "reset_envs", None)
    falls = 0
    start = time.perf_counter()
    try:
        with_robot_params = randomization is not None or variant is not None
        with ArrayDatasetWriter(out_dir, meta, with_robot_params=with_robot_params) as writer:
            recorder = BatchedRecorder(writer, num_envs)
            obs = env.observation()
            for _ in range(steps):
                out = recorder.step(env, policy(obs, env.state))
                obs = out.obs
                falls += int(out.terminated.sum())
                done = np.flatnonzero(out.terminated | out.truncated)
                if len(done) and reset_envs is not None:
                    reset_envs(done)
            recorder.finish()
    finally:
        env.close()
    return {
        "path": str(out_dir),
        "transitions": steps * num_envs,
        "rows": writer.num_rows,
        "trajectories": writer.num_trajectories,
        "falls": falls,
        "wall_s": time.perf_counter() - start,
    }
