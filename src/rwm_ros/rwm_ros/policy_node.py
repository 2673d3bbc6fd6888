"""`policy`: the 50 Hz control loop of ANYmal D around an ONNX policy (`rwm.control.policy_loop`).

Ticks are driven by /anymal/joint_states: when a joint state is due on the 50 Hz grid (by its stamp),
the loop runs at once and the command carries that state's stamp, so latency is one inference, not a
timer phase. IMU and odometry are the latest received (at 400 Hz at most 2.5 ms older). A 50 Hz
backup timer ticks when joint states stop, so the watchdog can take over. Inputs are read by joint
name; NaN or malformed messages are counted and dropped, never passed on.

The 400 Hz topics are taken raw (serialized): a joint state's stamp is read from its bytes, and only
the messages the loop uses (1 in 8) are deserialized, which keeps the node's CPU share small.

Publishes /anymal/joint_command, /diagnostics (1 Hz) and, for the data logger, the policy's
observation and raw action (/rwm/policy/observation, /rwm/policy/action).
"""

from __future__ import annotations

import struct
import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float32MultiArray

from rwm.control.policy_loop import Mode, PolicyLoop
from rwm.control.safety import SafetyConfig
from rwm.export.runtime import OnnxPolicy
from rwm.robot import contract as C
from rwm.robot.kinematics import AnymalKinematics
from rwm_ros.conversions import (
    JointMessageError,
    JointOrder,
    bind_array,
    make_joint_state,
    projected_gravity,
    raw_stamp_ns,
)
from rwm_ros.model_files import resolve_model
from rwm_ros.spin import spin_node
from rwm_ros.topics import TOPIC_ACTION, TOPIC_OBSERVATION


class PolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("policy", **kwargs)

        def declare(name: str, default, description: str):
            return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

        policy_path = declare("policy", "anymal_d_ppo.onnx", "ONNX policy: a path or a name in models/")
        robot = declare("robot", "anymal_d", "robot description for the joint limits (anymal_d|anymal_c)")
        urdf = declare("urdf_path", "", "explicit URDF (empty: search as CONTRACT.md says)")
        rate_hz = declare("rate_hz", 1.0 / C.POLICY_DT, "control rate, Hz (the policy's training rate)")
        safety = SafetyConfig(
            soft_start_s=declare("soft_start_s", 2.0, "ramp to the standing pose before the policy, s"),
            max_target_step=declare("max_target_step", 0.5, "largest target change per command, rad"),
            watchdog_periods=declare(
                "watchdog_periods", 3, "hold the posture after this many periods without state"
            ),
            joint_margin=declare("joint_margin", 0.0, "targets stay this far inside the URDF limits, rad"),
        )
        if not rate_hz > 0.0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.period_s = 1.0 / rate_hz
        self.policy_file = resolve_model(policy_path)
        policy = OnnxPolicy(self.policy_file)
        kin = AnymalKinematics(robot, urdf or None)
        self.loop = PolicyLoop(
            policy, policy.obs_dim, kin.joint_lower, kin.joint_upper, safety, self.period_s
        )

        self._order = JointOrder()
        self._q, self._dq, self._tau = np.zeros(12), np.zeros(12), np.zeros(12)
        self._imu: bytes | None = None
        self._odom: bytes | None = None
        self._imu_t = self._odom_t = -np.inf
        self._quat, self._vec = np.zeros(4), np.zeros(3)
        self._next_stamp_ns: int | None = None
        self._last_tick = -np.inf
        self._period_ns = round(self.period_s * 1e9)
        self._tolerance_ns = self._period_ns // 16  # a state is "due" a little early (400 Hz jitter)
        self.ticks = 0
        self.tick_s_max = 0.0
        self.tick_s_sum = 0.0
        self._modes: dict[str, int] = {}

        self.msg, self._targets_view, _, _ = make_joint_state()
        self.msg.velocity, self.msg.effort = [], []
        self.msg_obs = Float32MultiArray()
        self._obs_view = bind_array(self.msg_obs, "data", policy.obs_dim, "f")
        self.msg_act = Float32MultiArray()
        self._act_view = bind_array(self.msg_act, "data", C.ACTION_DIM, "f")

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.create_publisher(JointState, C.TOPIC_JOINT_COMMAND, qos)
        self.pub_obs = self.create_publisher(Float32MultiArray, TOPIC_OBSERVATION, qos)
        self.pub_act = self.create_publisher(Float32MultiArray, TOPIC_ACTION, qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, C.TOPIC_JOINT_STATES, self._on_joint_states, qos, raw=True)
        self.create_subscription(Imu, C.TOPIC_IMU, self._on_imu, qos, raw=True)
        self.create_subscription(Odometry, C.TOPIC_ODOM, self._on_odom, qos, raw=True)
        self.create_subscription(Twist, C.TOPIC_CMD_VEL, self._on_cmd_vel, 10)
        self.create_subscription(Bool, C.TOPIC_ESTOP, self._on_estop, 10)
        self.create_timer(self.period_s, self._on_backup_timer)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"policy {self.policy_file} at {rate_hz:.0f} Hz; waiting for the robot")

    # -- inputs -------------------------------------------------------------------------------------------
    def _on_imu(self, cdr: bytes) -> None:
        self._imu, self._imu_t = cdr, time.monotonic()

    def _on_odom(self, cdr: bytes) -> None:
        self._odom, self._odom_t = cdr, time.monotonic()

    def _on_cmd_vel(self, msg: Twist) -> None:
        if not self.loop.set_command(msg.linear.x, msg.linear.y, msg.angular.z):
            self.get_logger().warning("non-finite /cmd_vel dropped", throttle_duration_sec=2.0)

    def _on_estop(self, msg: Bool) -> None:
        if msg.data != self.loop.estop:
            self.get_logger().warning(f"e-stop {'ENGAGED' if msg.data else 'released'}")
        self.loop.set_estop(bool(msg.data))
        if msg.data:
            self._tick(time.monotonic(), None)  # hold now, not at the next state

    def _on_joint_states(self, cdr: bytes) -> None:
        now = time.monotonic()
        try:
            stamp_ns = raw_stamp_ns(cdr)
        except (struct.error, IndexError):
            self._reject("joint_states_malformed", "joint state too short to hold a header")
            return
        if self._next_stamp_ns is not None and stamp_ns < self._next_stamp_ns - self._tolerance_ns:
            return  # not due on the 50 Hz grid: the 400 Hz stream is read 1 in 8
        msg = self._deserialize(cdr, JointState, "joint_states")
        if msg is None:
            return
        try:
            self._order.read(msg, "position", self._q)
            self._order.read(msg, "velocity", self._dq)
            self._order.read(msg, "effort", self._tau)
        except JointMessageError as e:
            self._reject(f"joint_states_{e.reason}", str(e))
            return
        if not self.loop.update_joints(self._q, self._dq, self._tau, now):  # counted as joints_nan
            self.get_logger().warning("dropped input: non-finite joint state", throttle_duration_sec=2.0)
            return
        self._read_imu_odom()
        self._next_stamp_ns = stamp_ns + self._period_ns
        self._tick(now, msg.header.stamp)

    def _read_imu_odom(self) -> None:
        loop = self.loop
        imu = self._deserialize(self._imu, Imu, "imu") if self._imu is not None else None
        self._imu = None
        if imu is not None:
            o, w = imu.orientation, imu.angular_velocity
            self._quat[:] = (o.w, o.x, o.y, o.z)
            self._vec[:] = (w.x, w.y, w.z)
            if np.isfinite(self._quat).all() and abs(np.dot(self._quat, self._quat) - 1.0) < 1e-2:
                loop.update_imu(projected_gravity(self._quat), self._vec, self._imu_t)
            else:
                self._reject("imu_invalid", "IMU orientation is not a finite unit quaternion")
        odom = self._deserialize(self._odom, Odometry, "odom") if self._odom is not None else None
        self._odom = None
        if odom is not None:
            v = odom.twist.twist.linear
            self._vec[:] = (v.x, v.y, v.z)
            if not loop.update_odom(self._vec, self._odom_t):
                self._reject("odom_nan", "non-finite odometry twist")

    def _deserialize(self, cdr: bytes, msg_type: type, what: str):
        """The message in `cdr`, or None (counted) when rclpy cannot convert it: skip, never crash."""
        try:
            return deserialize_message(cdr, msg_type)
        except (TypeError, RuntimeError, ValueError) as e:
            self._reject(f"{what}_undecodable", f"{what} could not be deserialized ({e})")
            return None

    def _reject(self, reason: str, text: str) -> None:
        self.loop.rejected[reason] = self.loop.rejected.get(reason, 0) + 1
        self.get_logger().warning(f"dropped input: {text}", throttle_duration_sec=2.0)

    def _on_backup_timer(self) -> None:
        now = time.monotonic()
        if now - self._last_tick > 1.5 * self.period_s:
            self._read_imu_odom()
            self._tick(now, None)

    # -- the tick -------------------------------------------------------------------------------------------
    def _tick(self, now: float, stamp) -> None:
        start = time.perf_counter()
        mode_before = self.loop.mode
        targets = self.loop.tick(now)
        self._last_tick = now
        if targets is None:
            return
        self._targets_view[:] = targets
        self.msg.header.stamp = stamp if stamp is not None else self.get_clock().now().to_msg()
        self.pub.publish(self.msg)
        if self.loop.mode is Mode.POLICY:
            self._obs_view[:] = self.loop.observation[0]
            self._act_view[:] = self.loop.last_raw_action
            self.pub_obs.publish(self.msg_obs)
            self.pub_act.publish(self.msg_act)
        elapsed = time.perf_counter() - start
        self.ticks += 1
        self.tick_s_sum += elapsed
        self.tick_s_max = max(self.tick_s_max, elapsed)
        mode = self.loop.mode.value
        self._modes[mode] = self._modes.get(mode, 0) + 1
        if self.loop.mode is not mode_before:
            text = f"mode {mode_before.value} -> {mode}"
            if self.loop.mode in (Mode.WATCHDOG, Mode.ESTOP):  # rclpy: one severity per call site
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)

    def _publish_diagnostics(self) -> None:
        loop = self.loop
        values = {
            "mode": loop.mode.value,
            "ticks": self.ticks,
            "tick_ms_mean": f"{1e3 * self.tick_s_sum / max(self.ticks, 1):.3f}",
            "tick_ms_max": f"{1e3 * self.tick_s_max:.3f}",
            "command": " ".join(f"{c:.3f}" for c in loop.command),
            "rate_clamped": loop.safety.clamped_rate,
            "limit_clamped": loop.safety.clamped_limit,
            **{f"ticks_{k}": v for k, v in sorted(self._modes.items())},
            **{f"rejected_{k}": v for k, v in sorted(loop.rejected.items())},
        }
        status = DiagnosticStatus(name=f"{self.get_name()}: control loop", hardware_id=str(self.policy_file))
        bad = loop.mode in (Mode.WATCHDOG, Mode.ESTOP)
        status.level = DiagnosticStatus.WARN if bad else DiagnosticStatus.OK
        status.message = {
            Mode.WATCHDOG: "robot state stale: holding posture",
            Mode.ESTOP: "e-stop engaged: holding posture",
            Mode.WAITING: "waiting for the robot state",
            Mode.SOFT_START: "soft start to the standing pose",
            Mode.POLICY: "policy in control",
        }[loop.mode]
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args: list[str] | None = None) -> None:
    sys.setswitchinterval(0.0005)
    spin_node(PolicyNode, args)


if __name__ == "__main__":
    main()
