"""A simulated ANYmal set to a variant (`rwm.sim.variants`), and the drives as they behave.

Every simulated robot (the batched environment's and the ROS simulation node's) is stepped by
`VariedRobot`, so one robot is the same wherever it runs, and a seed gives the same robot.

The drives (CONTRACT.md: PD kp 80, kd 2, 80 Nm, 8.5 rad/s) are modelled as DC motors: the torque a
drive can give falls off linearly with speed in the direction of motion, to zero at the velocity
limit (and reaches the torque limit sooner when braking), as in Isaac Lab's `DCMotor`:
tau in [tau_sat (-1 - w / w_max), tau_sat (1 - w / w_max)], clipped to +-tau_limit. The limits are
recomputed from the joint velocities every `LIMIT_UPDATE_TICKS` physics ticks. This is an
approximation of the hardware: the real drives' current and thermal limits, and their rotors'
inertia, are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from rwm.robot import contract as C
from rwm.robot.mjcf import RobotModel
from rwm.robot.policy_io import OBS_BASE, OBS_JOINT_POS, OBS_JOINT_VEL
from rwm.sim.variants import NOMINAL, OBS_NOISE_STD, RobotVariant

LIMIT_UPDATE_TICKS = 2
"""The drives' speed-dependent torque limits are recomputed every this many physics ticks (5 ms):
per tick would double the cost of the simulation for a curve that changes little in 2.5 ms."""


@dataclass
class _Nominal:
    """The model parameters a variant changes, as built."""

    body_mass: float
    body_ipos: np.ndarray
    body_inertia: np.ndarray
    body_iquat: np.ndarray
    geom_friction: np.ndarray
    gain: np.ndarray
    bias: np.ndarray
    dof_frictionloss: np.ndarray
    dof_damping: np.ndarray


class VariedRobot:
    """One robot's own MuJoCo model, set to a variant, and its drives stepped tick by tick."""

    def __init__(self, robot: RobotModel, variant: RobotVariant = NOMINAL) -> None:
        self.robot = robot
        self.model = _copy_model(robot.model)
        m = self.model
        base = m.body("base").id
        self._base = base
        self._nominal = _Nominal(
            body_mass=float(m.body_mass[base]),
            body_ipos=m.body_ipos[base].copy(),
            body_inertia=m.body_inertia[base].copy(),
            body_iquat=m.body_iquat[base].copy(),
            geom_friction=m.geom_friction.copy(),
            gain=m.actuator_gainprm[:, 0].copy(),
            bias=m.actuator_biasprm[:, :3].copy(),
            dof_frictionloss=m.dof_frictionloss.copy(),
            dof_damping=m.dof_damping.copy(),
        )
        self._torque_limit = C.TORQUE_LIMIT
        self._commanded = C.DEFAULT_JOINT_POS.copy()
        self._in_flight = np.tile(C.DEFAULT_JOINT_POS, (1, 1))
        self._tick = 0
        self._range = np.empty((C.NUM_JOINTS, 2))
        self.variant = NOMINAL
        self.apply(variant)

    def apply(self, variant: RobotVariant) -> None:
        """Set the model to `variant` (from the nominal values: variants never accumulate)."""
        m, nom, b = self.model, self._nominal, self._base
        mass = nom.body_mass + variant.payload_kg
        m.body_mass[b] = mass
        offset = np.asarray(variant.payload_com_m, dtype=float)
        m.body_ipos[b] = nom.body_ipos + offset * variant.payload_kg / mass
        # The payload as a point mass at its offset: both bodies' parallel-axis terms about the new
        # centre of mass give the reduced mass times the offset's, in the base's principal frame
        # (body_inertia is diagonal there); the products of inertia this adds are left out.
        q = nom.body_iquat
        principal = np.empty(3)
        mujoco.mju_rotVecQuat(principal, offset, np.array([q[0], -q[1], -q[2], -q[3]]))
        reduced = nom.body_mass * variant.payload_kg / mass
        m.body_inertia[b] = nom.body_inertia + reduced * (principal @ principal - principal**2)
        m.geom_friction[:, 0] = variant.ground_friction  # MuJoCo takes the larger of two geoms' values
        s = variant.motor_strength
        m.actuator_gainprm[:, 0] = nom.gain * s
        m.actuator_biasprm[:, :3] = nom.bias * s
        self._torque_limit = C.TORQUE_LIMIT * s
        m.actuator_forcerange[:] = [-self._torque_limit, self._torque_limit]
        dofs = self.robot.dof_adr
        m.dof_frictionloss[:] = nom.dof_frictionloss
        m.dof_damping[:] = nom.dof_damping
        m.dof_frictionloss[dofs] += variant.joint_friction_nm
        m.dof_damping[dofs] += variant.joint_damping
        if len(self._in_flight) != variant.delay_ticks + 1:
            self._in_flight = np.tile(self._commanded, (variant.delay_ticks + 1, 1))
        self.variant = variant

    def command(self, targets: np.ndarray) -> None:
        """Joint targets given now; they reach the drives `delay_ticks` physics ticks later."""
        self._commanded[:] = targets

    def step(self, data: mujoco.MjData, ticks: int) -> None:
        """`ticks` physics ticks: each applies the targets commanded `delay_ticks` ticks before it,
        under the drives' torque-speed limit (its speeds read every `LIMIT_UPDATE_TICKS` ticks)."""
        m, dofs, ring = self.model, self.robot.dof_adr, self._in_flight
        delay, limited = self.variant.delay_ticks, self.variant.velocity_limit
        n = len(ring)  # ring[t % n]: the targets commanded at tick t, for the last n ticks
        start, end = self._tick, self._tick + ticks
        t = start
        while t < end:
            if t < start + delay:  # a command given before this call is the one due now
                data.ctrl[:] = ring[(t - delay) % n]
                run = 1
            else:
                data.ctrl[:] = self._commanded
                run = end - t
            if limited:
                run = min(run, LIMIT_UPDATE_TICKS)
                self._update_torque_range(data.qvel[dofs])
            mujoco.mj_step(m, data, run)
            t += run
        for s in range(max(start, end - n), end):
            ring[s % n] = self._commanded
        self._tick = end

    def reset(self, targets: np.ndarray) -> None:
        """A new episode: these targets are held, nothing else is in flight to the drives."""
        self._commanded[:] = targets
        self._in_flight[:] = targets

    def _update_torque_range(self, joint_vel: np.ndarray) -> None:
        """DC-motor limits at these joint speeds (see the module docstring)."""
        sat, r = self._torque_limit, self._range
        np.multiply(joint_vel, -1.0 / C.VELOCITY_LIMIT, out=r[:, 1])
        r[:, 0] = r[:, 1]
        r[:, 1] += 1.0
        r[:, 0] -= 1.0
        r *= sat
        np.clip(r[:, 1], 0.0, sat, out=r[:, 1])
        np.clip(r[:, 0], -sat, 0.0, out=r[:, 0])
        self.model.actuator_forcerange[:] = r


def _copy_model(model: mujoco.MjModel) -> mujoco.MjModel:
    import copy  # noqa: PLC0415 - MjModel supports deepcopy; only here

    return copy.deepcopy(model)


class SensorNoise:
    """A variant's sensor noise on what the robot's drivers publish: joint positions and velocities,
    the IMU's angular velocity and odometry's linear velocity, uniform with `OBS_NOISE_STD`'s
    half-widths times the scale (the simulation node; the batched environment adds the same noise to
    the policy observation). The orientation is published exact."""

    def __init__(self, scale: float, rng: np.random.Generator) -> None:
        self.scale, self.rng = scale, rng
        self._u12, self._u3 = np.empty(C.NUM_JOINTS), np.empty(3)
        s = OBS_NOISE_STD
        self._widths = (
            s[OBS_JOINT_POS.start] * scale,
            s[OBS_JOINT_VEL.start] * scale,
            s[OBS_BASE.start + 3] * scale,
            s[OBS_BASE.start] * scale,
        )

    def _add(self, values: np.ndarray, u: np.ndarray, width: float) -> None:
        self.rng.random(out=u)
        u *= 2.0 * width
        u -= width
        values += u

    def add(
        self, joint_pos: np.ndarray, joint_vel: np.ndarray, ang_vel: np.ndarray, lin_vel: np.ndarray
    ) -> None:
        """Add noise in place (nothing at scale 0)."""
        if self.scale == 0.0:
            return
        wq, wdq, ww, wv = self._widths
        self._add(joint_pos, self._u12, wq)
        self._add(joint_vel, self._u12, wdq)
        self._add(ang_vel, self._u3, ww)
        self._add(lin_vel, self._u3, wv)
