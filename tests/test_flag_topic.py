"""The monitor's anomaly flag is published only when it changes, so it must reach a reader that
matches later (the policy node's rollback, a dashboard, a bench) with its current value."""

from __future__ import annotations

import time

import pytest

from ros_helpers import domain_id, ros_context

pytestmark = pytest.mark.ros


def test_a_reader_that_joins_late_gets_the_flags_current_value() -> None:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import Bool

    from rwm_ros.topics import FLAG_QOS, TOPIC_WM_ANOMALY

    with ros_context(domain_id(3)) as ctx:
        node = Node("flag_test", context=ctx)
        pub = node.create_publisher(Bool, TOPIC_WM_ANOMALY, FLAG_QOS)
        pub.publish(Bool(data=False))
        pub.publish(Bool(data=True))  # the value now; nobody listens yet
        got: list[bool] = []
        node.create_subscription(Bool, TOPIC_WM_ANOMALY, lambda m: got.append(m.data), FLAG_QOS)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        try:
            end = time.monotonic() + 10.0
            while not got and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
            executor.spin_once(timeout_sec=0.2)
            assert got == [True], "the late reader gets the current value, and only it"
        finally:
            executor.shutdown()
            node.destroy_node()
