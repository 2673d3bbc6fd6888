"""Decoding the robot state on the policy's 50 Hz path: microseconds per tick.

Each tick the policy node reads one joint state, one IMU and one odometry message, serialized (CDR).
`RobotStateReader` takes their numbers straight from the bytes (`rwm_ros.cdr_fields`); before, each
went through rclpy's `deserialize_message` into a message object. This times both on the same
messages (as the simulation node sends them: 12 named joints, frame names set) and prints JSON: the
microseconds per message and per tick, and the ratio. The rclpy path is timed as the reader ran it:
deserialize, then the fields copied out (joint values by name).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Imu, JointState

from rwm.robot import contract as C
from rwm_ros.conversions import JointOrder, quat_msg_to_wxyz, vector3_to_array
from rwm_ros.robot_state import RobotStateReader


class _Quiet:
    def warning(self, *_args, **_kwargs) -> None:
        pass


def messages() -> dict[str, bytes]:
    joints = JointState(name=list(C.JOINT_NAMES), position=[0.1] * 12, velocity=[0.2] * 12, effort=[3.0] * 12)
    imu, odom = Imu(), Odometry()
    imu.orientation.w = 1.0
    imu.header.frame_id = odom.child_frame_id = C.BASE_FRAME
    odom.header.frame_id = C.ODOM_FRAME
    return {
        "joint_states": serialize_message(joints),
        "imu": serialize_message(imu),
        "odom": serialize_message(odom),
    }


def rclpy_readers() -> dict:
    """The reader's former path: a message object per message, fields copied out."""
    order, q, v3 = JointOrder(extra_joints_allowed=True), np.empty(12), np.empty(3)
    quat = np.empty(4)

    def joints(cdr: bytes) -> None:
        msg = deserialize_message(cdr, JointState)
        for field in ("position", "velocity", "effort"):
            order.read(msg, field, q)

    def imu(cdr: bytes) -> None:
        msg = deserialize_message(cdr, Imu)
        quat_msg_to_wxyz(msg.orientation, quat)
        vector3_to_array(msg.angular_velocity, v3)

    def odom(cdr: bytes) -> None:
        msg = deserialize_message(cdr, Odometry)
        vector3_to_array(msg.twist.twist.linear, v3)
        vector3_to_array(msg.twist.twist.angular, v3)
        vector3_to_array(msg.pose.pose.position, v3)

    return {"joint_states": joints, "imu": imu, "odom": odom}


def per_call_us(fn, cdr: bytes, repeats: int) -> float:
    for _ in range(1000):
        fn(cdr)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(cdr)
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=20000)
    args = ap.parse_args()
    cdr = messages()
    reader = RobotStateReader(_Quiet())
    reader.joints(cdr["joint_states"])  # the first joint state is decoded by rclpy to learn the names
    from_bytes = {"joint_states": reader.joints, "imu": reader.imu, "odom": reader.odom}
    if not all(fn(cdr[k]) for k, fn in from_bytes.items()):
        raise SystemExit("the reader rejected a message")
    figures = {
        "from_bytes_us": {k: round(per_call_us(fn, cdr[k], args.repeats), 2) for k, fn in from_bytes.items()},
        "rclpy_us": {k: round(per_call_us(fn, cdr[k], args.repeats), 2) for k, fn in rclpy_readers().items()},
    }
    ticks = {k: round(sum(v.values()), 1) for k, v in figures.items()}
    print(
        json.dumps(
            {
                **figures,
                "per_tick_from_bytes_us": ticks["from_bytes_us"],
                "per_tick_rclpy_us": ticks["rclpy_us"],
                "speedup": round(ticks["rclpy_us"] / ticks["from_bytes_us"], 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
