"""The data logger: split bags in the replay buffer, nothing lost at 400 Hz, clean close on SIGTERM,
recording stops before the disk is full."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

from ros_helpers import PYTHON, domain_id, node_process, ros_context, ros_env, wait_for
from rwm.data.bag_recorder import PARTIAL, RecorderConfig, SplitBagRecorder


def _bags(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name != PARTIAL)


def test_recorder_splits_by_duration_and_size_and_publishes_complete_bags_only(tmp_path):
    rec = SplitBagRecorder(RecorderConfig(directory=str(tmp_path), split_duration_s=1.0, split_size_mb=0.01))
    data = bytes(4) + bytes(200)  # an (empty) CDR payload is opaque to the recorder
    for i in range(100):  # 0.1 s apart: duration splits every 10; 20 kB of messages splits by size first
        assert rec.write("/cmd_vel", "geometry_msgs/msg/Twist", data, 1_000_000_000 + i * 100_000_000)
    assert rec.bag is not None and rec.bag.path.parent.name == PARTIAL, "the open bag is still partial"
    rec.close()
    bags = _bags(tmp_path)
    assert len(bags) == len(rec.closed_bags) >= 10 and not any((tmp_path / PARTIAL).iterdir())
    assert all((b / "metadata.yaml").is_file() for b in bags)


def test_every_split_opens_with_the_latched_topics(tmp_path):
    """The robot description and static transforms, published once, are in every split bag (written
    again when a split opens, with a latched QoS), so that each bag alone draws the robot."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    description = store.serialize_cdr(
        store.types["std_msgs/msg/String"](data="<robot/>"), "std_msgs/msg/String"
    )
    rec = SplitBagRecorder(RecorderConfig(directory=str(tmp_path), split_duration_s=1.0))
    rec.write("/robot_description", "std_msgs/msg/String", description, 1_000_000_000, latched=True)
    for i in range(30):
        rec.write("/cmd_vel", "geometry_msgs/msg/Twist", bytes(52), 1_000_000_000 + i * 100_000_000)
    rec.close()
    bags = _bags(tmp_path)
    assert len(bags) == 3 and rec.written == 31 and rec.repeated == 2
    for bag in bags:
        with Reader(bag) as reader:
            (conn,) = [c for c in reader.connections if c.topic == "/robot_description"]
            assert (
                conn.msgcount == 1 and conn.ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"
            )
            first = next(iter(reader.messages()))
            assert first[0].topic == "/robot_description", "the description opens the bag"
            assert store.deserialize_cdr(first[2], "std_msgs/msg/String").data == "<robot/>"


def test_recorder_stops_cleanly_when_the_disk_runs_low(tmp_path):
    rec = SplitBagRecorder(RecorderConfig(directory=str(tmp_path), min_free_mb=1e12))
    assert not rec.write("/cmd_vel", "geometry_msgs/msg/Twist", bytes(52), 1)
    assert "free disk space" in rec.stopped_reason and rec.bag is None


@pytest.mark.ros
@pytest.mark.slow
def test_logger_node_loses_nothing_at_400_hz_and_closes_on_sigterm(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import JointState

    from rwm.robot import contract as C

    domain = domain_id(1)
    env = ros_env(domain)
    cmd = [PYTHON, "-m", "rwm_ros.logger_node", "--ros-args", "-r", "__node:=data_logger"]
    cmd += ["-p", f"directory:={tmp_path}", "-p", "split_duration_s:=2.0"]
    n = 2400  # 6 s at 400 Hz
    with ros_context(domain) as ctx, node_process(cmd, env) as logger:
        node = rclpy.create_node("logger_test", context=ctx)
        pub = node.create_publisher(
            JointState, C.TOPIC_JOINT_STATES, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        )
        wait_for(lambda t: time.sleep(t), lambda: pub.get_subscription_count() > 0, 20.0, "the logger")
        # The writer has seen the reader; the reader's side of the match can come a moment later (it
        # now discovers 12 topics), and what is sent before it is not the logger's to lose.
        time.sleep(0.5)
        msg = JointState()
        msg.name = list(C.JOINT_NAMES)
        msg.position = [0.0] * 12
        start = time.monotonic()
        for i in range(n):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(i * 2_500_000, 1_000_000_000)
            msg.position[0] = float(i)
            pub.publish(msg)
            delay = start + (i + 1) * 0.0025 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        time.sleep(0.5)
        logger.send_signal(signal.SIGTERM)
        logger.wait(timeout=15)
        out = "".join(logger.output)
        node.destroy_node()
    assert logger.returncode == 0, out
    bags = _bags(tmp_path)
    assert len(bags) >= 3, "split every 2 s"
    assert not any((tmp_path / PARTIAL).iterdir()), "the last bag was closed and published on SIGTERM"
    with AnyReader(bags) as reader:
        conns = [c for c in reader.connections if c.topic == C.TOPIC_JOINT_STATES]
        seen = [int(reader.deserialize(raw, c.msgtype).position[0]) for c, _, raw in reader.messages(conns)]
    assert sorted(seen) == list(range(n)), f"lost {n - len(set(seen))} of {n}"
    assert np.all(np.diff(seen) > 0), "in order"
