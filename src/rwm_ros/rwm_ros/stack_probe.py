"""`stack_probe`: listens to the contract topics and reports what the running stack did.

Started by the launch file with `report:=true` (`make run`, the benches and the integration tests, so
that they all measure the same way): after `duration_s` it prints the report (one JSON line after
"[stack_probe] report: ") while the stack still runs, then exits, which shuts the stack down. It
reports: message rate over 1 s windows, stamp intervals, the real-time factor (simulated time
carried by the stamps over wall time), base height and distance travelled from odometry, velocity
tracking against /cmd_vel, the nodes' own diagnostics, and each node's CPU share and memory. The timing
statistics are `rwm_ros.realtime.timing_summary`, plain functions on arrays, testable without ROS.

The robot streams are read by a thread of the probe's own (`PolledSubscriptions`), not the executor:
a joint command is timed the moment it arrives instead of after the 400 Hz messages queued before
it, and measuring the stack costs the machine little.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float32MultiArray

from rwm.robot import contract as C
from rwm_ros.conversions import raw_stamp_ns
from rwm_ros.node_base import WorkerThread, declare
from rwm_ros.polled_subscriptions import PolledSubscriptions
from rwm_ros.realtime import ArrivalWindow, set_realtime_priority, timing_summary
from rwm_ros.robot_state import RobotStateReader
from rwm_ros.spin import spin_node

PROBE_WINDOW = 400 * 600
"""Arrivals kept per timed topic: 10 minutes at 400 Hz (figures cover the last 10 minutes)."""


class TrackingMeter:
    """Velocity tracking from odometry against the /cmd_vel in force, split into the first `settle_s`
    after each command change (transient) and the rest (steady)."""

    def __init__(self, settle_s: float = 1.0, capacity: int = round(600 / C.POLICY_DT)) -> None:
        self.settle_s = settle_s
        self.command: np.ndarray | None = None
        self._changed_at = 0.0
        self._ring = np.zeros((capacity, 8))
        """Rows (time, since the last change, commanded vx vy wz, measured vx vy wz): the last 10 min."""
        self._count = 0

    def set_command(self, cmd: np.ndarray, t: float) -> None:
        if self.command is None or not np.array_equal(cmd, self.command):
            self.command = np.array(cmd, dtype=np.float64)
            self._changed_at = t

    def add(self, t: float, lin_vel_xy: np.ndarray, yaw_rate: float) -> None:
        if self.command is not None:
            row = self._ring[self._count % len(self._ring)]
            row[0], row[1] = t, t - self._changed_at
            row[2:5] = self.command
            row[5:7] = lin_vel_xy
            row[7] = yaw_rate
            self._count += 1

    def _rows(self) -> np.ndarray:
        """The kept rows, oldest first."""
        n = len(self._ring)
        if self._count <= n:
            return self._ring[: self._count]
        return np.roll(self._ring, -(self._count % n), axis=0)

    def series(self) -> np.ndarray:
        """(n, 7) rows of time (s, monotonic), commanded vx, vy, yaw rate, measured vx, vy, yaw rate."""
        return self._rows()[:, [0, 2, 3, 4, 5, 6, 7]]

    def summary(self) -> dict:
        if not self._count:
            return {}
        rows = self._rows()
        r = np.column_stack([rows[:, 1], rows[:, 2:5] - rows[:, 5:8]])
        steady = r[:, 0] >= self.settle_s
        out = {"samples": len(r), "duration_s": round(len(r) * C.POLICY_DT, 2)}
        for name, mask in (("all", np.ones(len(r), bool)), ("steady", steady), ("transient", ~steady)):
            if mask.any():
                out[f"lin_vel_rmse_{name}"] = round(
                    float(np.sqrt((r[mask, 1] ** 2 + r[mask, 2] ** 2).mean())), 4
                )
                out[f"yaw_rate_rmse_{name}"] = round(float(np.sqrt((r[mask, 3] ** 2).mean())), 4)
        return out


class StackProbe(Node):
    """Subscribes to the robot's topics and summarizes them; `full=False` listens to joint_states only."""

    def __init__(self, full: bool = True, **kwargs) -> None:
        super().__init__("stack_probe", **kwargs)
        self._wall_stamps = not self.get_parameter("use_sim_time").value
        """Stamps are wall-clock ROS time, so latency is arrival minus stamp (not with use_sim_time)."""
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.joint_states = ArrivalWindow(capacity=PROBE_WINDOW)
        """Timing of /anymal/joint_states."""
        self.joint_commands = ArrivalWindow(capacity=PROBE_WINDOW)
        """Timing of /anymal/joint_command (its stamp is the stamp of the state it answers)."""
        self.tracking = TrackingMeter()
        """Odometry against /cmd_vel, at 50 Hz."""
        self._odom_count = 0
        self.counts = {k: [0, 0.0, 0.0] for k in ("imu", "odom", "contacts", "joint_command")}
        """Other topics: [messages, first arrival, last arrival] (each topic is discovered on its own)."""
        self.first_position: np.ndarray | None = None
        """Base position at the first odometry message."""
        self.position = np.zeros(3)
        """Latest base position."""
        self.path_length = 0.0
        """Horizontal distance travelled along the path, m."""
        self._crumb = np.zeros(2)
        self.height_range = [np.inf, -np.inf]
        """Lowest and highest base height seen, m."""
        self.foot_contacts = np.zeros(4)
        """Latest foot contact flags."""
        self.gravity_z = np.nan
        """Latest IMU specific force, z (9.81 when level and still)."""
        self.sim_diagnostics: dict[str, str] = {}
        """Latest key-values of the simulator's diagnostics."""
        self.policy_diagnostics: dict[str, str] = {}
        """Latest key-values of the policy node's diagnostics."""
        self.mode_changes: list[tuple[float, str]] = []
        """(monotonic time, mode) each time the policy node's diagnostics name a new mode."""
        self._imu: bytes | None = None
        self._contacts: bytes | None = None
        self.reader = RobotStateReader(self.get_logger())
        """Odometry is read by the same rule as in the policy and world-model nodes."""
        # The streams are taken raw: stamps are read from the bytes, and messages are deserialized
        # only where a figure needs their content (odometry at 50 Hz, the last IMU and contacts).
        self.inputs = PolledSubscriptions(self)
        sub = self.inputs.subscribe
        self._polled = [(sub(JointState, C.TOPIC_JOINT_STATES, qos, wakes=True), self._on_joints)]
        if full:  # the command first: it is timed on arrival
            self._polled.insert(
                0, (sub(JointState, C.TOPIC_JOINT_COMMAND, qos, wakes=True), self._on_command)
            )
            self._polled += [
                (sub(Odometry, C.TOPIC_ODOM, qos, wakes=False), self._on_odom),
                (sub(Imu, C.TOPIC_IMU, qos, wakes=False), self._on_imu),
                (sub(Float32MultiArray, C.TOPIC_CONTACTS, qos, wakes=False), self._on_contacts),
            ]
            self.create_subscription(Twist, C.TOPIC_CMD_VEL, self._on_cmd_vel, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.poller = WorkerThread(self, "stack_probe", self._poll)
        self.workers = [self.poller]
        self.poller.start()

    def _poll(self, stop: threading.Event) -> None:
        take = self.inputs.take
        while not stop.is_set():
            self.inputs.wait(0.1)
            for sub, handle in self._polled:
                while (cdr := take(sub)) is not None:
                    handle(cdr)

    def destroy_node(self) -> None:
        """Stop the polling thread before the subscriptions go away."""
        if self.poller.stop(1.0):
            self.inputs.close()
        super().destroy_node()

    def _count(self, topic: str) -> None:
        c = self.counts[topic]
        now = time.monotonic()
        if c[0] == 0:
            c[1] = now
        c[0] += 1
        c[2] = now

    def _on_joints(self, cdr: bytes) -> None:
        self.joint_states.add(raw_stamp_ns(cdr), time.monotonic(), time.time())

    def _on_odom(self, cdr: bytes) -> None:
        self._count("odom")
        self._odom_count += 1
        if self._odom_count % C.DECIMATION:
            return  # 400 Hz odometry read at the 50 Hz policy rate
        if not self.reader.odom(cdr):
            return
        x, y, z = self.reader.position.tolist()
        if self.first_position is None:
            self.first_position = np.array([x, y, z])
            self._crumb = self.first_position[:2].copy()
        step = float(np.hypot(x - self._crumb[0], y - self._crumb[1]))
        if step > 0.01:  # breadcrumbs 1 cm apart: a standing robot's sway does not add up to a path
            self.path_length += step
            self._crumb[:] = (x, y)
        self.position[:] = (x, y, z)
        r = self.reader
        self.tracking.add(time.monotonic(), r.lin_vel[:2].copy(), float(r.odom_ang_vel[2]))
        self.height_range[0] = min(self.height_range[0], z)
        self.height_range[1] = max(self.height_range[1], z)

    def _on_imu(self, cdr: bytes) -> None:
        self._count("imu")
        self._imu = cdr

    def _on_contacts(self, cdr: bytes) -> None:
        self._count("contacts")
        self._contacts = cdr

    def _on_command(self, cdr: bytes) -> None:
        self._count("joint_command")
        self.joint_commands.add(raw_stamp_ns(cdr), time.monotonic(), time.time())

    def _on_cmd_vel(self, msg: Twist) -> None:
        self.tracking.set_command(np.array([msg.linear.x, msg.linear.y, msg.angular.z]), time.monotonic())

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "real-time loop" in status.name:
                self.sim_diagnostics = {kv.key: kv.value for kv in status.values}
            elif "control loop" in status.name:
                self.policy_diagnostics = {kv.key: kv.value for kv in status.values}
                mode = self.policy_diagnostics.get("mode")
                if mode is not None and (not self.mode_changes or self.mode_changes[-1][1] != mode):
                    self.mode_changes.append((time.monotonic(), mode))

    def summary(self) -> dict:
        """Figures of the stack so far, JSON-ready."""
        arrival, wall, stamps = self.joint_states.arrays()
        timing = timing_summary(arrival, stamps, wall if self._wall_stamps else None)
        out: dict = {"joint_states": {k: round(v, 4) for k, v in timing.items()}}
        out["rates_hz"] = {
            k: round((n - 1) / (last - first), 1) if n > 1 and last > first else 0.0
            for k, (n, first, last) in self.counts.items()
        }
        if self._imu is not None:
            self.gravity_z = deserialize_message(self._imu, Imu).linear_acceleration.z
        if self._contacts is not None:
            self.foot_contacts[:] = deserialize_message(self._contacts, Float32MultiArray).data[
                C.FOOT_CONTACTS
            ]
        if self.first_position is not None:
            moved = self.position[:2] - self.first_position[:2]
            out["base"] = {
                "height_m": round(float(self.position[2]), 4),
                "height_min_m": round(float(self.height_range[0]), 4),
                "height_max_m": round(float(self.height_range[1]), 4),
                "displacement_m": round(float(np.hypot(*moved)), 4),
                "path_length_m": round(self.path_length, 4),
                "foot_contacts": self.foot_contacts.astype(int).tolist(),
                "imu_acc_z": round(float(self.gravity_z), 3),
            }
        if self.joint_commands.count > 1:
            arrival, wall, stamps = self.joint_commands.arrays()
            timing = timing_summary(arrival, stamps, wall if self._wall_stamps else None)
            keys = ("rate_hz", "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "arrival_jitter_p99_ms")
            out["joint_command"] = {k: round(timing[k], 4) for k in keys if k in timing}
        tracking = self.tracking.summary()
        if tracking:
            out["tracking"] = tracking
        if self.sim_diagnostics:
            out["sim"] = self.sim_diagnostics
        if self.policy_diagnostics:
            out["policy"] = self.policy_diagnostics
        if self.poller.failure is not None:
            out["probe_error"] = f"{type(self.poller.failure).__name__}: {self.poller.failure}"
        return out


class SiblingUsage:
    """CPU share and memory of the other nodes of the launch (the probe's siblings), by node name."""

    def __init__(self) -> None:
        self._procs: dict[str, psutil.Process] = {}
        self._start: dict[str, tuple[float, float]] = {}

    @staticmethod
    def _node_name(proc: psutil.Process) -> str:
        for word in proc.cmdline():
            if word.startswith("__node:="):
                return word.split(":=", 1)[1]
        return f"{proc.name()}-{proc.pid}"

    def start(self) -> None:
        """Take the baseline (once the stack is up)."""
        me = os.getpid()
        for proc in psutil.Process(os.getppid()).children():
            if proc.pid == me:
                continue
            try:
                name = self._node_name(proc)
                cpu = proc.cpu_times()
                self._start[name] = (time.monotonic(), cpu.user + cpu.system)
                self._procs[name] = proc
            except psutil.Error:
                continue

    def summary(self) -> dict:
        """{node: {cpu_percent_of_a_core, rss_mb}} since `start()`, for the nodes still running."""
        out = {}
        for name, proc in self._procs.items():
            try:
                cpu, rss = proc.cpu_times(), proc.memory_info().rss
            except psutil.Error:
                continue
            t0, c0 = self._start[name]
            out[name] = {
                "cpu_percent_of_a_core": round(
                    100.0 * (cpu.user + cpu.system - c0) / (time.monotonic() - t0), 1
                ),
                "rss_mb": round(rss / 2**20, 1),
            }
        return out


class ReportingProbe(StackProbe):
    """The probe as a node of the launch: reports after `duration_s` (or at shutdown) and ends the run."""

    def __init__(self) -> None:
        super().__init__()

        duration = declare(self, "duration_s", 0.0, "report and exit after this long, s (0: at shutdown)")
        priority = declare(
            self,
            "realtime_priority",
            0,
            "SCHED_FIFO priority (1-99; 0: normal): it stands in for the robot's receiver",
        )
        self.report_file = declare(
            self,
            "report_file",
            "",
            "also write the report here as JSON, with PNGs beside it: velocity tracking with the policy's "
            "modes, and the latency histogram (empty: print only)",
        )
        self.scheduling = set_realtime_priority(priority)
        self.usage = SiblingUsage()
        self._usage_timer = self.create_timer(min(2.0, duration / 2 or 2.0), self._start_usage)
        self.reported = False
        if duration > 0.0:
            self.create_timer(duration, self._finish)

    def _start_usage(self) -> None:
        self._usage_timer.cancel()
        self.usage.start()

    def report(self) -> None:
        """Print (and write) the figures once."""
        if self.reported:
            return
        self.reported = True
        out = self.summary()
        out["nodes"] = self.usage.summary()
        out["probe_scheduling"] = self.scheduling
        text = json.dumps(out)
        print(f"[stack_probe] report: {text}", flush=True)
        if self.report_file:
            path = Path(self.report_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(out, indent=1))
            tmp.replace(path)
            self._plot(path)

    def _plot(self, report: Path) -> None:
        """The run's PNGs beside its report."""
        from rwm.evaluation.plots import plot_latency, plot_velocity_tracking  # noqa: PLC0415

        series = self.tracking.series()
        if len(series):
            start = series[0, 0]
            modes = [(t - start, mode) for t, mode in self.mode_changes]
            plot_velocity_tracking(series[:, 0] - start, series[:, 1:4], series[:, 4:7], modes,
                                   report.with_name(f"{report.stem}_velocity.png"))  # fmt: skip
        if self.joint_commands.count > 1 and self._wall_stamps:
            _, wall, stamps = self.joint_commands.arrays()
            latency_ms = (wall - stamps.astype(np.float64) * 1e-9) * 1e3
            plot_latency(latency_ms, report.with_name(f"{report.stem}_latency.png"))

    def _finish(self) -> None:
        self.report()
        rclpy.try_shutdown(context=self.context)  # ends the spin; launch then stops the stack

    def destroy_node(self) -> None:
        self.report()  # stopped before its duration (Ctrl-C): the figures so far
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    spin_node(ReportingProbe, args)


if __name__ == "__main__":
    main()
