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


def test_stamp_aligned_stream_takes_the_sample_of_a_stamp_and_keeps_newer_ones() -> None:
    """The world-model monitor pairs each command with the state it was computed from, not the newest."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import JointState

    from rwm_ros.conversions import set_stamp_ns, stamp_to_ns
    from rwm_ros.polled_subscriptions import PolledSubscriptions, StampAlignedStream

    qos = QoSProfile(depth=32, reliability=ReliabilityPolicy.RELIABLE)
    with ros_context(domain_id(3)) as ctx:
        node = Node("stamp_aligned_test", context=ctx)
        inputs = PolledSubscriptions(node)
        stream = StampAlignedStream(inputs.subscribe(JointState, "/polled/stamped", qos, wakes=False))
        pub = node.create_publisher(JointState, "/polled/stamped", qos)
        try:
            end = time.monotonic() + 10.0
            while pub.get_subscription_count() < 1:
                assert time.monotonic() < end, "subscription not matched"
                time.sleep(0.02)

            def publish(stamps_ms):
                for ms in stamps_ms:
                    msg = JointState()
                    set_stamp_ns(msg.header.stamp, round(ms * 1e6))
                    pub.publish(msg)

            def take_at(ms):
                """The stamp (ms) of what take_at returns, after waiting for the sample of that stamp."""
                end = time.monotonic() + 5.0
                while True:  # samples may still be on their way: the earlier ones are taken and dropped
                    taken = stream.take_at(round(ms * 1e6))
                    if taken is not None and taken[1] == round(ms * 1e6) or time.monotonic() > end:
                        break
                    time.sleep(0.05)
                assert (
                    taken is not None
                    and stamp_to_ns(deserialize_message(taken[0], JointState).header.stamp) == taken[1]
                )
                return taken[1] / 1e6

            publish(2.5 * k for k in range(1, 11))
            assert take_at(12.5) == 12.5, "the newest at or before the stamp, older ones dropped"
            assert stream.take_at(14_000_000) is None, "the next sample is newer: held for a later step"
            assert take_at(17.5) == 17.5
            assert take_at(25.0) == 25.0
            assert stream.take_at(10**12) is None, "nothing left"
            publish([30.0, 2.5, 5.0])  # after 30 ms the publisher restarts on its own clock
            time.sleep(0.5)
            assert stream.take_at(27_500_000) is None, "the old timeline's 30 ms is held for a later step"
            assert take_at(5.0) == 5.0, "asked for an earlier stamp than before: the held 30 ms is dropped"
        finally:
            node.destroy_node()
