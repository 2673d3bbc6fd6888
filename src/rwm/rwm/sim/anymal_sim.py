"""One simulated ANYmal stepped at the physics rate (400 Hz), for the ROS driver node and bags.

It exposes what the robot's drivers would: joint positions, velocities and applied torques in
contract order, the IMU (orientation, angular velocity, linear acceleration), odometry and the
contact flags. Joint targets are held by the drive PD between updates, as on the hardware; the drives
and the robot's deviations from its model are `rwm.sim.dynamics`'s.
"""

from __future__ import annotations

import mujoco
import numpy as np

from rwm.robot import contract as C
from rwm.robot.mjcf import RobotModel, build_robot
from rwm.sim.dynamics import VariedRobot
from rwm.sim.state import FallRule, read_contacts, read_state
from rwm.sim.variants import NOMINAL, RobotVariant


class AnymalSim:
    """A single ANYmal in MuJoCo with the contract's sensors."""

    def __init__(
        self,
        robot: RobotModel | None = None,
        robot_name: str = "anymal_d",
        urdf: str | None = None,
        variant: RobotVariant = NOMINAL,
        falls: FallRule = FallRule(),
    ) -> None:
        self.robot = robot or build_robot(robot_name, urdf)
        self.drives = VariedRobot(self.robot, variant)
        """The robot's own model set to `variant`, and its drives (delay, torque-speed limit)."""
        self.model = self.drives.model
        self.data = mujoco.MjData(self.model)
        self._accel_adr = int(self.model.sensor("imu_accelerometer").adr[0])
        self.targets = C.DEFAULT_JOINT_POS.copy()
        self.contacts = np.zeros(C.CONTACT_DIM)
        self.falls = falls
        self.fell = False
        """Whether the robot has fallen (`falls`), as of the last reset or step."""
        self.reset()

    def reset(
        self, joint_pos: np.ndarray | None = None, yaw: float = 0.0, height: float | None = None
    ) -> None:
        """Place the robot above the ground at `joint_pos`, at rest, its drives holding that pose; by
        default standing, its drives holding the targets that keep it standing (`stance_targets`), as
        a robot standing under its own controller when the stack takes over."""
        d = self.data
        mujoco.mj_resetData(self.model, d)
        q = C.DEFAULT_JOINT_POS if joint_pos is None else np.asarray(joint_pos, dtype=float)
        held = self.robot.stance_targets if joint_pos is None else q
        d.qpos[2] = self.robot.standing_height if height is None else height
        d.qpos[3:7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        d.qpos[self.robot.qpos_adr] = q
        self.set_targets(held)
        self.drives.reset(held)
        d.ctrl[:] = held
        mujoco.mj_forward(self.model, d)
        self._check_fall()

    def set_targets(self, targets: np.ndarray) -> None:
        """Joint position targets (12,), rad, contract order; held until the next call."""
        targets = np.asarray(targets, dtype=float)
        if targets.shape != (C.NUM_JOINTS,) or not np.isfinite(targets).all():
            raise ValueError(f"joint targets must be 12 finite values, got {targets!r}")
        self.targets[:] = targets
        self.drives.command(targets)

    def step(self, nstep: int = 1) -> None:
        """Advance `nstep` physics steps of 0.0025 s and refresh the contact flags."""
        self.drives.step(self.data, nstep)
        self._check_fall()

    def _check_fall(self) -> None:
        """Refresh the contact flags and `fell`."""
        base_contact = read_contacts(self.robot, self.data, self.contacts)
        _, x, y, _ = self.data.qpos[3:7]
        gravity_z = 2.0 * (x * x + y * y) - 1.0  # the base frame's view of gravity, z
        self.fell = bool(
            self.falls.fell(base_contact, gravity_z, self.data.qpos[2], self.robot.standing_height)
        )

    @property
    def time(self) -> float:
        """Simulated time, s."""
        return float(self.data.time)

    @property
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self.robot.qpos_adr]

    @property
    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.robot.dof_adr]

    @property
    def joint_torques(self) -> np.ndarray:
        """Torques applied by the drive PD in the last physics step, Nm."""
        return self.data.actuator_force.copy()

    @property
    def base_position(self) -> np.ndarray:
        """Base position in the odometry (world) frame, m."""
        return self.data.qpos[0:3].copy()

    @property
    def base_orientation(self) -> np.ndarray:
        """World-to-base orientation quaternion (w, x, y, z)."""
        return self.data.qpos[3:7].copy()

    def base_twist(self) -> tuple[np.ndarray, np.ndarray]:
        """(linear, angular) velocity of the base in the base frame."""
        s = self.state()
        return s[C.LIN_VEL], s[C.ANG_VEL]

    @property
    def imu_linear_acceleration(self) -> np.ndarray:
        """Specific force at the IMU in the base frame (reads +9.81 z at rest), m/s^2."""
        return self.data.sensordata[self._accel_adr : self._accel_adr + 3].copy()

    def state(self) -> np.ndarray:
        """The world-model state o (45,)."""
        out = np.empty(C.STATE_DIM)
        read_state(self.robot, self.data, out)
        return out
