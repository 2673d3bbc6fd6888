"""`policy`: the 50 Hz control loop of ANYmal D around an ONNX policy (`rwm.control.policy_loop`).

A control thread of the node's own (SCHED_FIFO with `realtime_priority`) runs the loop. It sleeps on
/anymal/joint_states alone: when a joint state is due on the 50 Hz grid (by its stamp), the loop runs
at once and the command carries that state's stamp, so latency is one inference, not a timer phase.
IMU and odometry are taken at that moment, the newest sample of each (at 400 Hz at most 2.5 ms old);
they never wake anything. When joint states stop for 1.5 periods the thread ticks anyway, so that the
watchdog takes over. The 400 Hz streams stay out of the rclpy executor (`PolledSubscriptions`), which
serves /cmd_vel and /anymal/estop; the control thread also publishes the 1 Hz diagnostics, after a
tick, so that no executor timer holds the GIL inside the loop. Inputs are read by joint name; NaN or
malformed messages are counted and dropped, never passed on. Only the messages the loop uses (1 joint
state in 8, one IMU and one odometry sample per tick) are deserialized. Automatic garbage collection
is replaced by collections after each command (`SlackCollector`).

Publishes /anymal/joint_command, /diagnostics (1 Hz) and, for the data logger, the policy's
observation and raw action (/rwm/policy/observation, /rwm/policy/action).
"""

from __future__ import annotations

import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float32MultiArray, String

from rwm.control.pacing import StatePacer
from rwm.control.policy_loop import Mode, PolicyLoop
from rwm.control.safety import SafetyConfig
from rwm.export.runtime import OnnxPolicy
from rwm.robot import contract as C
from rwm.robot.kinematics import AnymalKinematics
from rwm_ros.conversions import (
    bind_array,
    diagnostic_array,
    make_joint_state,
    raw_stamp_ns,
    set_stamp_ns,
)
from rwm_ros.model_files import check_model_robot, inside_directory, resolve_model
from rwm_ros.node_base import ReaderGate, WorkerThread, declare, declare_config, print_published
from rwm_ros.polled_subscriptions import PolledSubscriptions
from rwm_ros.realtime import ArrivalWindow, SlackCollector, set_realtime_priority, timing_summary
from rwm_ros.robot_state import RobotStateReader
from rwm_ros.spin import spin_node
from rwm_ros.topics import (
    FLAG_QOS,
    STREAM_WRITER_QOS,
    TOPIC_ACTION,
    TOPIC_OBSERVATION,
    TOPIC_POLICY_RELOAD,
    TOPIC_WM_ANOMALY,
    reader_qos,
    subscribe_any_writer,
)


class PolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("policy", **kwargs)

        policy_path = declare(self, "policy", "anymal_d_ppo.onnx", "ONNX policy: a path or a name in models/")
        robot = declare(
            self, "robot", "anymal_d", "robot description for the joint limits (anymal_d|anymal_c)"
        )
        urdf = declare(self, "urdf_path", "", "explicit URDF (empty: search as CONTRACT.md says)")
        rate_hz = declare(
            self, "rate_hz", 1.0 / C.POLICY_DT, "control rate, Hz (the policy's training rate)", (1.0, 400.0)
        )
        safety = declare_config(self, SafetyConfig)
        priority = declare(
            self, "realtime_priority", 0, "SCHED_FIFO priority of every thread (1-99; 0: normal)", (0, 99)
        )
        self.period_s = 1.0 / rate_hz
        self.policy_file = resolve_model(policy_path)
        self.robot = robot
        self.versions_dir = Path(
            declare(self, "versions_dir", "policy_versions", "reloads are accepted only from this directory")
        )
        policy = OnnxPolicy(self.policy_file)
        check_model_robot(self.policy_file, robot, policy.metadata)
        kin = AnymalKinematics(robot, urdf or None)
        self.loop = PolicyLoop(
            policy,
            policy.obs_dim,
            kin.joint_lower,
            kin.joint_upper,
            kin.standing_targets(),
            safety,
            self.period_s,
        )

        self.reader = RobotStateReader(self.get_logger(), self.loop.rejected)
        self.pacer = StatePacer(self.period_s)
        self._last_tick = self._previous_tick = -np.inf
        self.ticks = 0
        self.published_commands = self.published_policy_ticks = 0
        """Joint commands published; ticks whose observation and action were published (policy mode)."""
        self.policy_ticks_before_match = 0
        """Of those ticks, the ones before the observations and actions both had a matched reader (a
        logger cannot have them: DDS had not yet connected it); counted only until then, at two
        matched-count queries per tick (1.5 us each, no allocation)."""
        self._policy_topics_matched = False
        self.tick_s_max = 0.0
        self.tick_s_sum = 0.0
        self._modes: dict[str, int] = {}

        self.msg, self._targets_view, _, _ = make_joint_state()
        self.msg.velocity, self.msg.effort = [], []
        self.msg_obs = Float32MultiArray()
        self._obs_view = bind_array(self.msg_obs, "data", policy.obs_dim, "f")
        self.msg_act = Float32MultiArray()
        self._act_view = bind_array(self.msg_act, "data", C.ACTION_DIM, "f")

        self.pub = self.create_publisher(JointState, C.TOPIC_JOINT_COMMAND, STREAM_WRITER_QOS)
        self.pub_obs = self.create_publisher(Float32MultiArray, TOPIC_OBSERVATION, STREAM_WRITER_QOS)
        self.pub_act = self.create_publisher(Float32MultiArray, TOPIC_ACTION, STREAM_WRITER_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.inputs = PolledSubscriptions(self)
        self.sub_joints = self.inputs.subscribe(JointState, C.TOPIC_JOINT_STATES, reader_qos(10), wakes=True)
        latest = reader_qos(1)  # one take gets the newest
        self.sub_imu = self.inputs.subscribe(Imu, C.TOPIC_IMU, latest, wakes=False)
        self.sub_odom = self.inputs.subscribe(Odometry, C.TOPIC_ODOM, latest, wakes=False)
        subscribe_any_writer(self, Twist, C.TOPIC_CMD_VEL, self._on_cmd_vel)
        subscribe_any_writer(self, Bool, C.TOPIC_ESTOP, self._on_estop)
        self.create_subscription(String, TOPIC_POLICY_RELOAD, self._on_reload, 10)
        self.create_subscription(Bool, TOPIC_WM_ANOMALY, self._on_anomaly, FLAG_QOS)
        self.anomaly = False
        """The world-model monitor's flag (a reason to roll a swapped policy back)."""
        self.reloads = {"accepted": 0, "rejected": 0, "rolled_back": 0}
        self._previous_file = self.policy_file
        self._lock = threading.Lock()  # one tick at a time: the control thread's or an e-stop's
        self.scheduling = set_realtime_priority(priority)
        """How the process is scheduled (reported in the diagnostics)."""
        self._gc = SlackCollector(young_every=1, full_every=round(600 * rate_hz))
        self._next_diagnostics = time.monotonic() + 1.0
        self._wall_stamps = not self.get_parameter("use_sim_time").value  # latency needs wall stamps
        self.tick_times = ArrivalWindow(capacity=round(60 * rate_hz))
        """The last minute of state-driven ticks: the state's stamp, when the tick began, when its
        command was out (period jitter of the loop, and stamp-to-command latency)."""
        self.joint_receptions = ArrivalWindow(capacity=64)
        """The last joint states taken (due or not): stamp, when the middleware received them (wall) and
        when the loop took them, so that a watchdog trip says whether the stream stopped arriving."""
        gated = {C.TOPIC_JOINT_COMMAND: self.pub, TOPIC_OBSERVATION: self.pub_obs, TOPIC_ACTION: self.pub_act}
        self.start_gate = ReaderGate(self, gated)
        """With `await_reader` (the launch file's data logger), nothing is commanded before the logger
        reads it: DDS discovery on a loaded machine once took 1.8 s to match the logger with this node,
        and the first 91 commands were not recorded (ten-minute soak, 12-03 18:31)."""
        self.control = WorkerThread(self, "policy_control", self._control_loop)
        self.workers = [self.control]
        self.control.start()  # inherits the schedule
        self.get_logger().info(
            f"policy {self.policy_file} at {rate_hz:.0f} Hz, {self.scheduling}; waiting for the robot"
        )

    # -- the control thread -----------------------------------------------------------------------------
    def _control_loop(self, stop: threading.Event) -> None:
        """Joint states pace the loop (`StatePacer`); without them, it ticks anyway so that the watchdog
        acts. A crash ends the node (`WorkerThread`)."""
        self.start_gate.wait(stop)
        while self.inputs.take(self.sub_joints) is not None:
            pass  # what came while it waited is old: the loop starts from the next state
        while not stop.is_set():
            self.inputs.wait(self.pacer.wait_s(time.monotonic(), self._last_tick))
            if stop.is_set():
                return
            last = self._last_tick
            while (taken := self.inputs.take_received(self.sub_joints)) is not None:
                self._on_joint_states(*taken)
            now = time.monotonic()
            if self.pacer.backup_due(now, self._last_tick):  # no state accepted (none, or all rejected)
                with self._lock:
                    self._read_imu_odom(now)
                    self._tick(now, None)
            if self._last_tick != last:  # the command is out: collect and report in the slack
                self._gc.tick()
                self._gc.collect()
                if now >= self._next_diagnostics:  # here, not in an executor timer holding the GIL
                    self._next_diagnostics = now + 1.0
                    self._publish_diagnostics()

    def destroy_node(self) -> None:
        """Stop the control thread before the subscriptions and publishers go away."""
        if self.control.stop():
            self.inputs.close()
        self._gc.close()
        print_published(
            self,
            {
                C.TOPIC_JOINT_COMMAND: self.published_commands,
                TOPIC_OBSERVATION: self.published_policy_ticks,
                TOPIC_ACTION: self.published_policy_ticks,
            },
            {TOPIC_OBSERVATION: self.policy_ticks_before_match, TOPIC_ACTION: self.policy_ticks_before_match},
        )
        super().destroy_node()

    # -- inputs -------------------------------------------------------------------------------------------
    def _on_cmd_vel(self, msg: Twist) -> None:
        with self._lock:
            ok = self.loop.set_command(msg.linear.x, msg.linear.y, msg.angular.z)
        if not ok:
            self.get_logger().warning("non-finite /cmd_vel dropped", throttle_duration_sec=2.0)

    def _on_estop(self, msg: Bool) -> None:
        if msg.data != self.loop.estop:
            self.get_logger().warning(f"e-stop {'ENGAGED' if msg.data else 'released'}")
        with self._lock:
            self.loop.set_estop(bool(msg.data))
            if msg.data:
                self._tick(time.monotonic(), None)  # hold now, not at the next state

    def _on_anomaly(self, msg: Bool) -> None:
        self.anomaly = bool(msg.data)

    def _on_reload(self, msg: String) -> None:
        threading.Thread(target=self._reload, args=(msg.data,), name="policy_reload", daemon=True).start()

    def _reload(self, path: str) -> None:
        """Load and check a new version off the control thread; swap it in at a tick boundary."""
        try:
            file = inside_directory(path, self.versions_dir)
            policy = OnnxPolicy(file)
            check_model_robot(file, self.robot, policy.metadata)
            width = self.loop.observation.shape[1]
            if policy.obs_dim != width:
                raise ValueError(f"observation width {policy.obs_dim}, the running policy's is {width}")
            if not np.isfinite(policy(np.zeros((2, policy.obs_dim), np.float32))).all():
                raise ValueError("non-finite actions on a zero observation")
        except Exception as e:  # noqa: BLE001 - any unusable file: the current policy stays
            self.reloads["rejected"] += 1
            self.get_logger().error(f"policy reload of {path} rejected ({type(e).__name__}: {e})")
            return
        with self._lock:
            self.loop.swap_policy(policy, time.monotonic())
            self._previous_file, self.policy_file = self.policy_file, file
            self.reloads["accepted"] += 1
        self.get_logger().info(f"policy swapped in: {file} (the previous one stays ready for a rollback)")

    def _check_rollback(self, now: float) -> None:
        """A fall, a watchdog hold or an anomaly soon after a swap brings the previous policy back."""
        reason = self.loop.rollback_reason(now, self.anomaly)
        if reason is not None and self.loop.rollback():
            self.reloads["rolled_back"] += 1
            self.get_logger().warning(f"rolled back to {self._previous_file} after {reason}")
            self.policy_file = self._previous_file

    def _on_joint_states(self, cdr: bytes, received_ns: int) -> None:
        now = time.monotonic()
        try:
            stamp_ns = raw_stamp_ns(cdr)
        except (struct.error, IndexError):
            self.reader.reject("joint_states_malformed", "joint state too short to hold a header")
            return
        self.joint_receptions.add(stamp_ns, now, received_ns * 1e-9)
        if not self.pacer.due(stamp_ns):
            return  # not due on the 50 Hz grid: the 400 Hz stream is read 1 in 8
        if not self.reader.joints(cdr):
            return
        r = self.reader
        with self._lock:
            self.loop.update_joints(r.joint_pos, r.joint_vel, r.joint_torque, now)
            self._read_imu_odom(now)
            self.pacer.used(stamp_ns)
            self._tick(now, stamp_ns)
            self._check_rollback(now)

    def _read_imu_odom(self, now: float) -> None:
        """The newest IMU and odometry samples, if any arrived since the last tick (else they go stale)."""
        r = self.reader
        imu_cdr = self.inputs.take_latest(self.sub_imu)
        if imu_cdr is not None and r.imu(imu_cdr):
            self.loop.update_imu(r.gravity, r.ang_vel, now)
        odom_cdr = self.inputs.take_latest(self.sub_odom)
        if odom_cdr is not None and r.odom(odom_cdr):
            self.loop.update_odom(r.lin_vel, now)

    # -- the tick -------------------------------------------------------------------------------------------
    def _tick(self, now: float, stamp_ns: int | None) -> None:
        """One step of the loop; its command carries the stamp of the state it answers (ns), or now."""
        start = time.perf_counter()
        mode_before = self.loop.mode
        targets = self.loop.tick(now)
        self._previous_tick, self._last_tick = self._last_tick, now
        if targets is None:
            return
        self._targets_view[:] = targets
        set_stamp_ns(
            self.msg.header.stamp, self.get_clock().now().nanoseconds if stamp_ns is None else stamp_ns
        )
        self.pub.publish(self.msg)
        self.published_commands += 1
        if stamp_ns is not None and self._wall_stamps:
            self.tick_times.add(stamp_ns, now, time.time())
        if self.loop.mode is Mode.POLICY:
            self._obs_view[:] = self.loop.observation[0]
            self._act_view[:] = self.loop.last_raw_action
            self.pub_obs.publish(self.msg_obs)
            self.pub_act.publish(self.msg_act)
            self.published_policy_ticks += 1
            if not self._policy_topics_matched:
                self._policy_topics_matched = (
                    self.pub_obs.get_subscription_count() > 0 and self.pub_act.get_subscription_count() > 0
                )
                self.policy_ticks_before_match += not self._policy_topics_matched
        elapsed = time.perf_counter() - start
        self.ticks += 1
        self.tick_s_sum += elapsed
        self.tick_s_max = max(self.tick_s_max, elapsed)
        mode = self.loop.mode.value
        self._modes[mode] = self._modes.get(mode, 0) + 1
        if self.loop.mode is not mode_before:
            text = f"mode {mode_before.value} -> {mode}"
            if self.loop.mode is Mode.WATCHDOG:
                ages = ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in self.loop.input_ages(now).items())
                gap_ms = 1e3 * (now - self._previous_tick)
                text += f" (last accepted: {ages} ago; this tick {gap_ms:.0f} ms after the one before"
                text += f"{self._receptions()})"
            if self.loop.mode in (Mode.WATCHDOG, Mode.ESTOP):  # rclpy: one severity per call site
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)

    def _receptions(self) -> str:
        """What the joint-state stream did before a watchdog trip (a rare event: it may allocate)."""
        taken, received, stamps = self.joint_receptions.arrays()
        if len(stamps) < 2:
            return "; no joint state taken yet"
        ms = lambda s: f"{1e3 * s:.1f}"  # noqa: E731
        return (
            f"; the last joint state taken was received {ms(time.time() - received[-1])} ms ago, "
            f"stamped {ms(received[-1] - 1e-9 * stamps[-1])} ms before; over the last {len(stamps)} taken, "
            f"largest gap between stamps {ms(1e-9 * np.diff(stamps).max())} ms, between receptions "
            f"{ms(np.diff(received).max())} ms; reception to take varied by {ms(np.ptp(taken - received))} ms"
        )

    def _loop_timing(self) -> dict[str, str]:
        """Over the last minute: jitter of the loop's period (when state-driven ticks began) and the
        latency from a state's stamp to its command being published."""
        if self.tick_times.count < 10:
            return {}
        began, published, stamps = self.tick_times.arrays()
        t = timing_summary(began, stamps, published)
        return {
            "period_jitter_p99_ms": f"{t['arrival_jitter_p99_ms']:.3f}",
            **{f"state_to_command_{k}": f"{t[k]:.3f}" for k in ("latency_p50_ms", "latency_p99_ms")},
        }

    def _publish_diagnostics(self) -> None:
        loop = self.loop
        with self._lock:  # the executor thread counts rejections and changes modes too
            values = self._diagnostic_values()
            mode = loop.mode
        status = DiagnosticStatus(name=f"{self.get_name()}: control loop", hardware_id=str(self.policy_file))
        status.level = DiagnosticStatus.WARN if mode in (Mode.WATCHDOG, Mode.ESTOP) else DiagnosticStatus.OK
        status.message = {
            Mode.WATCHDOG: "robot state stale: holding posture",
            Mode.ESTOP: "e-stop engaged: holding posture",
            Mode.WAITING: "waiting for the robot state",
            Mode.SOFT_START: "soft start to the standing pose",
            Mode.POLICY: "policy in control",
            Mode.STAND: "zero command, robot still: holding its stance",
        }[mode]
        self.pub_diag.publish(diagnostic_array(status, values, self.get_clock().now().to_msg()))

    def _diagnostic_values(self) -> dict:
        loop = self.loop
        return {
            "mode": loop.mode.value,
            "policy_version": str(self.policy_file),
            **{f"reloads_{k}": v for k, v in self.reloads.items()},
            "ticks": self.ticks,
            "tick_ms_mean": f"{1e3 * self.tick_s_sum / max(self.ticks, 1):.3f}",
            "tick_ms_max": f"{1e3 * self.tick_s_max:.3f}",
            "command": " ".join(f"{c:.3f}" for c in loop.command),
            "scheduling": self.scheduling,
            **self._loop_timing(),
            "rate_clamped": loop.safety.clamped_rate,
            "limit_clamped": loop.safety.clamped_limit,
            **{f"ticks_{k}": v for k, v in sorted(self._modes.items())},
            **{f"rejected_{k}": v for k, v in sorted(loop.rejected.items())},
        }


def main(args: list[str] | None = None) -> None:
    sys.setswitchinterval(0.0005)
    spin_node(PolicyNode, args)


if __name__ == "__main__":
    main()
