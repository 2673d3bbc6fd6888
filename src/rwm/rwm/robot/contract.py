"""The robot interface contract (`shared/CONTRACT.md`) as constants: one place, read by everything.

Vectors are in contract order: legs LF, RF, LH, RH; joints HAA, HFE, KFE per leg.
"""

from __future__ import annotations

import numpy as np

LEGS: tuple[str, ...] = ("LF", "RF", "LH", "RH")
"""Leg prefixes in contract order."""
JOINT_NAMES: tuple[str, ...] = tuple(f"{leg}_{j}" for leg in LEGS for j in ("HAA", "HFE", "KFE"))
"""The 12 actuated joints in contract order."""
NUM_JOINTS = 12

DEFAULT_JOINT_POS = np.array(
    [0.0, 0.4, -0.8, 0.0, 0.4, -0.8, 0.0, -0.4, 0.8, 0.0, -0.4, 0.8], dtype=np.float64
)
"""Standing pose, rad: HAA 0; front HFE +0.4, KFE -0.8; hind HFE -0.4, KFE +0.8."""
ACTION_SCALE = 0.5
"""Joint target a = DEFAULT_JOINT_POS + ACTION_SCALE * u for raw policy output u."""

POLICY_DT = 0.02
"""Policy and world-model step, s (50 Hz)."""
PHYSICS_DT = 0.0025
"""Joint PD and physics step, s (400 Hz)."""
DECIMATION = round(POLICY_DT / PHYSICS_DT)
"""Physics steps per policy step (8)."""
STATE_MAX_AGE_S = 2 * PHYSICS_DT
"""A state assembled for a step (a command's stamp) uses samples of each robot stream at most this much
older than the stamp: the bag loader's rows and the live monitor's steps follow the same rule."""
KP = 80.0
"""Joint PD stiffness, Nm/rad."""
KD = 2.0
"""Joint PD damping, Nms/rad."""
TORQUE_LIMIT = 80.0
"""Drive torque limit, Nm."""
VELOCITY_LIMIT = 8.5
"""Drive velocity limit, rad/s."""
CONTACT_FORCE_THRESHOLD = 1.0
"""A contact flag is 1 where the normal force exceeds this, N."""

STATE_DIM = 45
"""World-model state o: lin vel (0:3), ang vel (3:6), gravity (6:9), q (9:21), dq (21:33), tau (33:45)."""
CONTACT_DIM = 8
"""Privileged flags c: knee contacts (0:4), foot contacts (4:8), legs in contract order."""
ACTION_DIM = 12
"""Action a: absolute joint position targets, rad."""
COMMAND_DIM = 3
"""Velocity command: vx, vy (m/s), yaw rate (rad/s)."""

LIN_VEL = slice(0, 3)
ANG_VEL = slice(3, 6)
GRAVITY = slice(6, 9)
GRAVITY_Z = GRAVITY.stop - 1
"""Index of the projected gravity's z in the state: -1 upright, -cos(tilt) in general."""
JOINT_POS = slice(9, 21)
JOINT_VEL = slice(21, 33)
JOINT_TORQUE = slice(33, 45)
KNEE_CONTACTS = slice(0, 4)
FOOT_CONTACTS = slice(4, 8)

TOPIC_JOINT_STATES = "/anymal/joint_states"
TOPIC_IMU = "/anymal/imu"
TOPIC_ODOM = "/anymal/odom"
TOPIC_CONTACTS = "/anymal/contacts"
TOPIC_JOINT_COMMAND = "/anymal/joint_command"
TOPIC_CMD_VEL = "/cmd_vel"
TOPIC_ESTOP = "/anymal/estop"
ODOM_FRAME = "odom"
BASE_FRAME = "base"


def joint_index(names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Map a message's joint names to contract order: result[i] is the position in `names` of joint i.

    Raises ValueError naming the missing joints, so that a reordered or partial message is never
    read by index.
    """
    lookup = {n: i for i, n in enumerate(names)}
    missing = [n for n in JOINT_NAMES if n not in lookup]
    if missing:
        raise ValueError(f"joint names lack {missing}; expected all of {list(JOINT_NAMES)}")
    return np.array([lookup[n] for n in JOINT_NAMES], dtype=np.intp)
