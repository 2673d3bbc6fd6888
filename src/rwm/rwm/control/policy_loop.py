"""The 50 Hz control path, top to bottom: robot state in, observation, policy, safety filter, joint
targets out. The policy node only wires ROS topics to this class; tests drive it directly.

Modes, in order of precedence:
  ESTOP      e-stop engaged: hold the posture measured when it engaged; no policy action is sent.
  WATCHDOG   no fresh robot state for `watchdog_periods` periods: hold the last measured posture.
  WAITING    no complete robot state yet: send nothing.
  SOFT_START ramp from the measured posture to the stance targets (the standing pose held up against
             the robot's weight), then hand over to the policy.
  STAND      zero command and the robot still: hold the mean of the targets the policy sent over the
             last `stand_hold_average_s` (its stance, without the balancing of its last tick) until a
             command comes or the robot moves (a push, or a tip on the held stance), then the policy
             again, from that pose.
  POLICY     the policy's targets through the safety filter.
After an e-stop is released or the state comes back, the loop soft-starts again from the measured pose.

A measured posture is held with the torque measured with it: the target is the pose plus torque / kp
(`_held_targets`), that offset bounded by twice the stance's own, so a spike or a stalled leg is not
locked in. The drives' PD gives no torque at its target, so a robot held at its measured pose sags
under its own weight until the error carries it; on a floor of friction 0.4 the simulated ANYmal D's
feet then slid apart and it sat down in 0.4 s (6 of 20 robots at start-up).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum

import numpy as np

from rwm.control.safety import SafetyConfig, SafetyFilter, soft_start_targets
from rwm.robot import contract as C
from rwm.robot.policy_io import RAW_ACTION_LIMIT, includes_last_action, policy_observation, raw_to_targets

Policy = Callable[[np.ndarray], np.ndarray]
"""(1, obs_dim) observation -> (1, 12) raw action, e.g. rwm.export.policy_onnx.OnnxPolicy."""

FALL_GRAVITY_Z = -0.5
"""Projected gravity z above this is a tilt beyond 60 degrees: a fall (as in the simulation)."""
COMMAND_LIMITS = np.array([1.0, 0.5, 1.0])
"""|vx|, |vy| (m/s) and |yaw rate| (rad/s): the range the policies are trained on."""


class Mode(Enum):
    WAITING = "waiting"
    SOFT_START = "soft_start"
    POLICY = "policy"
    STAND = "stand"
    WATCHDOG = "watchdog"
    ESTOP = "estop"


class PolicyLoop:
    """One robot's control loop. Times are seconds on one clock (the node's)."""

    def __init__(
        self,
        policy: Policy,
        obs_dim: int,
        joint_lower: np.ndarray,
        joint_upper: np.ndarray,
        stance_targets: np.ndarray,
        cfg: SafetyConfig = SafetyConfig(),
        period_s: float = C.POLICY_DT,
    ) -> None:
        self.include_last_action = includes_last_action(obs_dim)
        self.policy, self.cfg, self.period_s = policy, cfg, period_s
        self.safety = SafetyFilter(joint_lower, joint_upper, cfg)
        self.state = np.zeros(C.STATE_DIM)
        """Latest robot state in the world-model layout (torques included)."""
        self.command = np.zeros(C.COMMAND_DIM)
        """The velocity command the policy sees: `command_target` ramped (`SafetyConfig` accelerations)."""
        self.command_target = np.zeros(C.COMMAND_DIM)
        """The last accepted /cmd_vel, clamped to the trained range."""
        step = np.array([cfg.max_lin_accel, cfg.max_lin_accel, cfg.max_yaw_accel]) * period_s
        self._command_step = np.where(step > 0, step, np.inf)
        self._command_delta = np.zeros(C.COMMAND_DIM)
        self.targets = C.DEFAULT_JOINT_POS.copy()
        """The last joint command sent (finite by construction)."""
        self.mode = Mode.WAITING
        self.estop = False
        self.rejected: dict[str, int] = {}
        """Rejected inputs by reason (for diagnostics)."""
        self.last_raw_action = np.zeros(C.ACTION_DIM)
        self.fallback: Policy | None = None
        """The policy before the last swap, kept until the rollback window has passed."""
        self._swapped_at = -np.inf
        self._now = 0.0
        self._obs = np.zeros((1, obs_dim), dtype=np.float32)
        self._desired = np.zeros(C.ACTION_DIM)
        self._previous = np.zeros(C.ACTION_DIM)
        self._hold = C.DEFAULT_JOINT_POS.copy()
        self._hold_measured = False
        """Whether `_hold` is the e-stop's pose: measured at its first tick with a joint state."""
        self._start_pose = C.DEFAULT_JOINT_POS.copy()
        self.stance_targets = self.safety.clamp(np.asarray(stance_targets, dtype=float))
        """Where the soft start ends (`rwm.robot.kinematics.AnymalKinematics.standing_targets`)."""
        self._hold_offset_bound = np.maximum(2.0 * np.abs(self.stance_targets - C.DEFAULT_JOINT_POS), 0.05)
        self._soft_start_t0 = 0.0
        self._soft_start_s = cfg.soft_start_s
        self._seen = {"joints": -np.inf, "imu": -np.inf, "odom": -np.inf}
        self._zero_command_s = 0.0
        self._still_s = 0.0
        self._joint_speed = np.zeros(C.NUM_JOINTS)
        average_s = min(cfg.stand_hold_average_s, cfg.stand_hold_after_s or np.inf)  # no walking targets
        self._recent_targets = np.zeros((max(round(average_s / period_s), 1), C.NUM_JOINTS))
        """The targets last sent by the policy (a ring), averaged into the stand hold's; a swapped-in
        policy's (blended) targets count as they were sent."""
        self._recent_count = 0
        """Policy ticks written to `_recent_targets` since the policy last took over."""

    # -- inputs (already parsed and mapped by name by the caller) ---------------------------------
    def _accept(self, name: str, t: float, *arrays: np.ndarray) -> bool:
        for a in arrays:
            if not np.isfinite(a).all():
                self.rejected[f"{name}_nan"] = self.rejected.get(f"{name}_nan", 0) + 1
                return False
        self._seen[name] = t
        return True

    def update_joints(self, q: np.ndarray, dq: np.ndarray, tau: np.ndarray, t: float) -> bool:
        if self._accept("joints", t, q, dq, tau):
            self.state[C.JOINT_POS], self.state[C.JOINT_VEL], self.state[C.JOINT_TORQUE] = q, dq, tau
            return True
        return False

    def update_imu(self, gravity: np.ndarray, angular_velocity: np.ndarray, t: float) -> bool:
        if self._accept("imu", t, gravity, angular_velocity):
            self.state[C.GRAVITY], self.state[C.ANG_VEL] = gravity, angular_velocity
            return True
        return False

    def update_odom(self, linear_velocity: np.ndarray, t: float) -> bool:
        if self._accept("odom", t, linear_velocity):
            self.state[C.LIN_VEL] = linear_velocity
            return True
        return False

    def set_command(self, vx: float, vy: float, yaw_rate: float) -> bool:
        """Clamp the velocity command to the trained range; non-finite commands are rejected."""
        cmd = np.array([vx, vy, yaw_rate])
        if not np.isfinite(cmd).all():
            self.rejected["cmd_vel_nan"] = self.rejected.get("cmd_vel_nan", 0) + 1
            return False
        np.clip(cmd, -COMMAND_LIMITS, COMMAND_LIMITS, out=self.command_target)
        return True

    def _ramp_command(self) -> None:
        """One period's step of the command toward its target, bounded per axis."""
        delta = np.subtract(self.command_target, self.command, out=self._command_delta)
        np.clip(delta, -self._command_step, self._command_step, out=delta)
        self.command += delta

    def set_estop(self, engaged: bool) -> None:
        if engaged and not self.estop:
            self._hold_measured = False  # the next tick holds the pose measured then
        self.estop = engaged

    # -- the tick ---------------------------------------------------------------------------------------
    def _has_state(self) -> bool:
        return all(np.isfinite(v) for v in self._seen.values())

    def _fresh(self, now: float) -> bool:
        limit = self.cfg.watchdog_periods * self.period_s + 1e-6  # float slack on exact multiples
        return all(now - v <= limit for v in self._seen.values())

    def input_ages(self, now: float) -> dict[str, float]:
        """Seconds since each input (joints, imu, odom) was last accepted: why the watchdog holds."""
        return {name: now - t for name, t in self._seen.items()}

    def tick(self, now: float) -> np.ndarray | None:
        """Joint targets to send now (a view reused next tick), or None while waiting for the robot."""
        self._now = now
        if self.estop:
            self.mode = Mode.ESTOP
            if not np.isfinite(self._seen["joints"]):
                return None  # no joint position measured yet: no pose to hold, so send nothing at all
            if not self._hold_measured:
                self._held_targets(self._hold)
                self._hold_measured = True
            self.targets[:] = self._hold
            return self.targets
        if not self._has_state():
            self.mode = Mode.WAITING
            return None
        if not self._fresh(now):
            if self.mode is not Mode.WATCHDOG:
                self._held_targets(self._hold)
                self.mode = Mode.WATCHDOG
            self.targets[:] = self._hold
            return self.targets
        if self.mode in (Mode.WAITING, Mode.WATCHDOG, Mode.ESTOP):
            self._held_targets(self._start_pose)
            self._soft_start_t0 = now
            self._soft_start_s = self._soft_start_duration()
            self.mode = Mode.SOFT_START
            self.command[:] = 0.0  # the policy starts from standing; /cmd_vel is ramped from there
            self._zero_command_s = self._still_s = 0.0
            self._recent_count = 0
        if self.mode is Mode.SOFT_START:
            progress = (now - self._soft_start_t0) / max(self._soft_start_s, 1e-9)
            soft_start_targets(self._start_pose, self.stance_targets, progress, self.targets)
            if progress >= 1.0:
                self.mode = Mode.POLICY
            return self.targets
        self._update_stand_mode()
        if self.mode is Mode.STAND:
            return self.targets
        return self._policy_step()

    def _soft_start_duration(self) -> float:
        """`soft_start_s`, or less: as long as the farthest joint needs at `soft_start_speed`."""
        cfg = self.cfg
        if cfg.soft_start_speed <= 0:
            return cfg.soft_start_s
        distance = float(np.abs(self.stance_targets - self._start_pose).max())
        return min(cfg.soft_start_s, distance / cfg.soft_start_speed)

    def _held_targets(self, out: np.ndarray) -> None:
        """Targets holding the measured posture with the measured torque: pose + torque / kp (the offset
        bounded, the targets clamped)."""
        np.multiply(self.state[C.JOINT_TORQUE], 1.0 / C.KP, out=out)
        np.clip(out, -self._hold_offset_bound, self._hold_offset_bound, out=out)
        out += self.state[C.JOINT_POS]
        np.clip(out, self.safety.lower, self.safety.upper, out=out)

    # -- standing still ---------------------------------------------------------------------------------
    def _update_stand_mode(self) -> None:
        """POLICY -> STAND after `stand_hold_after_s` at zero command once still for `stand_still_s`;
        STAND -> POLICY on a command or when the robot moves (`stand_release_base_speed`)."""
        cfg = self.cfg
        zero = not self.command_target.any() and not self.command.any()
        self._zero_command_s = self._zero_command_s + self.period_s if zero else 0.0
        s = self.state
        base_speed = math.hypot(s[0], s[1])
        turn_speed = math.sqrt(s[3] * s[3] + s[4] * s[4] + s[5] * s[5])
        if self.mode is Mode.STAND:
            limit = cfg.stand_release_base_speed
            if not zero or base_speed > limit or turn_speed > 2.0 * limit:
                self.mode, self._still_s = Mode.POLICY, 0.0
            return
        limit = cfg.stand_still_base_speed
        np.abs(s[C.JOINT_VEL], out=self._joint_speed)
        still = (
            self._joint_speed.max() < cfg.stand_still_joint_speed
            and base_speed < limit
            and turn_speed < 2.0 * limit
        )
        self._still_s = self._still_s + self.period_s if still else 0.0
        due = cfg.stand_hold_after_s > 0 and self._zero_command_s >= cfg.stand_hold_after_s
        if due and self._still_s >= cfg.stand_still_s - 1e-9:
            self.mode = Mode.STAND
            self._hold_recent_mean()

    def _hold_recent_mean(self) -> None:
        """The stand hold's targets: the mean of the policy's recent ones, through the safety filter.
        The last tick's alone freeze a balancing motion, and the robot rocked on them (base speed in the
        3 s after: median 0.16 m/s, some to the 0.3 m/s that then handed back to the policy); on the mean of
        0.5 s, median 0.06, at most 0.09 (`tools/stand_hold_study.py`)."""
        recent = self._recent_targets[: min(self._recent_count, len(self._recent_targets))]
        if len(recent):
            np.mean(recent, axis=0, out=self._desired)
            self._previous[:] = self.targets
            self.safety.apply(self._desired, self._previous, self.targets)
        self._recent_count = 0  # after a release, the next hold averages what the policy did since

    # -- live policy swap ------------------------------------------------------------------------------
    def swap_policy(self, policy: Policy, now: float) -> None:
        """Drive with `policy` from the next tick on (same observation), blending its raw actions in
        over `swap_blend_s`; the current one is kept as the fallback for `rollback_window_s`."""
        self.fallback, self.policy, self._swapped_at = self.policy, policy, now

    def rollback_reason(self, now: float, anomaly: bool) -> str | None:
        """Why the swapped-in policy must go (within its window), or None. Past the window the swap is
        final and the fallback is dropped."""
        if self.fallback is None:
            return None
        if now - self._swapped_at > self.cfg.rollback_window_s:
            self.fallback = None
            return None
        if self.mode is Mode.WATCHDOG:
            return "watchdog hold"
        if self.state[C.GRAVITY][2] > FALL_GRAVITY_Z:
            return "the base tilted over (a fall)"
        if anomaly:
            return "world-model anomaly"
        return None

    def rollback(self) -> bool:
        """Back to the policy before the swap (at once, no blend); False if there is none."""
        if self.fallback is None:
            return False
        self.policy, self.fallback, self._swapped_at = self.fallback, None, -np.inf
        return True

    def _raw_action(self) -> np.ndarray:
        raw = self.policy(self._obs)[0]
        blend = (self._now - self._swapped_at) / self.cfg.swap_blend_s if self.cfg.swap_blend_s > 0 else 1.0
        if self.fallback is not None and blend < 1.0:
            raw = blend * raw + (1.0 - blend) * self.fallback(self._obs)[0]
        return raw

    def _policy_step(self) -> np.ndarray:
        self._ramp_command()
        last = self.targets[None] if self.include_last_action else None
        policy_observation(self.state[None], self.command[None], last, out=self._obs)
        raw = self._raw_action()
        if not np.isfinite(raw).all():  # a broken model must not move the robot: hold instead
            self.rejected["policy_nan"] = self.rejected.get("policy_nan", 0) + 1
            return self.targets
        np.clip(raw, -RAW_ACTION_LIMIT, RAW_ACTION_LIMIT, out=self.last_raw_action)
        raw_to_targets(self.last_raw_action, out=self._desired)
        self._previous[:] = self.targets
        self.safety.apply(self._desired, self._previous, self.targets)
        self._recent_targets[self._recent_count % len(self._recent_targets)] = self.targets
        self._recent_count += 1
        return self.targets

    @property
    def observation(self) -> np.ndarray:
        """The last policy observation (1, obs_dim), a view reused next tick."""
        return self._obs
