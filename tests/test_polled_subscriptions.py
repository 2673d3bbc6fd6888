"""Polled subscriptions: read by their own thread over real DDS, never by the node's executor."""

from __future__ import annotations

import time

import pytest

from ros_helpers import domain_id, ros_context

pytestmark = pytest.mark.ros


def test_wait_take_and_take_latest_outside_the_executor() -> None:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import Int32

    from rwm_ros.polled_subscriptions import PolledSubscriptions

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    with ros_context(domain_id(3)) as ctx:
        node = Node("polled_test", context=ctx)
        inputs = PolledSubscriptions(node)
        waking = inputs.subscribe(Int32, "/polled/a", qos, wakes=True)
        quiet = inputs.subscribe(Int32, "/polled/b", qos, wakes=False)
        pub_a = node.create_publisher(Int32, "/polled/a", qos)
        pub_b = node.create_publisher(Int32, "/polled/b", qos)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        try:
            end = time.monotonic() + 10.0
            while pub_a.get_subscription_count() < 1 or pub_b.get_subscription_count() < 1:
                assert time.monotonic() < end, "subscriptions not matched"
                time.sleep(0.02)
            for i in range(3):
                pub_b.publish(Int32(data=i))
            start = time.monotonic()
            inputs.wait(0.2)  # /polled/b does not wake it: the full timeout passes
            assert time.monotonic() - start >= 0.15
            pub_a.publish(Int32(data=7))
            start = time.monotonic()
            inputs.wait(5.0)
            assert time.monotonic() - start < 1.0, "a message on a waking subscription ends the wait"
            # The executor spins the node but never runs the polled subscriptions' callbacks (they raise).
            executor.spin_once(timeout_sec=0.05)
            cdr = inputs.take(waking)
            assert deserialize_message(cdr, Int32).data == 7 and inputs.take(waking) is None
            latest = inputs.take_latest(quiet)
            assert deserialize_message(latest, Int32).data == 2, "the newest, older ones dropped"
            assert inputs.take_latest(quiet) is None
            with pytest.raises(RuntimeError):
                inputs.subscribe(Int32, "/polled/c", qos, wakes=True)  # after the first wait
        finally:
            executor.shutdown()
            node.destroy_node()
