"""The nodes' skeleton and their one robot-state rule: parameters from the core's config dataclasses
(names, defaults, descriptions, ranges), a worker thread whose crash ends the node, and the reader
that accepts or rejects robot messages the same way in every node."""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Imu, JointState

from ros_helpers import domain_id, node_process, ros_context, ros_env
from rwm.control.safety import SafetyConfig
from rwm.data.bag_recorder import RecorderConfig
from rwm.robot import contract as C
from rwm_ros.node_base import WorkerThread, declare_config, field_descriptions
from rwm_ros.robot_state import RobotStateReader


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str, **_) -> None:
        self.lines.append(text)


def _joints(names=C.JOINT_NAMES, q=None) -> bytes:
    q = np.arange(12.0) if q is None else q
    order = [C.JOINT_NAMES.index(n) for n in names]
    msg = JointState(
        name=list(names), position=list(q[order]), velocity=list(-q[order]), effort=[1.0] * len(names)
    )
    return serialize_message(msg)


def _imu(quat_wxyz=(1.0, 0.0, 0.0, 0.0)) -> bytes:
    msg = Imu()
    msg.orientation.w, msg.orientation.x, msg.orientation.y, msg.orientation.z = quat_wxyz
    msg.angular_velocity.z = 0.3
    return serialize_message(msg)


def _odom(vx=0.5) -> bytes:
    msg = Odometry()
    msg.twist.twist.linear.x = vx
    msg.pose.pose.position.x = 2.0
    return serialize_message(msg)


def test_reader_assembles_the_contract_state_from_messages_in_any_joint_order() -> None:
    reader = RobotStateReader(_Log())
    assert not reader.complete
    assert reader.joints(_joints(tuple(reversed(C.JOINT_NAMES))))
    assert reader.imu(_imu((0.0, 1.0, 0.0, 0.0)))  # upside down: gravity points up in the base
    assert reader.odom(_odom())
    state = reader.state(np.zeros(C.STATE_DIM))
    np.testing.assert_array_equal(state[C.JOINT_POS], np.arange(12.0))
    np.testing.assert_array_equal(state[C.JOINT_VEL], -np.arange(12.0))
    np.testing.assert_allclose(state[C.GRAVITY], [0.0, 0.0, 1.0], atol=1e-12)
    assert state[C.ANG_VEL][2] == 0.3 and state[C.LIN_VEL][0] == 0.5 and reader.position[0] == 2.0


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (lambda r: r.joints(_joints(C.JOINT_NAMES[:11], np.arange(12.0))), "joint_states_missing"),
        (lambda r: r.joints(_joints(q=np.full(12, np.nan))), "joints_nan"),
        (lambda r: r.joints(b"\x00\x01\x00\x00garbage"), "joint_states_undecodable"),
        (lambda r: r.imu(_imu((0.5, 0.0, 0.0, 0.0))), "imu_invalid"),
        (lambda r: r.odom(_odom(float("inf"))), "odom_nan"),
    ],
)
def test_reader_rejects_bad_messages_and_keeps_the_last_good_state(message, reason) -> None:
    log = _Log()
    reader = RobotStateReader(log)
    reader.joints(_joints())
    reader.imu(_imu())
    reader.odom(_odom())
    before = reader.state(np.zeros(C.STATE_DIM)).copy()
    assert message(reader) is False
    assert reader.rejected == {reason: 1} and log.lines
    np.testing.assert_array_equal(reader.state(np.zeros(C.STATE_DIM)), before)


@pytest.mark.parametrize("frame", ["", "b", "base", "base_link", "a_longer_frame"])
def test_reader_takes_the_numbers_from_the_bytes_as_rclpy_decodes_them(frame) -> None:
    """Joint states (once their names were read and accepted), IMU and odometry are read from their CDR
    bytes without rclpy, whatever the frame names' lengths do to the alignment; a joint state with other
    names, or a cut message, goes to rclpy and the rules."""
    rng = np.random.default_rng(len(frame))
    reader = RobotStateReader(_Log())
    decoded = []
    decode = reader._decode
    reader._decode = lambda *a: decoded.append(a[1]) or decode(*a)
    names = [*rng.permutation(C.JOINT_NAMES), "arm_joint"][:: 1 if len(frame) % 2 else -1]

    def joints(values: np.ndarray) -> bytes:
        msg = JointState(
            name=names, position=list(values[0]), velocity=list(values[1]), effort=list(values[2])
        )
        msg.header.frame_id = frame
        return serialize_message(msg)

    order = [names.index(n) for n in C.JOINT_NAMES]
    for _ in range(3):
        values = rng.normal(size=(3, 13))
        assert reader.joints(joints(values))
        np.testing.assert_array_equal(reader.joint_pos, values[0, order])
        np.testing.assert_array_equal(reader.joint_vel, values[1, order])
        np.testing.assert_array_equal(reader.joint_torque, values[2, order])
    assert decoded == [JointState], "decoded once, to learn the names; read from the bytes after"
    imu = Imu()
    imu.header.frame_id = frame
    q = rng.normal(size=4)
    imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = q / np.linalg.norm(q)
    imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = rng.normal(size=3)
    imu.angular_velocity_covariance[0] = imu.linear_acceleration.x = 7.0
    assert reader.imu(serialize_message(imu))
    np.testing.assert_array_equal(reader.quat, (q / np.linalg.norm(q))[[3, 0, 1, 2]])
    np.testing.assert_array_equal(
        reader.ang_vel, [imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z]
    )
    odom = Odometry()
    odom.header.frame_id, odom.child_frame_id = frame, frame[::-1] + "_x"
    odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.position.z = rng.normal(size=3)
    odom.pose.pose.orientation.w = odom.pose.covariance[35] = odom.twist.covariance[0] = 9.0
    tw = odom.twist.twist
    tw.linear.x, tw.linear.y, tw.linear.z, tw.angular.x, tw.angular.y, tw.angular.z = rng.normal(size=6)
    assert reader.odom(serialize_message(odom))
    np.testing.assert_array_equal(reader.lin_vel, [tw.linear.x, tw.linear.y, tw.linear.z])
    np.testing.assert_array_equal(reader.odom_ang_vel, [tw.angular.x, tw.angular.y, tw.angular.z])
    p = odom.pose.pose.position
    np.testing.assert_array_equal(reader.position, [p.x, p.y, p.z])
    assert decoded == [JointState], "IMU and odometry from the bytes"
    names = names[::-1]  # the sender changed its joint list: read by name through rclpy again
    values = rng.normal(size=(3, 13))
    assert reader.joints(joints(values))
    np.testing.assert_array_equal(reader.joint_pos, values[0, [names.index(n) for n in C.JOINT_NAMES]])
    assert decoded == [JointState, JointState]
    other = JointState(name=names[::-1], position=[0.0] * 13)  # another sender's order, no velocities
    assert not reader.joints(serialize_message(other)), "rejected: 13 names, 0 velocities"
    values = rng.normal(size=(3, 13))
    assert reader.joints(joints(values)), "the first sender again, from the bytes"
    np.testing.assert_array_equal(reader.joint_pos, values[0, [names.index(n) for n in C.JOINT_NAMES]])
    assert decoded == [JointState] * 3
    before = reader.state(np.zeros(C.STATE_DIM)).copy()
    cut = [joints(values)[:-8], serialize_message(imu)[:-8], serialize_message(odom)[:-8]]
    assert not reader.joints(cut[0]) and not reader.imu(cut[1]) and not reader.odom(cut[2])
    for short in (serialize_message(odom)[:n] for n in (3, 14, 17 + len(frame), 22 + len(frame))):
        assert not reader.odom(short) and not reader.imu(short), "cut anywhere: rejected, never raised"
    assert sorted(reader.rejected) == [
        "imu_undecodable",
        "joint_states_length",
        "joint_states_undecodable",
        "odom_undecodable",
    ]
    np.testing.assert_array_equal(reader.state(np.zeros(C.STATE_DIM)), before)


def test_parameters_come_with_the_core_docstrings_and_ranges() -> None:
    docs = field_descriptions(SafetyConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(SafetyConfig)}, "every field is described"
    assert "watchdog" not in docs["soft_start_s"] and "standing pose" in docs["soft_start_s"]
    assert "killed recorder" in field_descriptions(RecorderConfig)["flush_interval_s"]
    rclpy = pytest.importorskip("rclpy")
    from rclpy.exceptions import InvalidParameterValueException
    from rclpy.parameter import Parameter

    with ros_context(domain_id(3)) as ctx:
        node = rclpy.create_node("params_test", context=ctx)
        cfg = declare_config(node, SafetyConfig, watchdog_periods=5)
        assert cfg == SafetyConfig(watchdog_periods=5)
        described = node.describe_parameter("max_target_step")
        assert "Largest change" in described.description
        assert described.floating_point_range[0].to_value == 2.0
        (result,) = node.set_parameters([Parameter("joint_margin", value=3.0)])
        assert not result.successful and node.get_parameter("joint_margin").value == 0.0, "refused"
        overridden = rclpy.create_node(
            "params_override",
            context=ctx,
            parameter_overrides=[Parameter("watchdog_periods", value=500)],
        )
        with pytest.raises(InvalidParameterValueException):
            declare_config(overridden, SafetyConfig)
        node.destroy_node()
        overridden.destroy_node()


def test_a_failed_worker_ends_its_node() -> None:
    rclpy = pytest.importorskip("rclpy")
    with ros_context(domain_id(3)) as ctx:
        node = rclpy.create_node("worker_test", context=ctx)
        published: list = []
        node.pub_diag = SimpleNamespace(publish=published.append)  # stands in for the node's publisher

        def broken(stop) -> None:
            raise RuntimeError("sensor driver gone")

        worker = WorkerThread(node, "control", broken)
        worker.start()
        deadline = time.monotonic() + 5.0
        while ctx.ok() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not ctx.ok(), "the node's context is shut down: its spin ends"
        assert isinstance(worker.failure, RuntimeError) and worker.stop()
        (report,) = published
        assert (
            report.status[0].level == DiagnosticStatus.ERROR
            and "sensor driver gone" in report.status[0].message
        )
        stopped = WorkerThread(node, "quiet", lambda stop: stop.wait())
        stopped.start()
        assert stopped.stop() and stopped.failure is None, "a stop is not a failure"


HANGING_NODE = """
import time
import rclpy.node
from rwm_ros import spin

spin.EXIT_STACK_DUMP_S = 0.5


class HangsAtItsEnd(rclpy.node.Node):
    def __init__(self):
        super().__init__("hangs_at_its_end")
        print("up", flush=True)

    def destroy_node(self):
        time.sleep(2.0)  # stands in for a teardown that does not return
        super().destroy_node()


spin.spin_node(HangsAtItsEnd)
"""


def test_a_node_that_hangs_at_its_end_prints_where() -> None:
    """After the spin ends, a node still alive EXIT_STACK_DUMP_S later dumps every thread's stack to
    stderr and goes on: the hang's place shows in launch's log, and the exit stays clean."""
    with node_process([sys.executable, "-c", HANGING_NODE], ros_env(domain_id(3))) as proc:
        deadline = time.monotonic() + 20.0
        while "up\n" not in proc.output and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, "".join(proc.output)
    output = "".join(proc.output)
    assert "most recent call first" in output and "in destroy_node" in output, output
