"""The simulated ANYmal as a ROS 2 driver: the robot side of the contract (shared/CONTRACT.md), in real time.

Physics, publishing and command intake run in one thread (SCHED_FIFO with `realtime_priority`) on an
absolute wall-clock grid (`RealTimeSchedule`), not in rclpy timers and callbacks: a 400 Hz timer
drifts and jitters with the executor's load, and a command handed over from the executor thread waits
for the GIL while the physics thread publishes. Between deadlines the thread sleeps on
/anymal/joint_command itself (`PolledSubscriptions`): a command is validated by joint name and timed
the moment it arrives, and the drive PD holds it until the next one, as on the robot. The same thread
publishes the 1 Hz diagnostics in the slack after a tick; the executor serves only the parameter
services, so that no second Python thread competes for the GIL inside the loop.

Every physics tick publishes joint_states, imu, odom and contacts with one shared stamp, the ROS
time the state stands for: its deadline on the wall-clock schedule (so stamps are 2.5 ms apart and
never ahead of the clock by more than 1 ms: the map from the schedule's monotonic clock to ROS time
is taken anew when the system clock steps by more, `WallClockMap`), or, with `publish_clock`, the
simulated time itself (then /clock is published and consumers run with use_sim_time). Messages are
built once and filled in place.
"""

from __future__ import annotations

import struct
import sys
import threading
import time

import mujoco
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float32MultiArray

from rwm.robot import contract as C
from rwm.sim.anymal_sim import AnymalSim
from rwm.sim.dynamics import SensorNoise
from rwm.sim.variants import variant_named
from rwm_ros.conversions import (
    JointMessageError,
    JointOrder,
    bind_array,
    diagnostic_array,
    joint_targets_from_command,
    make_joint_state,
    raw_stamp_ns,
    set_stamp_ns,
)
from rwm_ros.node_base import ReaderGate, WorkerThread, declare, print_published
from rwm_ros.polled_subscriptions import PolledSubscriptions
from rwm_ros.realtime import (
    ArrivalWindow,
    RealTimeSchedule,
    SlackCollector,
    WallClockMap,
    set_realtime_priority,
    timing_summary,
)
from rwm_ros.spin import spin_node
from rwm_ros.topics import STREAM_WRITER_QOS, reader_qos

_NS = 1_000_000_000
SLACK_S = 0.0015
"""The physics thread collects garbage and publishes its 1 Hz diagnostics after a tick only with at
least this long to spare (on the executor thread, diagnostics held the GIL for ~0.5 ms at random
moments of the physics loop)."""
MAX_LAG_S = 0.25
"""Backlog the physics thread still catches up (a burst of up to 100 ticks); beyond, it drops it."""


class CommandMailbox:
    """Latest accepted joint targets, handed to the physics thread (from any thread).

    The receiver validates and writes under a lock; the physics thread takes the targets at most once
    (a sequence number tells it whether they are new), so a command is never applied half-written.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets = np.zeros(C.NUM_JOINTS)
        self._seq = 0
        self._taken = 0
        self.accepted = 0
        """Commands accepted."""
        self.rejected: dict[str, int] = {}
        """Commands dropped, by JointMessageError.reason."""

    def put(self, targets: np.ndarray) -> None:
        with self._lock:
            self._targets[:] = targets
            self._seq += 1
            self.accepted += 1

    def reject(self, reason: str) -> int:
        """Count a dropped command; return how many were dropped for that reason."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return self.rejected[reason]

    def take(self, out: np.ndarray) -> bool:
        """Copy new targets into `out`; False when nothing arrived since the last take."""
        if self._seq == self._taken:  # cheap unlocked check on the 400 Hz path
            return False
        with self._lock:
            out[:] = self._targets
            self._taken = self._seq
        return True


class SimNode(Node):
    """`anymal_sim`: AnymalSim stepped in real time, speaking the contract topics."""

    def __init__(self, **kwargs) -> None:
        super().__init__("anymal_sim", **kwargs)
        p = self._declare_parameters()
        self.robot_name: str = p["robot"]
        self.variant = variant_named(p["variant"], p["variants_file"] or None)
        """How this robot differs from its model (`rwm.sim.dynamics`), e.g. a payload or weak motors."""
        self.sim = AnymalSim(robot_name=self.robot_name, urdf=p["urdf_path"] or None, variant=self.variant)
        self._noise = SensorNoise(self.variant.obs_noise, np.random.default_rng(p["noise_seed"]))
        self.initial_height: float | None = p["initial_height"] if p["initial_height"] > 0.0 else None
        self.reset_on_fall: bool = p["reset_on_fall"]
        self.publish_clock: bool = p["publish_clock"]
        self.decimation = self._decimation(p["rate_hz"])
        """Physics steps per published tick (1 at 400 Hz)."""
        self.ticks_per_clock = (
            self._ticks_per_clock(p["rate_hz"], p["clock_rate_hz"]) if self.publish_clock else 1
        )
        """Published ticks per /clock message."""
        self._ticks_to_clock = 0
        self.tick_sim_ns = round(self.decimation * C.PHYSICS_DT * _NS)
        """Simulated time per tick, ns."""
        rtf = p["real_time_factor"]
        if not rtf > 0.0:
            raise ValueError(f"real_time_factor must be > 0, got {rtf}")
        self.schedule = RealTimeSchedule(self.decimation * C.PHYSICS_DT / rtf, max_lag_s=MAX_LAG_S)
        self.sim.reset(height=self.initial_height)
        self.resets = 0
        """Resets after falls."""
        self.publish_max_s = 0.0
        """The longest a tick's four publish() calls took (the run so far)."""
        self.wall_clock = WallClockMap()
        """The schedule's monotonic deadlines as ROS time, taken anew when the system clock steps."""

        self.commands = CommandMailbox()
        self.command_arrivals = ArrivalWindow(capacity=round(60 / C.POLICY_DT))
        """The last minute of joint commands: the stamp of the state each answers, and its arrival."""
        self._order = JointOrder()
        self._targets = np.empty(C.NUM_JOINTS)
        self._cmd_buf = np.empty(C.NUM_JOINTS)
        self._make_messages()
        qos = STREAM_WRITER_QOS
        self.pub_joints = self.create_publisher(JointState, C.TOPIC_JOINT_STATES, qos)
        self.pub_imu = self.create_publisher(Imu, C.TOPIC_IMU, qos)
        self.pub_odom = self.create_publisher(Odometry, C.TOPIC_ODOM, qos)
        self.pub_contacts = self.create_publisher(Float32MultiArray, C.TOPIC_CONTACTS, qos)
        self.pub_clock = self.create_publisher(Clock, "/clock", qos) if self.publish_clock else None
        self._robot_streams = (
            (C.TOPIC_JOINT_STATES, self.pub_joints, self.msg_joints),
            (C.TOPIC_IMU, self.pub_imu, self.msg_imu),
            (C.TOPIC_ODOM, self.pub_odom, self.msg_odom),
            (C.TOPIC_CONTACTS, self.pub_contacts, self.msg_contacts),
        )
        self.published = dict.fromkeys((topic for topic, _, _ in self._robot_streams), 0)
        """Messages each robot topic's publish() took, counted one by one (a tick cut short by
        shutdown between two of them is counted as far as it got)."""
        self.start_gate = ReaderGate(self, {topic: pub for topic, pub, _ in self._robot_streams})
        """The robot is held (no physics, nothing published) until the data logger can hear it all."""
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.inputs = PolledSubscriptions(self)
        self.sub_command = self.inputs.subscribe(
            JointState, C.TOPIC_JOINT_COMMAND, reader_qos(10), wakes=True
        )

        self.scheduling = set_realtime_priority(p["realtime_priority"])
        """How the process is scheduled (reported in the diagnostics)."""
        self._gc = SlackCollector(young_every=C.DECIMATION, full_every=600 * 400)
        self.physics = WorkerThread(self, "anymal_sim_physics", self._run)
        self.workers = [self.physics]
        self.physics.start()  # inherits the schedule
        self.get_logger().info(
            f"{self.robot_name} from {self.sim.robot.urdf}: {1.0 / (self.decimation * C.PHYSICS_DT):.0f} Hz, "
            f"real-time factor {rtf}, clock {'published' if self.publish_clock else 'wall'}, "
            f"{self.scheduling}"
        )

    # --- setup ---------------------------------------------------------------------------------------
    def _declare_parameters(self) -> dict:
        return {
            "robot": declare(self, "robot", "anymal_d", "anymal_d (default) or anymal_c"),
            "urdf_path": declare(
                self, "urdf_path", "", "URDF file or description folder; empty: search (CONTRACT.md)"
            ),
            "rate_hz": declare(
                self, "rate_hz", 1.0 / C.PHYSICS_DT, "publish rate, Hz; 400 divided by a whole number"
            ),
            "publish_clock": declare(
                self, "publish_clock", False, "publish /clock and stamp with simulated time"
            ),
            "clock_rate_hz": declare(
                self,
                "clock_rate_hz",
                100.0,
                "/clock messages per second with publish_clock; rate_hz divided by a whole number. Every "
                "node on simulated time handles each in its rclpy executor: at 400 Hz that took the "
                "policy node from 29 to 76 % of a core, and the stack overloaded 2 cores",
            ),
            "reset_on_fall": declare(
                self,
                "reset_on_fall",
                True,
                "reset to the standing pose when the robot falls: base on the ground, tilted beyond "
                "60 degrees, or base below half its standing height (rwm.sim.state.FallRule)",
            ),
            "initial_height": declare(
                self, "initial_height", 0.0, "base height at reset, m; 0: the robot's default"
            ),
            "real_time_factor": declare(
                self, "real_time_factor", 1.0, "simulated seconds per wall-clock second"
            ),
            "variant": declare(
                self,
                "variant",
                "nominal",
                "robot variant: a name in config/robot_variants.yaml (payload, ...)",
            ),
            "variants_file": declare(self, "variants_file", "", "named variants (empty: the installed file)"),
            "noise_seed": declare(self, "noise_seed", 0, "seed of the variant's sensor noise"),
            "realtime_priority": declare(
                self,
                "realtime_priority",
                0,
                "SCHED_FIFO priority of every thread (1-99; 0: normal scheduling)",
            ),
        }

    @staticmethod
    def _decimation(rate_hz: float) -> int:
        physics_hz = 1.0 / C.PHYSICS_DT
        n = round(physics_hz / rate_hz) if rate_hz > 0 else 0
        if n < 1 or abs(physics_hz / n - rate_hz) > 1e-6 * physics_hz:
            raise ValueError(
                f"rate_hz must be {physics_hz:.0f} divided by a whole number (400, 200, 100...), "
                f"got {rate_hz}"
            )
        return n

    @staticmethod
    def _ticks_per_clock(rate_hz: float, clock_rate_hz: float) -> int:
        n = round(rate_hz / clock_rate_hz) if clock_rate_hz > 0 else 0
        if n < 1 or abs(rate_hz / n - clock_rate_hz) > 1e-6 * rate_hz:
            raise ValueError(
                f"clock_rate_hz must be rate_hz ({rate_hz:g}) divided by a whole number, got {clock_rate_hz}"
            )
        return n

    def _make_messages(self) -> None:
        """Build the four messages once; the tick only writes numbers into them."""
        self._stamp = self.get_clock().now().to_msg()  # one stamp object shared by all headers
        self.msg_joints, self._q, self._dq, self._tau = make_joint_state()
        self.msg_imu = Imu()
        self.msg_odom = Odometry()
        self.msg_odom.header.frame_id = C.ODOM_FRAME
        self.msg_odom.child_frame_id = C.BASE_FRAME
        self.msg_imu.header.frame_id = C.BASE_FRAME
        self.msg_contacts = Float32MultiArray()
        self._contacts = bind_array(self.msg_contacts, "data", C.CONTACT_DIM, "f")
        for m in (self.msg_joints, self.msg_imu, self.msg_odom):
            m.header.stamp = self._stamp  # the setter keeps the reference: one write stamps all
        self.msg_clock = Clock()
        self.msg_clock.clock = self._stamp
        self._quat_inv = np.empty(4)
        self._lin_vel = np.empty(3)
        self._ang_vel = np.empty(3)

    # --- commands and diagnostics (physics thread) ----------------------------------------------------
    def _receive_commands(self, timeout_s: float) -> None:
        """Sleep until the next deadline or a joint command, and take every command that arrived."""
        self.inputs.wait(timeout_s)
        while (cdr := self.inputs.take(self.sub_command)) is not None:
            self._on_command(cdr)

    def _on_command(self, cdr: bytes) -> None:
        try:
            stamp_ns = raw_stamp_ns(cdr)
            msg = deserialize_message(cdr, JointState)
        except (struct.error, IndexError, TypeError, RuntimeError, ValueError) as e:
            n = self.commands.reject("undecodable")
            self.get_logger().warning(
                f"dropped joint command ({n} undecodable so far): {e}", throttle_duration_sec=2.0
            )
            return
        if not self.publish_clock:  # stamps are wall-clock ROS time: the state's stamp to here
            self.command_arrivals.add(stamp_ns, time.monotonic(), time.time())
        try:
            self.commands.put(joint_targets_from_command(msg, self._order, self._cmd_buf))
        except JointMessageError as e:
            n = self.commands.reject(e.reason)
            self.get_logger().warning(
                f"dropped joint command ({n} '{e.reason}' so far): {e}", throttle_duration_sec=2.0
            )

    def _publish_diagnostics(self) -> None:
        s = self.schedule.stats
        now = time.monotonic()
        elapsed = now - self.schedule.start_time
        sim_s = s.ticks * self.tick_sim_ns / _NS
        values = {
            "ticks": s.ticks,
            "sim_time_s": f"{sim_s:.4f}",
            "real_time_factor": f"{sim_s / elapsed:.4f}" if elapsed > 0 else "0",
            "late_ticks": s.late_ticks,
            "max_lateness_ms": f"{1e3 * s.max_lateness_s:.3f}",
            "publish_max_ms": f"{1e3 * self.publish_max_s:.3f}",
            "slips": s.slips,
            "slipped_s": f"{s.slipped_s:.4f}",
            "resets": self.resets,
            "wall_clock_steps": self.wall_clock.steps,
            "commands_accepted": self.commands.accepted,
            **self._command_timing(),
            **{f"commands_rejected_{k}": v for k, v in sorted(self.commands.rejected.items())},
        }
        status = DiagnosticStatus(name=f"{self.get_name()}: real-time loop", hardware_id=self.robot_name)
        status.level = DiagnosticStatus.OK if s.slips == 0 else DiagnosticStatus.WARN
        status.message = "keeping up" if s.slips == 0 else f"fell behind {s.slips} times"
        self.pub_diag.publish(diagnostic_array(status, values, self.get_clock().now().to_msg()))

    # --- physics thread ------------------------------------------------------------------------------
    def _run(self, stop: threading.Event) -> None:
        """Step and publish on the schedule until stopped (a crash ends the node: `WorkerThread`)."""
        self.start_gate.wait(stop)
        clock = time.monotonic
        sched = self.schedule
        sched.start(clock())
        self.wall_clock.anchor(sched.t0)
        next_diagnostics = sched.t0 + 1.0
        while not stop.is_set():
            now = clock()
            if not self.publish_clock and self.wall_clock.check():
                self.get_logger().warning(
                    f"the system clock stepped {self.wall_clock.last_step_ns / 1e6:+.1f} ms against the "
                    f"monotonic clock ({self.wall_clock.steps} times): stamps follow it from now on",
                    throttle_duration_sec=10.0,
                )
            slips = sched.stats.slips
            n = sched.due(now)
            if n == 0:
                self._receive_commands(sched.time_to_next(now))
                continue
            if sched.stats.slips != slips:
                self.get_logger().warning(
                    f"physics fell over {1e3 * MAX_LAG_S:.0f} ms behind after {sched.stats.ticks} ticks: "
                    f"dropped {1e3 * sched.stats.slipped_s:.0f} ms of simulated time in all "
                    f"({sched.stats.slips} times); is the machine overloaded?",
                    throttle_duration_sec=2.0,
                )
            for _ in range(n):
                if self.publish_clock:  # sim time: ticks * tick time (slips lose simulated time)
                    stamp_ns = (sched.stats.ticks + 1) * self.tick_sim_ns
                else:  # ROS time the state stands for: its deadline on the wall clock
                    stamp_ns = self.wall_clock.to_wall_ns(sched.deadline())
                self._tick(stamp_ns)
                sched.advance(now)
            self._gc.tick(n)
            now = clock()
            if sched.time_to_next(now) > SLACK_S:  # housekeeping only where it cannot delay a tick
                self._gc.collect()
                if now >= next_diagnostics:
                    next_diagnostics = now + 1.0
                    self._publish_diagnostics()

    def _tick(self, stamp_ns: int) -> None:
        sim = self.sim
        if self.commands.take(self._targets):
            sim.set_targets(self._targets)
        sim.step(self.decimation)
        if sim.fell and self.reset_on_fall:
            self.resets += 1
            self.get_logger().warning(
                f"the robot fell: reset ({self.resets} so far)", throttle_duration_sec=2.0
            )
            sim.reset(height=self.initial_height)
        self._fill()
        set_stamp_ns(self._stamp, stamp_ns)
        start = time.perf_counter()
        published = self.published
        for topic, pub, msg in self._robot_streams:
            pub.publish(msg)
            published[topic] += 1
        # a reliable writer with a full history waits in publish() for its slowest reader
        self.publish_max_s = max(self.publish_max_s, time.perf_counter() - start)
        if self.pub_clock is not None:
            if self._ticks_to_clock == 0:
                self.pub_clock.publish(self.msg_clock)
                self._ticks_to_clock = self.ticks_per_clock
            self._ticks_to_clock -= 1

    def _fill(self) -> None:
        """Copy the simulator's state into the preallocated messages."""
        d, robot = self.sim.data, self.sim.robot
        np.take(d.qpos, robot.qpos_adr, out=self._q)
        np.take(d.qvel, robot.dof_adr, out=self._dq)
        self._tau[:] = d.actuator_force
        self._contacts[:] = self.sim.contacts
        w, x, y, z = d.qpos[3:7].tolist()
        self._ang_vel[:] = d.qvel[3:6]  # free joint: angular velocity in the base frame
        qi = self._quat_inv
        qi[0], qi[1], qi[2], qi[3] = w, -x, -y, -z
        mujoco.mju_rotVecQuat(self._lin_vel, d.qvel[0:3], qi)  # world-frame velocity into the base frame
        self._noise.add(self._q, self._dq, self._ang_vel, self._lin_vel)  # the variant's sensors
        wx, wy, wz = self._ang_vel.tolist()

        imu = self.msg_imu
        o = imu.orientation
        o.x, o.y, o.z, o.w = x, y, z, w
        a = imu.angular_velocity
        a.x, a.y, a.z = wx, wy, wz
        la = imu.linear_acceleration
        la.x, la.y, la.z = self.sim.imu_linear_acceleration.tolist()

        pose = self.msg_odom.pose.pose
        pos = pose.position
        pos.x, pos.y, pos.z = d.qpos[0:3].tolist()
        o = pose.orientation
        o.x, o.y, o.z, o.w = x, y, z, w
        tw = self.msg_odom.twist.twist
        v = tw.linear
        v.x, v.y, v.z = self._lin_vel.tolist()
        a = tw.angular
        a.x, a.y, a.z = wx, wy, wz

    def _command_timing(self) -> dict[str, str]:
        """End-to-end figures at the robot over the last minute: a state's stamp to the arrival of the
        command that answers it, and the jitter of the command period."""
        if self.command_arrivals.count < 10:
            return {}
        mono, wall, stamps = self.command_arrivals.arrays()
        t = timing_summary(mono, stamps, wall)
        keys = ("latency_p50_ms", "latency_p99_ms", "latency_max_ms", "arrival_jitter_p99_ms")
        return {f"command_{k}": f"{t[k]:.3f}" for k in keys}

    # --- lifecycle -----------------------------------------------------------------------------------
    def destroy_node(self) -> None:
        """Stop the physics thread before the publishers go away."""
        physics = getattr(self, "physics", None)  # absent when __init__ failed
        if physics is not None:
            if physics.stop():
                self.inputs.close()
            self._gc.close()
            print_published(self, self.published)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    # The physics thread must get the GIL within a fraction of a tick when the executor holds it.
    sys.setswitchinterval(0.0005)
    spin_node(SimNode, args)


if __name__ == "__main__":
    main()
