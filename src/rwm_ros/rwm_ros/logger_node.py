"""`data_logger`: records the contract topics and the policy's observations and actions into rosbag2
(MCAP) files in the replay-buffer directory, for the offline trainer.

Subscriptions are raw (serialized CDR, no deserialization at 400 Hz) with a deep queue, reliable
unless `reliable` is false (for a best-effort robot driver, which a reliable reader never hears). A
receiver thread takes them as they come (`PolledSubscriptions`: ~1 800 messages/s through the rclpy
executor cost 45 % of a core, and a logger that falls behind holds up the reliable writers of the
simulator and the policy); a writer thread drains them into `rwm.data.bag_recorder.SplitBagRecorder`,
which splits bags by duration or size, publishes complete bags only (renamed out of `.partial/`), and
stops before the disk is full, and syncs the open bag every `flush_interval_s` (a killed logger loses
about that much: `rwm bag-recover`). SIGINT and SIGTERM, once or twice, close the current bag cleanly
after everything received has been written, once the recorded topics' publishers have gone (at most
`linger_s`: the stack stops on the same signal and its last messages are still on their way).
"""

from __future__ import annotations

import struct
import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from rwm.data.bag_recorder import RecorderConfig, SplitBagRecorder
from rwm_ros.conversions import diagnostic_array, raw_stamp_ns
from rwm_ros.node_base import WorkerThread, declare, declare_config
from rwm_ros.polled_subscriptions import PolledSubscriptions
from rwm_ros.realtime import set_realtime_priority
from rwm_ros.spin import spin_node
from rwm_ros.topics import LATCHED, RECORDED, reader_qos


class SimulatedLogTime:
    """Log times in simulated time (use_sim_time, as `ros2 bag record` does): the newest /clock, taken by
    the receiver thread as it logs each message. The node's ROS clock follows /clock through the rclpy
    executor, which the real-time receiver starves: its time lagged the messages' stamps by up to
    1.3 s, and the loader, which pairs the headerless contact flags with the joint states by log time,
    paired them wrongly."""

    def __init__(self, inputs: PolledSubscriptions) -> None:
        self._sub = inputs.subscribe(Clock, "/clock", reader_qos(depth=10), wakes=False)
        self._ns = 0

    def __call__(self) -> int:
        if (cdr := PolledSubscriptions.take_latest(self._sub)) is not None:
            try:
                self._ns = raw_stamp_ns(cdr)  # rosgraph_msgs/Clock's CDR begins as a header's stamp does
            except (struct.error, IndexError):
                pass  # a malformed /clock: the time stays where it was
        return self._ns


class LoggerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("data_logger", **kwargs)

        self.cfg = declare_config(self, RecorderConfig)
        depth = declare(self, "queue_depth", 2000, "subscription queue per topic", (10, 100000))
        priority = declare(
            self, "realtime_priority", 0, "SCHED_FIFO priority of every thread (1-99; 0: normal)", (0, 99)
        )
        self.recorder = SplitBagRecorder(self.cfg)
        self.received: dict[str, int] = dict.fromkeys(RECORDED, 0)
        """Messages received per topic."""
        self._queue: deque[tuple[str, str, bytes, int]] = deque()
        self.linger_s = declare(
            self,
            "linger_s",
            2.0,
            "after a signal, keep recording until no recorded topic has a publisher left (the stack's "
            "nodes stop on the same signal) or this long, s: their last messages reach the bag",
            (0.0, 60.0),
        )
        reliable = declare(
            self,
            "reliable",
            True,
            "read reliably (nothing a reliable writer sends is lost, but a best-effort writer is never "
            "heard); false for a robot driver that publishes best-effort",
        )
        reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=depth, reliability=reliability)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.inputs = PolledSubscriptions(self)
        if self.get_parameter("use_sim_time").value:  # /clock's reader first: the simulator waits
            self._now_ns = SimulatedLogTime(self.inputs)  # for the recorded topics' readers only
        else:
            self._now_ns = time.time_ns  # system time is ROS time here, at a fraction of the cost
        self._subs = [
            (
                self.inputs.subscribe(cls, topic, latched if topic in LATCHED else qos, wakes=True),
                topic,
                typename,
            )
            for topic, (cls, typename) in RECORDED.items()
        ]
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        # A starved reliable reader backs up its writers (the simulator, the policy): the logger reads
        # above normal priority, below the control loop. The bag writer thread is real-time too: at
        # normal priority it could be preempted holding the GIL and stall the receiving thread.
        scheduling = set_realtime_priority(priority)
        self.receiver = WorkerThread(self, "bag_receiver", self._receive_loop)
        self.writer = WorkerThread(self, "bag_writer", self._drain_loop)
        self.workers = [self.receiver, self.writer]
        for worker in self.workers:
            worker.start()
        self.get_logger().info(
            f"recording {len(RECORDED)} topics into {self.recorder.directory}/, {scheduling}"
        )

    def _receive(self) -> None:
        """Take every waiting message of every topic into the queue, stamped with its receive time."""
        queue, received, take, now_ns = self._queue, self.received, self.inputs.take, self._now_ns
        for sub, topic, typename in self._subs:
            while (data := take(sub)) is not None:
                queue.append((topic, typename, data, now_ns()))
                received[topic] += 1

    def _receive_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.inputs.wait(0.1)
            self._receive()

    def _drain(self) -> None:
        rec, queue = self.recorder, self._queue
        while queue:
            topic, typename, data, t_ns = queue.popleft()
            if not rec.write(topic, typename, data, t_ns, topic in LATCHED):
                queue.clear()  # recording stopped (disk): drop, counted as not written
                return

    def _drain_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._drain()
            self.recorder.flush_due()  # on the disk every second, even when the topics go quiet
            time.sleep(0.01)

    def _publish_diagnostics(self) -> None:
        rec = self.recorder
        received = sum(self.received.values())
        values = {
            "received": received,
            "written": rec.written,
            "queued": len(self._queue),
            "bags_closed": len(rec.closed_bags),
            "current_bag": rec.bag.path.name if rec.bag is not None else "",
            **{f"received_{t.strip('/').replace('/', '_')}": n for t, n in self.received.items()},
        }
        status = DiagnosticStatus(name=f"{self.get_name()}: recorder", hardware_id=str(rec.directory))
        failed = [f"{w.name}: {w.failure}" for w in self.workers if w.failure is not None]
        problem = rec.stopped_reason or (failed[0] if failed else None)
        status.level = DiagnosticStatus.ERROR if problem else DiagnosticStatus.OK
        status.message = f"recording stopped: {problem}" if problem else "recording"
        if rec.stopped_reason:
            self.get_logger().error(f"recording stopped: {rec.stopped_reason}", throttle_duration_sec=10.0)
        self.pub_diag.publish(diagnostic_array(status, values, self.get_clock().now().to_msg()))

    def await_sources(self) -> None:
        """After a signal, before the bag closes: the stack stops on the same signal, and a node that
        publishes until it handles it sends for a moment longer (150 ms of the robot's streams went
        missing at the end of a launch). Returns once the recorded topics have no publisher left (and
        the receiver has had a last pass), or after `linger_s` (a robot driver that keeps running)."""
        if not self.context.ok():
            return
        topics = [t for t in RECORDED if t not in LATCHED]
        deadline = time.monotonic() + self.linger_s
        while time.monotonic() < deadline:
            if not any(self.count_publishers(t) for t in topics):
                time.sleep(0.2)  # what they sent last, through the receiver
                return
            time.sleep(0.02)

    def destroy_node(self) -> None:
        """Write everything received, close the bag (renamed out of .partial), then go."""
        if getattr(self, "workers", None) is not None:
            receiver_stopped, writer_stopped = self.receiver.stop(1.0), self.writer.stop(5.0)
            if not writer_stopped:  # never two writers on one bag: it stays in .partial/ for recovery
                open_bag = self.recorder.bag.path if self.recorder.bag is not None else "no bag"
                self.get_logger().error(
                    f"the bag writer did not stop: {open_bag} is left for `rwm bag-recover` "
                    "(the trainer recovers it)"
                )
                super().destroy_node()
                return
            if receiver_stopped:
                try:
                    self._receive()  # what arrived after the receiver's last pass
                except Exception as e:  # noqa: BLE001 - subscriptions already torn down by the shutdown
                    self.get_logger().warning(f"final take skipped: {e}")
            else:
                self.get_logger().error("the bag receiver did not stop: what it queued is written, no more")
            self._drain()
            if receiver_stopped:
                self.inputs.close()
            path = self.recorder.close()
            received = sum(self.received.values())
            print(
                f"[data_logger] closed {path}: {self.recorder.written} of {received} received messages "
                f"written in {len(self.recorder.closed_bags)} bag(s)",
                flush=True,
            )
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    spin_node(LoggerNode, args, linger=LoggerNode.await_sources)


if __name__ == "__main__":
    main()
