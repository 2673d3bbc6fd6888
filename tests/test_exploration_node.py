"""The exploration controller obeys the e-stop as the policy node does: nothing before a measured pose,
then that pose held; on release, the controller again, blended in from the held pose."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ros_helpers import domain_id, ros_context, wait_for

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from rwm.robot import contract as C  # noqa: E402
from rwm_ros.exploration_node import ExplorationNode  # noqa: E402


def test_estop_holds_the_measured_pose_and_release_gives_the_controller_back() -> None:
    with ros_context(domain_id(1)) as ctx:
        node = ExplorationNode(context=ctx, parameter_overrides=[Parameter("release_s", value=0.3)])
        op = rclpy.create_node("operator", context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        executor.add_node(op)
        commands: list[np.ndarray] = []
        op.create_subscription(
            JointState, C.TOPIC_JOINT_COMMAND, lambda m: commands.append(np.array(m.position)), 10
        )
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        states = op.create_publisher(JointState, C.TOPIC_JOINT_STATES, best_effort)
        estop = op.create_publisher(Bool, C.TOPIC_ESTOP, 10)
        lying = C.DEFAULT_JOINT_POS + 0.3
        state = JointState(name=list(C.JOINT_NAMES), position=list(lying))

        def spin(seconds: float, publish_states: bool) -> None:
            """Spin for `seconds` (wall time), the robot reporting its pose at 50 Hz if asked."""
            end = next_state = time.monotonic()
            end += seconds
            while (now := time.monotonic()) < end:
                if publish_states and now >= next_state:
                    states.publish(state)
                    next_state = now + 0.02
                executor.spin_once(timeout_sec=0.005)

        try:
            wait_for(lambda t: spin(t, False), lambda: estop.get_subscription_count() > 0, 10.0, "e-stop")
            estop.publish(Bool(data=True))
            spin(0.5, False)
            assert node.estop and commands == [], "no pose measured: nothing is sent"
            spin(0.5, True)
            assert len(commands) > 5 and all(np.allclose(c, lying) for c in commands), "the measured pose"
            estop.publish(Bool(data=False))
            wait_for(lambda t: spin(t, True), lambda: not node.estop, 5.0, "the release")
            released = len(commands)
            spin(0.8, True)
            after = commands[released:]
            assert len(after) > 10 and np.allclose(after[-1], C.DEFAULT_JOINT_POS), "the controller: standing"
            gap = [np.abs(c - C.DEFAULT_JOINT_POS).max() for c in after]
            assert gap[0] > 0.2 and all(np.diff(gap) <= 1e-9), "blended in from the held pose, not a jump"
        finally:
            executor.shutdown()
            op.destroy_node()
            node.destroy_node()
