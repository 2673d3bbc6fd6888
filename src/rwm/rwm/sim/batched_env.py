"""Many simulated ANYmal robots stepped together on all cores: the project's "real environment".

Each robot has its own `MjData`; a thread pool steps them (MuJoCo releases the GIL inside
`mj_step`). One environment step is 0.02 s: the joint targets are held for 8 physics steps of
0.0025 s with PD inside the physics loop. Commands are resampled per episode and within it, random
pushes are optional, and robots reset when they fall (`FallRule`: base contact, tilt or a sunk
base) or time out.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import mujoco
import numpy as np

from rwm.robot import contract as C
from rwm.robot.mjcf import RobotModel, build_robot
from rwm.robot.policy_io import obs_dim, policy_observation
from rwm.sim.commands import CommandConfig, CommandSampler
from rwm.sim.dynamics import SensorNoise, VariedRobot
from rwm.sim.reward import RewardConfig, reward_terms, total_reward
from rwm.sim.state import FallRule, read_contacts, read_state, states_from_raw
from rwm.sim.variants import OBS_NOISE_STD, ROBOT_PARAM_DIM, RobotMixture, RobotVariant, VariantRanges


@dataclass(frozen=True)
class PushConfig:
    """Random pushes: a velocity kick of the base, now and then."""

    enabled: bool = False
    interval_s: tuple[float, float] = (5.0, 10.0)
    max_velocity: float = 0.5
    """Largest horizontal velocity change, m/s."""


@dataclass(frozen=True)
class EnvConfig:
    """Batched environment settings."""

    num_envs: int = 64
    robot: str = "anymal_d"
    urdf: str | None = None
    """Explicit URDF path; None searches as CONTRACT.md says."""
    episode_length_s: float = 20.0
    num_threads: int = 0
    """Worker threads; 0 uses every core."""
    seed: int = 0
    include_last_action: bool = True
    """Append the last raw action to the policy observation (Table S4 plus 12)."""
    falls: FallRule = field(default_factory=FallRule)
    """When a robot's episode ends in a fall."""
    reset_joint_noise: float = 0.1
    """Uniform noise on the standing pose at reset, rad."""
    termination_penalty: float = 0.0
    """Subtracted from the reward of a transition that ends in a fall (not in Table S5; 0 = off)."""
    commands: CommandConfig = field(default_factory=CommandConfig)
    pushes: PushConfig = field(default_factory=PushConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    variant: RobotVariant = field(default_factory=RobotVariant)
    """Every robot's deviation from its model (evaluation on a named variant)."""
    randomization: VariantRanges | RobotMixture | None = None
    """Per-episode domain randomization (training): a new robot is drawn at every reset; `variant`
    is then unused."""
    randomization_ramp_steps: int = 0
    """Policy steps over which the randomization widens linearly from the nominal robot to its full
    ranges (`VariantRanges.scaled`; not for a `RobotMixture`); 0: full ranges from the start."""


@dataclass
class StepOutput:
    """What one batched step returns; arrays are views reused by the next step (copy to keep)."""

    state: np.ndarray
    """(N, 45) state after the step; for finished robots, the state after their reset."""
    contacts: np.ndarray
    """(N, 8) contact flags observed with `state`."""
    obs: np.ndarray
    """(N, obs_dim) policy observation."""
    reward: np.ndarray
    """(N,) reward of the transition."""
    terms: dict[str, np.ndarray]
    """(N,) unweighted reward terms."""
    terminated: np.ndarray
    """(N,) fell (`FallRule`)."""
    truncated: np.ndarray
    """(N,) episode time limit reached."""
    final_state: np.ndarray
    """(N, 45) state reached by the step, before any reset."""
    final_contacts: np.ndarray
    """(N, 8) contacts reached by the step, before any reset."""


class BatchedAnymalEnv:
    """`num_envs` independent ANYmal simulations behind one vectorized step."""

    def __init__(self, cfg: EnvConfig = EnvConfig(), robot: RobotModel | None = None) -> None:
        self.cfg = cfg
        self.robot = robot or build_robot(cfg.robot, cfg.urdf)
        self.model = self.robot.model
        self.num_envs = n = cfg.num_envs
        self.rng = np.random.default_rng(cfg.seed)
        self._sensor_rng = np.random.default_rng([cfg.seed, 1])  # commands stay those of a noiseless run
        self.commands_sampler = CommandSampler(cfg.commands, self.rng)
        self.robots = [VariedRobot(self.robot, cfg.variant) for _ in range(n)]
        """Each robot's own model, set to its variant, and its drives."""
        self.datas = [mujoco.MjData(r.model) for r in self.robots]
        threads = cfg.num_threads or os.cpu_count() or 1
        self._chunks = [c for c in np.array_split(np.arange(n), min(threads, n)) if len(c)]
        self._pool = ThreadPoolExecutor(len(self._chunks)) if len(self._chunks) > 1 else None
        self.max_episode_steps = round(cfg.episode_length_s / C.POLICY_DT)
        self._resample_steps = max(1, round(cfg.commands.resample_time_s / C.POLICY_DT))

        self.state = np.zeros((n, C.STATE_DIM))
        self.contacts = np.zeros((n, C.CONTACT_DIM))
        self.command = np.zeros((n, C.COMMAND_DIM))
        self.robot_params = np.zeros((n, ROBOT_PARAM_DIM), dtype=np.float32)
        """Each robot's parameters (`RobotVariant.robot_params`), set at its reset."""
        self.action = np.tile(C.DEFAULT_JOINT_POS, (n, 1))
        self.prev_action = self.action.copy()
        self.air_time = np.zeros((n, 4))
        self.episode_step = np.zeros(n, dtype=np.int64)
        self.command_step = np.zeros(n, dtype=np.int64)
        self.next_push = np.zeros(n, dtype=np.int64)
        self._fell = np.zeros(n, dtype=bool)
        self.total_steps = 0
        """Batched steps taken since construction (the randomization curriculum's clock)."""
        self._next = np.zeros((n, C.STATE_DIM))
        self._qpos = np.zeros((n, self.model.nq))
        self._qvel = np.zeros((n, self.model.nv))
        self._torque = np.zeros((n, C.NUM_JOINTS))
        self._next_contacts = np.zeros((n, C.CONTACT_DIM))
        self.obs_dim = obs_dim(cfg.include_last_action)
        self._obs = np.zeros((n, self.obs_dim), dtype=np.float32)
        self.reset_all()

    # -- resets -------------------------------------------------------------------------------
    def reset_all(self) -> np.ndarray:
        """Reset every robot; returns the policy observation."""
        self._reset(np.arange(self.num_envs))
        return self.observation()

    def _reset(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        r = self.robot
        ranges = self.cfg.randomization
        if ranges is not None and self.cfg.randomization_ramp_steps > 0:
            ranges = ranges.scaled(self.total_steps / self.cfg.randomization_ramp_steps)
        for i in ids:
            d, robot = self.datas[i], self.robots[i]
            if ranges is not None:
                robot.apply(ranges.sample(self.rng))
            self.robot_params[i] = robot.variant.robot_params()
            mujoco.mj_resetData(robot.model, d)
            yaw = self.rng.uniform(-np.pi, np.pi)
            d.qpos[2] = r.standing_height
            d.qpos[3:7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
            q0 = C.DEFAULT_JOINT_POS + self.rng.uniform(-1, 1, 12) * self.cfg.reset_joint_noise
            d.qpos[r.qpos_adr] = q0
            # standing under its own controller; the policy's last action stays q0, as it was trained
            held = q0 + r.stance_targets - C.DEFAULT_JOINT_POS
            d.ctrl[:] = held
            robot.reset(held)
            mujoco.mj_forward(robot.model, d)
            read_state(r, d, self.state[i])
            read_contacts(r, d, self.contacts[i])
            self.action[i] = q0
            self.prev_action[i] = q0
        self.command[ids] = self.commands_sampler.sample(len(ids))
        self.air_time[ids] = 0.0
        self.episode_step[ids] = 0
        self.command_step[ids] = 0
        lo, hi = self.cfg.pushes.interval_s
        self.next_push[ids] = self.rng.integers(
            round(lo / C.POLICY_DT), round(hi / C.POLICY_DT) + 1, len(ids)
        )

    # -- stepping -----------------------------------------------------------------------------
    def _step_chunk(self, ids: np.ndarray) -> None:
        r = self.robot
        for i in ids:
            d, robot = self.datas[i], self.robots[i]
            robot.command(self.action[i])
            robot.step(d, C.DECIMATION)
            self._qpos[i] = d.qpos
            self._qvel[i] = d.qvel
            self._torque[i] = d.actuator_force
            self._fell[i] = read_contacts(r, d, self._next_contacts[i])

    def step(self, targets: np.ndarray) -> StepOutput:
        """Apply (N, 12) joint position targets (rad, absolute) for one 0.02 s step."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.shape != (self.num_envs, C.ACTION_DIM):
            raise ValueError(f"targets must have shape {(self.num_envs, C.ACTION_DIM)}, got {targets.shape}")
        if not np.isfinite(targets).all():
            raise ValueError("targets contain NaN or Inf")
        self.total_steps += 1
        self.prev_action[:] = self.action
        self.action[:] = targets
        if self._pool is None:
            self._step_chunk(self._chunks[0])
        else:
            list(self._pool.map(self._step_chunk, self._chunks))
        states_from_raw(self.robot, self._qpos, self._qvel, self._torque, self._next)

        terms, self.air_time = reward_terms(
            self.state,
            self._next,
            self.action,
            self.prev_action,
            self.command,
            self._next_contacts,
            self.air_time,
            self.cfg.reward,
        )
        reward = total_reward(terms, self.cfg.reward)
        self.episode_step += 1
        self.command_step += 1
        terminated = self.cfg.falls.fell(
            self._fell, self._next[:, 8], self._qpos[:, 2], self.robot.standing_height
        )
        if self.cfg.termination_penalty:
            reward = reward - self.cfg.termination_penalty * terminated
        truncated = (self.episode_step >= self.max_episode_steps) & ~terminated
        final_state = self._next.copy()
        final_contacts = self._next_contacts.copy()
        self.state[:] = self._next
        self.contacts[:] = self._next_contacts

        done = np.flatnonzero(terminated | truncated)
        self._reset(done)
        live = ~(terminated | truncated)
        resample = np.flatnonzero(live & (self.command_step >= self._resample_steps))
        if len(resample):
            self.command[resample] = self.commands_sampler.sample(len(resample))
            self.command_step[resample] = 0
        if self.cfg.pushes.enabled:
            self._push(np.flatnonzero(live & (self.episode_step == self.next_push)))
        return StepOutput(
            state=self.state,
            contacts=self.contacts,
            obs=self.observation(),
            reward=reward,
            terms=terms,
            terminated=terminated,
            truncated=truncated,
            final_state=final_state,
            final_contacts=final_contacts,
        )

    def _push(self, ids: np.ndarray) -> None:
        p = self.cfg.pushes
        for i in ids:
            self.datas[i].qvel[0:2] += self.rng.uniform(-p.max_velocity, p.max_velocity, 2)
            lo, hi = p.interval_s
            self.next_push[i] += self.rng.integers(round(lo / C.POLICY_DT), round(hi / C.POLICY_DT) + 1)

    # -- observation ----------------------------------------------------------------------------
    def observation(self) -> np.ndarray:
        """Policy observation (Table S4): v, w, g, command, q - q_default, dq[, last raw action], with
        each robot's sensor noise (the state itself stays exact)."""
        last = self.action if self.cfg.include_last_action else None
        obs = policy_observation(self.state, self.command, last, out=self._obs)
        noise = np.array([r.variant.obs_noise for r in self.robots])
        if noise.any():
            width = OBS_NOISE_STD[: self.obs_dim] * noise[:, None]
            obs += (self.rng.uniform(-1.0, 1.0, obs.shape) * width).astype(np.float32)
        return obs

    def measured_state(self) -> np.ndarray:
        """The state as the robot's drivers publish it, with each robot's sensor noise
        (`SensorNoise`, as the simulation node adds it, from a generator of its own): what the deployed
        control loop and the health monitor read. A copy; the state itself stays exact."""
        measured = self.state.copy()
        for i, robot in enumerate(self.robots):
            if robot.variant.obs_noise:
                row = measured[i]
                SensorNoise(robot.variant.obs_noise, self._sensor_rng).add(
                    row[C.JOINT_POS], row[C.JOINT_VEL], row[C.ANG_VEL], row[C.LIN_VEL]
                )
        return measured

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
