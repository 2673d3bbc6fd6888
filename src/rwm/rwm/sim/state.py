"""Read the contract's 45-d state and 8 contact flags out of MuJoCo data.

The batched environment copies each robot's raw arrays (qpos, qvel, applied torque) and turns the
whole batch into states with vectorized math; the per-robot Python work stays a few copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from rwm.robot import contract as C
from rwm.robot.frames import quat_rotate_inverse
from rwm.robot.mjcf import RobotModel


@dataclass(frozen=True)
class FallRule:
    """When a simulated robot has fallen, the same in training, the suite, data collection and the
    ROS simulation node: its base touches the ground, it tilts too far, or its base sinks low while
    the legs keep it off the ground (a robot sitting on its knees walks no more than a fallen one)."""

    max_tilt_gravity_z: float = -0.5
    """Fallen when the projected gravity's z rises above this (a tilt beyond 60 degrees)."""
    min_height_fraction: float = 0.5
    """Fallen when the base is lower than this fraction of the robot's standing height (ANYmal D:
    0.30 m; on the nominal and every suite robot, robots that did not fall stayed above 0.44 m)."""

    def fell(self, base_contact, gravity_z, base_height, standing_height: float):
        """Elementwise over robots: arrays in, a boolean array out (scalars: a bool)."""
        return (
            base_contact
            | (gravity_z > self.max_tilt_gravity_z)
            | (base_height < self.min_height_fraction * standing_height)
        )


def states_from_raw(
    robot: RobotModel, qpos: np.ndarray, qvel: np.ndarray, torque: np.ndarray, out: np.ndarray
) -> None:
    """Fill out (N, 45) from raw (N, nq) qpos, (N, nv) qvel and (N, 12) applied torques."""
    quat = qpos[:, 3:7]
    out[:, C.LIN_VEL] = quat_rotate_inverse(quat, qvel[:, 0:3])  # free joint: world-frame velocity
    out[:, C.ANG_VEL] = qvel[:, 3:6]  # free joint: body-frame angular velocity
    out[:, C.GRAVITY] = quat_rotate_inverse(quat, np.array([0.0, 0.0, -1.0]))
    out[:, C.JOINT_POS] = qpos[:, robot.qpos_adr]
    out[:, C.JOINT_VEL] = qvel[:, robot.dof_adr]
    out[:, C.JOINT_TORQUE] = torque


_DOWN = np.array([0.0, 0.0, -1.0])


def read_state(robot: RobotModel, data: mujoco.MjData, out: np.ndarray) -> None:
    """Fill out[:45] with the state of one robot (MuJoCo's own small-vector math: fast for one)."""
    inv = data.qpos[3:7].copy()
    inv[1:] *= -1.0
    mujoco.mju_rotVecQuat(out[C.LIN_VEL], data.qvel[0:3], inv)
    out[C.ANG_VEL] = data.qvel[3:6]
    mujoco.mju_rotVecQuat(out[C.GRAVITY], _DOWN, inv)
    out[C.JOINT_POS] = data.qpos[robot.qpos_adr]
    out[C.JOINT_VEL] = data.qvel[robot.dof_adr]
    out[C.JOINT_TORQUE] = data.actuator_force


def read_contacts(robot: RobotModel, data: mujoco.MjData, out: np.ndarray) -> bool:
    """Fill out[:8] with the contact flags; return True if the base touches the ground (a fall).

    The normal force comes from the constraint solver (elliptic cones: the first row is the
    normal); the floor is geom 0.
    """
    out[:] = 0.0
    ncon = data.ncon
    if ncon == 0:
        return False
    con = data.contact
    geoms = con.geom.tolist()
    adrs = con.efc_address.tolist()
    efc_force = data.efc_force
    flags = robot.geom_flag_list
    fell = False
    for (g1, g2), adr in zip(geoms, adrs, strict=True):
        other = g2 if g1 == 0 else g1
        flag = flags[other]
        if flag >= 0:
            if adr >= 0 and efc_force[adr] > C.CONTACT_FORCE_THRESHOLD:
                out[flag] = 1.0
        elif other in robot.base_geom_set:
            fell = True
    return fell
