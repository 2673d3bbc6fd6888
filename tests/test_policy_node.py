"""The policy node over real DDS against the simulated robot: bad input is dropped and counted, the
e-stop holds the posture, and the watchdog takes over within 100 ms when the robot stops talking."""

from __future__ import annotations

import math
import shutil
import signal
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ros_helpers import PYTHON, domain_id, node_process, ros_context, ros_env, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]
rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from rwm.robot import contract as C  # noqa: E402
from rwm.robot.kinematics import AnymalKinematics  # noqa: E402
from rwm_ros.conversions import JointOrder  # noqa: E402
from rwm_ros.middleware import remove_zombie_shm_files  # noqa: E402

BAD_STAMP_SEC = 2_000_000_000
LIMITS = AnymalKinematics()


class Operator:
    """Test-side node: records commands and joint states, reads the policy's diagnostics, publishes."""

    def __init__(self, ctx) -> None:
        self.node = rclpy.create_node("policy_test", context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.commands: list[tuple[float, np.ndarray, float]] = []
        """(received, monotonic s; joint targets; header stamp, s): a command answering a state carries
        that state's stamp, one from a backup or watchdog tick the node's clock at the tick."""
        self.last_state_stamp = 0.0
        self.last_q = np.zeros(12)
        self.recent_q: deque[np.ndarray] = deque(maxlen=200)
        """The last 0.5 s of measured postures as the node holds them: joint positions plus the measured
        torque / kp, clamped to the joint limits."""
        self.diag: dict[str, str] = {}
        self._order = JointOrder()
        self.node.create_subscription(JointState, C.TOPIC_JOINT_COMMAND, self._on_command, qos)
        self.node.create_subscription(JointState, C.TOPIC_JOINT_STATES, self._on_state, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        # Best-effort writers, as robot drivers (sensor-data QoS) and many teleop tools are: heard too.
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub_states = self.node.create_publisher(JointState, C.TOPIC_JOINT_STATES, best_effort)
        self.pub_cmd = self.node.create_publisher(Twist, C.TOPIC_CMD_VEL, best_effort)
        self.pub_estop = self.node.create_publisher(Bool, C.TOPIC_ESTOP, best_effort)

    def _on_command(self, msg: JointState) -> None:
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        self.commands.append((time.monotonic(), self._order.read(msg, "position").copy(), stamp))

    def _on_state(self, msg: JointState) -> None:
        if msg.header.stamp.sec == BAD_STAMP_SEC:
            return  # our own injected messages
        self.last_state_stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        self.last_q = self._order.read(msg, "position").copy()
        held = self.last_q + self._order.read(msg, "effort") / C.KP
        self.recent_q.append(np.clip(held, LIMITS.joint_lower, LIMITS.joint_upper))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name.endswith("control loop"):
                self.diag = {kv.key: kv.value for kv in s.values}

    def was_measured(self, targets: np.ndarray) -> bool:
        """The targets hold one of the recently measured postures (exactly, up to float64 round-off)."""
        return any(np.abs(targets - q).max() < 1e-9 for q in self.recent_q)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def bad_state(self, kind: str) -> JointState:
        msg = JointState()
        msg.header.stamp = Time(sec=BAD_STAMP_SEC)  # "due" on any grid, so the node reads it
        msg.name = list(C.JOINT_NAMES)
        msg.position = list(C.DEFAULT_JOINT_POS)
        msg.velocity = [0.0] * 12
        msg.effort = [0.0] * 12
        if kind == "nan":
            msg.position[4] = math.nan
        else:  # a contract joint missing (another joint in its place)
            msg.name[4] = "LF_WHEEL"
        return msg


@contextmanager
def _running_stack(*policy_params: str):
    """The simulated robot and the policy node (with `name:=value` parameters), in policy mode (the
    stand hold off: these tests read the policy's own commands at zero command)."""
    domain = domain_id(3)
    env = ros_env(domain)
    # As the launch file does: ports that dead processes left (this test SIGKILLs the simulator) keep
    # their creator's health-check timeout, up to Fast DDS's default 1 s (rwm_ros.middleware).
    remove_zombie_shm_files()
    sim = [PYTHON, "-m", "rwm_ros.sim_node", "--ros-args", "-r", "__node:=anymal_sim"]
    policy = [PYTHON, "-m", "rwm_ros.policy_node", "--ros-args", "-r", "__node:=policy"]
    for param in ("soft_start_s:=0.5", "stand_hold_after_s:=0.0", *policy_params):
        policy += ["-p", param]
    with (
        ros_context(domain) as ctx,
        node_process(sim, env) as sim_proc,
        node_process(policy, env) as pol_proc,
    ):
        op = Operator(ctx)
        try:
            wait_for(op.executor.spin_once, lambda: op.diag.get("mode") == "policy", 30.0, "policy mode")
            yield op, sim_proc, pol_proc
        finally:
            op.node.destroy_node()


@pytest.fixture()
def stack():
    with _running_stack() as running:
        yield running


def test_a_policy_version_swaps_in_live_and_rolls_back_on_an_anomaly(tmp_path):
    """/rwm/policy/reload: a file outside the versions directory is refused; a version inside it is
    swapped in; a world-model anomaly within the rollback window brings the previous one back."""
    from std_msgs.msg import String

    from rwm_ros.topics import FLAG_QOS, TOPIC_POLICY_RELOAD, TOPIC_WM_ANOMALY

    versions = tmp_path / "versions"
    versions.mkdir()
    shipped = Path(__file__).resolve().parents[1] / "models"
    shutil.copy(shipped / "anymal_d_mbpo.onnx", versions / "policy_v1.onnx")
    with _running_stack(f"versions_dir:={versions}", "rollback_window_s:=30.0") as (op, _, pol_proc):
        reload = op.node.create_publisher(String, TOPIC_POLICY_RELOAD, 10)
        anomaly = op.node.create_publisher(Bool, TOPIC_WM_ANOMALY, FLAG_QOS)
        wait_for(op.spin, lambda: reload.get_subscription_count() > 0, 10.0, "the policy node's reload topic")
        reload.publish(String(data=str(shipped / "anymal_d_mbpo.onnx")))  # a good policy, wrong place
        wait_for(op.spin, lambda: op.diag.get("reloads_rejected") == "1", 10.0, "the outside file refused")
        reload.publish(String(data=str(versions / "policy_v1.onnx")))
        wait_for(op.spin, lambda: op.diag.get("reloads_accepted") == "1", 10.0, "the version swapped in")
        assert op.diag["policy_version"] == str(versions / "policy_v1.onnx") and op.diag["mode"] == "policy"
        anomaly.publish(Bool(data=True))
        wait_for(op.spin, lambda: op.diag.get("reloads_rolled_back") == "1", 10.0, "the rollback")
        assert op.diag["policy_version"].endswith("anymal_d_ppo.onnx") and pol_proc.poll() is None


def test_bad_input_is_dropped_estop_holds_and_watchdog_takes_over(stack):
    op, sim_proc, pol_proc = stack
    # NaN and a missing joint on the robot's topic, NaN velocity command: counted, never passed on.
    for kind in ("nan", "missing") * 3:
        op.pub_states.publish(op.bad_state(kind))
        op.spin(0.05)
    nan_cmd = Twist()
    nan_cmd.linear.x = math.nan
    op.pub_cmd.publish(nan_cmd)
    op.spin(2.2)  # two diagnostics periods
    assert int(op.diag.get("rejected_joints_nan", 0)) >= 1
    assert int(op.diag.get("rejected_joint_states_missing", 0)) >= 1
    assert int(op.diag.get("rejected_cmd_vel_nan", 0)) == 1
    assert op.diag["mode"] == "policy"
    assert all(np.isfinite(c).all() for _, c, _ in op.commands)

    # E-stop: from the next command on the targets hold still, and the loop reports it.
    op.pub_estop.publish(Bool(data=True))
    op.spin(0.1)
    assert op.was_measured(op.commands[-1][1]), "the hold is the pose measured when the e-stop engaged"
    engaged = len(op.commands)
    op.spin(1.2)
    held = [c for _, c, _ in op.commands[engaged - 1 :]]
    assert len(held) > 40 and all(np.array_equal(c, held[0]) for c in held)
    assert op.diag["mode"] == "estop"
    op.pub_estop.publish(Bool(data=False))
    wait_for(op.executor.spin_once, lambda: op.diag.get("mode") == "policy", 10.0, "re-armed policy mode")

    # Watchdog: the robot stops publishing; within 100 ms the commands hold the last measured pose.
    # Timed by the stamps (sim and node share the wall clock), so a slow test process cannot skew it.
    sim_proc.send_signal(signal.SIGKILL)
    sim_proc.wait()
    op.spin(0.5)  # the states still in flight
    stopped_at = op.last_state_stamp
    # Delivery may lag (the stamps time the hold, not the arrivals): wait for 0.5 s of stamped commands.
    wait_for(
        op.spin,
        lambda: op.commands[-1][2] > stopped_at + 0.5,
        10.0,
        f"commands stamped 0.5 s after the robot's last state; the policy node said: {pol_proc.output[-20:]}",
    )
    after = [(stamp, c) for _, c, stamp in op.commands if stamp > stopped_at]
    final = after[-1][1]
    first_hold = next(stamp for stamp, c in after if np.array_equal(c, final))
    assert all(np.array_equal(c, final) for stamp, c in after if stamp >= first_hold), "the hold is steady"
    assert first_hold - stopped_at < 0.1, (
        [(round(s - stopped_at, 3), np.array_equal(c, final)) for s, c in after[:10]],
        pol_proc.output[-20:],
    )
    assert op.was_measured(final), "the hold posture is the last measured pose"
    assert pol_proc.poll() is None, "the policy node keeps running"

    # States keep coming but all are rejected (NaN at 400 Hz): the watchdog still ticks, holding.
    flood_from = time.monotonic()
    bad = op.bad_state("nan")
    while (now := time.monotonic()) - flood_from < 0.6:
        op.pub_states.publish(bad)
        while time.monotonic() - now < 0.0025:  # serve the callbacks (our own flood comes back too)
            op.executor.spin_once(timeout_sec=0.0005)
    flood_to = time.monotonic()
    op.spin(0.3)
    during = [c for t, c, _ in op.commands if flood_from + 0.05 < t < flood_to]
    # the backup tick comes every 1.5 periods (30 ms): ~18 in 0.55 s
    assert len(during) >= 14, f"{len(during)} commands in 0.55 s of rejected states: the loop starved"
    assert all(np.array_equal(c, final) for c in during), "still the watchdog's hold"
