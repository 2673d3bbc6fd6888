"""The robot's state from its messages, with one rule for what is accepted: the policy node, the
world-model node and the stack probe all read the contract topics through `RobotStateReader`.

Rule: a joint state must name every contract joint once (any order) with as many positions,
velocities and efforts as names, all finite; an IMU orientation must be a finite unit quaternion
(within 1 %) and its angular velocity finite; an odometry twist must be finite; a message rclpy cannot
decode is dropped. Whatever is rejected is counted by reason (for diagnostics) and logged at most every
2 s; nothing of it reaches the state. Messages come serialized (CDR, from `PolledSubscriptions`) and
are decoded only when read: their numbers straight from the bytes where `rwm_ros.cdr_fields` can
place them (a joint state once its sender's names were read and accepted), else by rclpy.
"""

from __future__ import annotations

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Imu, JointState

from rwm.robot import contract as C
from rwm.robot.frames import projected_gravity
from rwm_ros.cdr_fields import JointStateLayout, read_imu, read_odometry
from rwm_ros.conversions import JointMessageError, JointOrder, quat_msg_to_wxyz, vector3_to_array


class RobotStateReader:
    """Decodes and checks robot messages into contract-ordered arrays, in place (no allocation)."""

    def __init__(self, logger, rejected: dict[str, int] | None = None) -> None:
        self._logger = logger
        self.rejected: dict[str, int] = {} if rejected is None else rejected
        """Rejected inputs by reason (shared with the caller's diagnostics when given)."""
        self._order = JointOrder(extra_joints_allowed=True)  # robot joint states
        self.joint_pos, self.joint_vel, self.joint_torque = np.zeros(12), np.zeros(12), np.zeros(12)
        self.quat = np.zeros(4)
        """Last accepted orientation, world to base, (w, x, y, z)."""
        self.gravity, self.ang_vel, self.lin_vel = np.zeros(3), np.zeros(3), np.zeros(3)
        self.position, self.odom_ang_vel = np.zeros(3), np.zeros(3)
        """Odometry's base position (odom frame) and angular velocity (base frame): not in the state."""
        self.has_joints = self.has_imu = self.has_odom = False
        """Whether an accepted message of each kind has been read."""
        self._joints_in = np.empty((3, C.NUM_JOINTS))  # a message is read here, kept only if accepted
        self._quat_in, self._vec_in, self._odom_in = np.empty(4), np.empty(3), np.empty((2, 3))
        self._xyzw = np.empty(4)
        self._layout = JointStateLayout()
        """Where the accepted joint states' numbers lie, while their sender keeps its names."""

    def reject(self, reason: str, text: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._logger.warning(f"dropped input: {text}", throttle_duration_sec=2.0)

    def _decode(self, cdr: bytes, msg_type: type, what: str):
        try:
            return deserialize_message(cdr, msg_type)
        except (TypeError, RuntimeError, ValueError) as e:
            self.reject(f"{what}_undecodable", f"{what} could not be deserialized ({e})")
            return None

    def joints(self, cdr: bytes) -> bool:
        """Read a joint state into joint_pos/vel/torque; False if rejected."""
        if not self._layout.read(cdr, self._joints_in):
            msg = self._decode(cdr, JointState, "joint_states")
            if msg is None:
                return False
            q, dq, tau = self._joints_in
            try:
                self._order.read(msg, "position", q)
                self._order.read(msg, "velocity", dq)
                self._order.read(msg, "effort", tau)
            except JointMessageError as e:
                self.reject(f"joint_states_{e.reason}", str(e))
                return False
            self._layout.learn(cdr, self._order.index(msg.name))
        if not np.isfinite(self._joints_in).all():
            self.reject("joints_nan", "non-finite joint state")
            return False
        self.joint_pos[:], self.joint_vel[:], self.joint_torque[:] = self._joints_in
        self.has_joints = True
        return True

    def imu(self, cdr: bytes) -> bool:
        """Read an IMU message into quat, gravity and ang_vel; False if rejected."""
        quat, w = self._quat_in, self._vec_in
        if read_imu(cdr, self._xyzw, w):
            quat[0], quat[1:] = self._xyzw[3], self._xyzw[:3]
        else:
            msg = self._decode(cdr, Imu, "imu")
            if msg is None:
                return False
            quat_msg_to_wxyz(msg.orientation, quat)
            vector3_to_array(msg.angular_velocity, w)
        if not (np.isfinite(quat).all() and abs(np.dot(quat, quat) - 1.0) < 1e-2 and np.isfinite(w).all()):
            self.reject("imu_invalid", "IMU orientation is not a finite unit quaternion")
            return False
        self.quat[:], self.ang_vel[:] = quat, w
        self.gravity[:] = projected_gravity(quat)
        self.has_imu = True
        return True

    def odom(self, cdr: bytes) -> bool:
        """Read an odometry message into lin_vel (its twist, base frame), odom_ang_vel and position;
        False if rejected."""
        v, w = self._odom_in
        if not read_odometry(cdr, self._vec_in, v, w):
            msg = self._decode(cdr, Odometry, "odom")
            if msg is None:
                return False
            twist = msg.twist.twist
            vector3_to_array(twist.linear, v)
            vector3_to_array(twist.angular, w)
            vector3_to_array(msg.pose.pose.position, self._vec_in)
        if not (np.isfinite(self._odom_in).all() and np.isfinite(self._vec_in).all()):
            self.reject("odom_nan", "non-finite odometry")
            return False
        self.lin_vel[:], self.odom_ang_vel[:], self.position[:] = v, w, self._vec_in
        self.has_odom = True
        return True

    @property
    def complete(self) -> bool:
        return self.has_joints and self.has_imu and self.has_odom

    def state(self, out: np.ndarray) -> np.ndarray:
        """The 45-d world-model state (CONTRACT.md) from the last accepted messages."""
        out[C.LIN_VEL], out[C.ANG_VEL], out[C.GRAVITY] = self.lin_vel, self.ang_vel, self.gravity
        out[C.JOINT_POS], out[C.JOINT_VEL], out[C.JOINT_TORQUE] = (
            self.joint_pos,
            self.joint_vel,
            self.joint_torque,
        )
        return out
