"""The robot's motion as a camera needs it: base pose, joint positions, and the commanded and measured
velocity, at a fixed frame rate, from any bag on the contract topics (the real robot's included: no
simulator state is needed) or from an array dataset.

A bag gives the pose from odometry. A dataset holds no pose: it is integrated from the base velocity,
angular velocity and projected gravity of the state (roll and pitch from gravity, yaw and position
integrated, the height held at `DATASET_BASE_HEIGHT`), so it drifts as dead reckoning does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import get_typestore

from rwm.data.array_dataset import ArrayDataset
from rwm.data.bag_writer import TYPESTORE
from rwm.robot import contract as C

DATASET_BASE_HEIGHT = 0.55
"""Base height drawn for a dataset (its state has none), m."""


@dataclass
class Motion:
    """(F, .) arrays, one row per frame."""

    time_s: np.ndarray
    base_position: np.ndarray
    """(F, 3) odom frame, m."""
    base_orientation: np.ndarray
    """(F, 4) quaternion (w, x, y, z), odom to base."""
    joint_positions: np.ndarray
    """(F, 12) contract order, rad."""
    command: np.ndarray
    """(F, 3) commanded vx, vy (m/s), yaw rate (rad/s); NaN where none was sent."""
    measured: np.ndarray
    """(F, 3) measured vx, vy (base frame, m/s), yaw rate (rad/s)."""

    def __len__(self) -> int:
        return len(self.time_s)


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _latest(stamps: np.ndarray, values: np.ndarray, at: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """The value last received at or before each time in `at` (`fill` before the first)."""
    idx = np.searchsorted(stamps, at, side="right") - 1
    out = np.full((len(at), values.shape[1]), fill)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def motion_from_bag(path: str | Path, fps: float) -> Motion:
    """Sample a bag at `fps` over the span of its odometry."""
    odom_t, odom_v, joint_t, joint_v, cmd_t, cmd_v = [], [], [], [], [], []
    with AnyReader([Path(path)], default_typestore=get_typestore(TYPESTORE)) as reader:
        topics = {C.TOPIC_ODOM, C.TOPIC_JOINT_STATES, C.TOPIC_CMD_VEL}
        conns = [c for c in reader.connections if c.topic in topics]
        for conn, log_ns, raw in reader.messages(conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == C.TOPIC_ODOM:
                p, q, tw = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist
                odom_t.append(_stamp(msg))
                odom_v.append([p.x, p.y, p.z, q.w, q.x, q.y, q.z, tw.linear.x, tw.linear.y, tw.angular.z])
            elif conn.topic == C.TOPIC_JOINT_STATES:
                order = [list(msg.name).index(n) for n in C.JOINT_NAMES]
                joint_t.append(_stamp(msg))
                joint_v.append(np.asarray(msg.position)[order])
            else:
                cmd_t.append(log_ns)  # geometry_msgs/Twist has no stamp: its log time
                cmd_v.append([msg.linear.x, msg.linear.y, msg.angular.z])
    if not odom_t or not joint_t:
        raise ValueError(f"{path}: no odometry or joint states on {C.TOPIC_ODOM} / {C.TOPIC_JOINT_STATES}")
    odom_t, odom_v = np.asarray(odom_t), np.asarray(odom_v)
    at = np.arange(odom_t[0], odom_t[-1] + 1, round(1e9 / fps), dtype=np.int64)
    pose = _latest(odom_t, odom_v, at)
    joints = _latest(np.asarray(joint_t), np.asarray(joint_v), at, fill=0.0)
    joints[np.isnan(joints)] = 0.0
    command = _latest(np.asarray(cmd_t), np.asarray(cmd_v), at) if cmd_t else np.full((len(at), 3), np.nan)
    return Motion((at - at[0]) / 1e9, pose[:, 0:3], pose[:, 3:7], joints, command, pose[:, 7:10])


def motion_from_dataset(path: str | Path, fps: float, trajectory: int = 0) -> Motion:
    """One trajectory of an array dataset, its pose integrated (module docstring)."""
    traj = ArrayDataset(path).trajectory(trajectory)
    state = np.asarray(traj.state, dtype=np.float64)
    v, w, g = state[:, C.LIN_VEL], state[:, C.ANG_VEL], state[:, C.GRAVITY]
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    yaw = np.concatenate([[0.0], np.cumsum(w[:-1, 2] * C.POLICY_DT)])
    roll, pitch = np.arctan2(-g[:, 1], -g[:, 2]), np.arcsin(np.clip(g[:, 0], -1.0, 1.0))
    c, s = np.cos(yaw), np.sin(yaw)
    world_v = np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], 1)
    xy = np.concatenate([[[0.0, 0.0]], np.cumsum(world_v[:-1] * C.POLICY_DT, 0)])
    position = np.column_stack([xy, np.full(len(state), DATASET_BASE_HEIGHT)])
    r, p, y = roll / 2, pitch / 2, yaw / 2  # ZYX Euler angles to a quaternion (w, x, y, z)
    quat = np.stack(
        [
            np.cos(r) * np.cos(p) * np.cos(y) + np.sin(r) * np.sin(p) * np.sin(y),
            np.sin(r) * np.cos(p) * np.cos(y) - np.cos(r) * np.sin(p) * np.sin(y),
            np.cos(r) * np.sin(p) * np.cos(y) + np.sin(r) * np.cos(p) * np.sin(y),
            np.cos(r) * np.cos(p) * np.sin(y) - np.sin(r) * np.sin(p) * np.cos(y),
        ],
        1,
    )
    rows = np.arange(0, len(state), max(1, round(1.0 / (fps * C.POLICY_DT))))
    measured = np.column_stack([v[:, 0], v[:, 1], w[:, 2]])
    return Motion(
        rows * C.POLICY_DT,
        position[rows],
        quat[rows],
        state[rows, C.JOINT_POS],
        np.asarray(traj.command, dtype=np.float64)[rows],
        measured[rows],
    )
