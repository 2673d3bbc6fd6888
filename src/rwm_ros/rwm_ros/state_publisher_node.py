"""`state_publisher`: the robot description and its TF tree, so that RViz and Foxglove draw the robot,
live and from every bag. It reads only the contract's joint states and odometry, so it runs on
hardware as it does in simulation (a real driver publishes joint states, not TF).

- /robot_description (std_msgs/String, latched): the URDF in use;
- /tf_static (latched): every fixed transform of the URDF (`rwm.robot.tf_tree`);
- /tf: odom -> base from the odometry, and the 12 leg transforms from the joint states, at
  `rate_hz` from the newest sample of each (they come at 400 Hz; a display needs far less). The
  streams never wake the node (`PolledSubscriptions`): only the samples used are deserialized. A
  thread of the node paces /tf on the wall clock: through the rclpy executor, a 50 Hz timer alone
  cost 7 % of a core here (1.4 ms per wake-up).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from rwm.robot import contract as C
from rwm.robot.description import find_urdf
from rwm.robot.tf_tree import TransformTree
from rwm_ros.conversions import JointMessageError, JointOrder
from rwm_ros.node_base import ReaderGate, WorkerThread, declare, print_published, raise_middleware_threads
from rwm_ros.polled_subscriptions import PolledSubscriptions
from rwm_ros.spin import spin_node
from rwm_ros.topics import TOPIC_ROBOT_DESCRIPTION, TOPIC_TF, TOPIC_TF_STATIC, reader_qos

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
"""What robot_state_publisher offers for the description and the static transforms."""


def _transform(parent: str, child: str, pose: np.ndarray) -> TransformStamped:
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    _set_pose(t, pose)
    return t


def _set_pose(t: TransformStamped, pose: np.ndarray) -> None:
    """[x, y, z, qx, qy, qz, qw] into a transform."""
    tr, q = t.transform.translation, t.transform.rotation
    tr.x, tr.y, tr.z = float(pose[0]), float(pose[1]), float(pose[2])
    q.x, q.y, q.z, q.w = float(pose[3]), float(pose[4]), float(pose[5]), float(pose[6])


class StatePublisherNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("state_publisher", **kwargs)

        robot = declare(self, "robot", "anymal_d", "the robot described (anymal_d|anymal_c)")
        urdf = declare(self, "urdf", "", "URDF file; empty: the robot's description found on this machine")
        self.period_s = 1.0 / declare(
            self,
            "rate_hz",
            50.0,
            "/tf updates per second from the newest joint state and odometry",
            (1.0, 400.0),
        )
        path = find_urdf(robot, urdf or None)
        self.tree = TransformTree(path)
        self._order = JointOrder(extra_joints_allowed=True)  # robot joint states
        self._q = np.zeros(C.NUM_JOINTS)
        self.published_tf = 0
        self.pub_description = self.create_publisher(String, TOPIC_ROBOT_DESCRIPTION, LATCHED)
        self.pub_static = self.create_publisher(TFMessage, TOPIC_TF_STATIC, LATCHED)
        self.pub_tf = self.create_publisher(TFMessage, TOPIC_TF, 10)
        self.pub_description.publish(String(data=self.tree.urdf_text))
        now = self.get_clock().now().to_msg()
        static = [
            _transform(t.parent, t.child, p)
            for t, p in zip(self.tree.fixed, self.tree.static_poses, strict=True)
        ]
        for t in static:
            t.header.stamp = now
        self.pub_static.publish(TFMessage(transforms=static))
        self.msg_legs = TFMessage(
            transforms=[_transform(t.parent, t.child, np.eye(1, 7, 6)[0]) for t in self.tree.moving]
        )
        self.msg_base = TFMessage(transforms=[_transform(C.ODOM_FRAME, C.BASE_FRAME, np.eye(1, 7, 6)[0])])
        qos = reader_qos(1)
        self.inputs = PolledSubscriptions(self)
        self._joints = self.inputs.subscribe(JointState, C.TOPIC_JOINT_STATES, qos, wakes=False)
        self._odom = self.inputs.subscribe(Odometry, C.TOPIC_ODOM, qos, wakes=False)
        self.start_gate = ReaderGate(self, {TOPIC_TF: self.pub_tf})
        """With `await_reader` (the data logger), /tf starts once it is heard: before, the hour soak of
        12-04 lost the first 0.32 s of /tf (30 messages) to the logger's late match."""
        self.workers = [WorkerThread(self, "tf_publisher", self._tf_loop)]
        self.workers[0].start()
        self.get_logger().info(
            f"{path}: {len(static)} static and {len(self.tree.moving)} joint transforms, "
            f"/tf at {1.0 / self.period_s:.0f} Hz; {raise_middleware_threads(self)}"
        )

    def _tf_loop(self, stop: threading.Event) -> None:
        self.start_gate.wait(stop)
        due = time.monotonic()
        while not stop.wait(max(due - time.monotonic(), 0.0)):
            due = max(due + self.period_s, time.monotonic())  # after a stall: on, not a burst
            self._publish_tf()

    def _publish_tf(self) -> None:
        """The newest joint state and odometry, if new, as transforms (an undecodable one is skipped)."""
        for sub, cls, use in (
            (self._joints, JointState, self._on_joints),
            (self._odom, Odometry, self._on_odom),
        ):
            cdr = self.inputs.take_latest(sub)
            if cdr is None:
                continue
            try:
                msg = deserialize_message(cdr, cls)
            except (TypeError, RuntimeError, ValueError) as e:
                self.get_logger().warning(
                    f"undecodable {cls.__name__} skipped: {e}", throttle_duration_sec=5.0
                )
                continue
            use(msg)

    def _on_joints(self, msg: JointState) -> None:
        try:
            self._order.read(msg, "position", self._q)
        except JointMessageError:
            return
        if not np.isfinite(self._q).all():
            return
        for t, pose in zip(self.msg_legs.transforms, self.tree.moving_poses(self._q), strict=True):
            t.header.stamp = msg.header.stamp
            _set_pose(t, pose)
        self.pub_tf.publish(self.msg_legs)
        self.published_tf += 1

    def _on_odom(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        pose = (p.x, p.y, p.z, q.x, q.y, q.z, q.w)
        if not np.isfinite(pose).all():
            return
        t = self.msg_base.transforms[0]
        t.header.stamp = msg.header.stamp
        t.header.frame_id = msg.header.frame_id or C.ODOM_FRAME
        t.child_frame_id = msg.child_frame_id or C.BASE_FRAME
        _set_pose(t, pose)
        self.pub_tf.publish(self.msg_base)
        self.published_tf += 1

    def destroy_node(self) -> None:
        for worker in getattr(self, "workers", ()):
            worker.stop()
        if hasattr(self, "published_tf"):  # absent when __init__ failed
            print_published(
                self, {TOPIC_TF: self.published_tf, TOPIC_TF_STATIC: 1, TOPIC_ROBOT_DESCRIPTION: 1}
            )
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    spin_node(StatePublisherNode, args)


if __name__ == "__main__":
    main()
