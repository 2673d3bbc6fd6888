"""`world_model`: RWM as a live health monitor of the robot (`rwm.control.world_model_monitor`).

Each joint command (50 Hz) is one step, taken by a thread of the node (`PolledSubscriptions`; through
the rclpy executor each wake-up cost 1.4 ms of CPU here, 7 % of a core at 50 Hz): the state is
assembled from the joint state, IMU and odometry samples the command was computed from, those stamped
at or before the command's stamp (`StampAlignedStream`; the 400 Hz streams never wake the thread, and
only the samples used are deserialized), as the bag loader aligns its rows. The previous prediction
is scored against it (/rwm/world_model/error), and the model predicts the next state from (state, command)
(/rwm/world_model/prediction), with the ensemble's disagreement on it (/rwm/world_model/uncertainty,
epistemic; 0 for a single model). /rwm/world_model/anomaly turns true while the error's median over
a short window stays above the threshold calibrated into the model's metadata (each version brings
its own; `rwm.export.anomaly`). A std_msgs/String on /rwm/world_model/reload names a new ONNX
version, loaded only from inside `versions_dir` (the trainer's output; any other path is refused):
it is validated off the executor thread, then swapped in at once (the GRU state restarts); an
unusable file is reported and the current model stays. A model made for another robot is refused at start.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float32, Float32MultiArray, String

from rwm.control.world_model_monitor import MonitorConfig, WorldModelMonitor
from rwm.export.runtime import OnnxWorldModel
from rwm.robot import contract as C
from rwm_ros.conversions import JointMessageError, JointOrder, bind_array, diagnostic_array, stamp_to_ns
from rwm_ros.model_files import check_model_robot, inside_directory, resolve_model
from rwm_ros.node_base import WorkerThread, declare, declare_config, raise_middleware_threads
from rwm_ros.polled_subscriptions import PolledSubscriptions, StampAlignedStream
from rwm_ros.robot_state import RobotStateReader
from rwm_ros.spin import spin_node
from rwm_ros.topics import (
    FLAG_QOS,
    STREAM_WRITER_QOS,
    TOPIC_WM_ANOMALY,
    TOPIC_WM_ERROR,
    TOPIC_WM_PREDICTION,
    TOPIC_WM_RELOAD,
    TOPIC_WM_UNCERTAINTY,
    reader_qos,
)


class WorldModelNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("world_model", **kwargs)

        path = resolve_model(
            declare(self, "model", "anymal_d_rwmu.onnx", "world-model ONNX: path or name in models/")
        )
        model = OnnxWorldModel(path)
        robot = declare(self, "robot", "anymal_d", "the robot monitored (anymal_d|anymal_c)")
        check_model_robot(path, robot, model.metadata)
        self.versions_dir = Path(
            declare(self, "versions_dir", "model_versions", "reloads are accepted only from this directory")
        )
        self.monitor = WorldModelMonitor(model, declare_config(self, MonitorConfig))
        self.model_path = str(path)
        self.reloads = {"accepted": 0, "rejected": 0}
        self._lock = threading.Lock()
        self._order = JointOrder()
        self.reader = RobotStateReader(self.get_logger())
        self._state = np.zeros(C.STATE_DIM)
        self._action = np.zeros(C.ACTION_DIM)
        self.msg_pred = Float32MultiArray()
        self._pred_view = bind_array(self.msg_pred, "data", C.STATE_DIM, "f")
        self.pub_pred = self.create_publisher(Float32MultiArray, TOPIC_WM_PREDICTION, STREAM_WRITER_QOS)
        self.pub_err = self.create_publisher(Float32, TOPIC_WM_ERROR, STREAM_WRITER_QOS)
        self.pub_uncertainty = self.create_publisher(Float32, TOPIC_WM_UNCERTAINTY, STREAM_WRITER_QOS)
        self.msg_uncertainty = Float32()
        self.pub_anomaly = self.create_publisher(Bool, TOPIC_WM_ANOMALY, FLAG_QOS)
        self.pub_anomaly.publish(Bool(data=False))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # The 400 Hz streams never wake the executor: at each command the samples of its stamp are taken.
        # 200 samples queued: 0.5 s of each stream. With 32 (80 ms), this node, at normal priority
        # beside the real-time ones on 2 loaded cores, fell behind far enough to leave steps unscored
        # every few seconds, and the gaps raised a false anomaly in a ten-minute soak.
        self.inputs = PolledSubscriptions(self)
        queued = reader_qos(200)
        sub, r = self.inputs.subscribe, self.reader
        self._streams = [
            (StampAlignedStream(sub(JointState, C.TOPIC_JOINT_STATES, queued, wakes=False)), r.joints),
            (StampAlignedStream(sub(Imu, C.TOPIC_IMU, queued, wakes=False)), r.imu),
            (StampAlignedStream(sub(Odometry, C.TOPIC_ODOM, queued, wakes=False)), r.odom),
        ]
        self._sample_stamps = np.zeros(len(self._streams), dtype=np.int64)
        self._max_age_ns = round(C.STATE_MAX_AGE_S * 1e9)
        self.steps_skipped = 0
        """Commands after the first scored step whose state could not be assembled (rejected or stale
        samples, a bad command)."""
        self._commands = self.inputs.subscribe(JointState, C.TOPIC_JOINT_COMMAND, reader_qos(10), wakes=True)
        self.create_subscription(String, TOPIC_WM_RELOAD, self._on_reload, 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self._was_anomaly = False
        self.workers = [WorkerThread(self, "monitor", self._monitor_loop)]
        self.workers[0].start()
        self.get_logger().info(f"world model {path}; {raise_middleware_threads(self)}")

    def _monitor_loop(self, stop: threading.Event) -> None:
        """Every joint command, in order, as it comes (an undecodable one is a step not scored)."""
        while not stop.is_set():
            self.inputs.wait(0.1)
            while (cdr := self.inputs.take(self._commands)) is not None:
                try:
                    msg = deserialize_message(cdr, JointState)
                except (TypeError, RuntimeError, ValueError):
                    msg = None
                self._on_command(msg)

    def _assemble(self, stamp_ns: int) -> bool:
        """The state a command stamped `stamp_ns` was computed from (0, unset: the newest samples). A
        step is not scored where a sample was rejected (`RobotStateReader`) or is older than
        `C.STATE_MAX_AGE_S` at the stamp (queue overrun, a stream that stopped, a commander's clock)."""
        at = stamp_ns or np.iinfo(np.int64).max
        accepted = True
        for i, (stream, read) in enumerate(self._streams):
            taken = stream.take_at(at)
            if taken is not None:
                self._sample_stamps[i] = taken[1]
                result = read(taken[0])  # the message, True, or None/False when rejected
                accepted = accepted and result is not None and result is not False
        if not accepted or not self.reader.complete:
            return False
        ages = stamp_ns - self._sample_stamps
        if stamp_ns and ((ages < 0).any() or ages.max() > self._max_age_ns):  # < 0: the clock jumped back
            self.get_logger().warning(
                f"no robot sample within {self._max_age_ns / 1e6:.1f} ms before a command's stamp: "
                "step not scored",
                throttle_duration_sec=5.0,
            )
            return False
        self.reader.state(self._state)
        return True

    def _on_command(self, msg: JointState | None) -> None:
        usable = False
        if msg is not None:
            try:
                self._order.read(msg, "position", self._action)
                usable = np.isfinite(self._action).all() and self._assemble(stamp_to_ns(msg.header.stamp))
            except JointMessageError:
                pass
        if not usable:
            with self._lock:
                self.monitor.skip()
            if self.monitor.steps:  # before its first step the node is still starting
                self.steps_skipped += 1
            return
        with self._lock:
            pred = self.monitor.step(self._state, self._action)
            error, anomaly = self.monitor.error, self.monitor.anomaly
            self.msg_uncertainty.data = self.monitor.uncertainty
        self._pred_view[:] = pred
        self.pub_pred.publish(self.msg_pred)
        self.pub_uncertainty.publish(self.msg_uncertainty)
        if np.isfinite(error):
            self.pub_err.publish(Float32(data=error))
        if anomaly != self._was_anomaly:
            self._was_anomaly = anomaly
            self.pub_anomaly.publish(Bool(data=anomaly))
            if anomaly:
                self.get_logger().warning(
                    f"anomaly: windowed prediction error {self.monitor.windowed_error:.3f} stays above "
                    f"the model's threshold {self.monitor.threshold:.3f}"
                )
            else:
                self.get_logger().info("anomaly cleared")

    def _on_reload(self, msg: String) -> None:
        threading.Thread(target=self._reload, args=(msg.data,), daemon=True).start()

    def _reload(self, path: str) -> None:
        try:
            model = OnnxWorldModel(inside_directory(path, self.versions_dir))
            with self._lock:
                self.monitor.swap(model)  # validates before replacing
        except Exception as e:  # noqa: BLE001 - any unusable file: keep the current model
            self.reloads["rejected"] += 1
            self.get_logger().error(
                f"reload of {path} rejected ({type(e).__name__}: {e}); keeping {self.model_path}"
            )
            return
        self.model_path = path
        self.reloads["accepted"] += 1
        self.get_logger().info(f"world model reloaded: {path}")

    def _publish_diagnostics(self) -> None:
        m = self.monitor
        values = {
            "model": self.model_path,
            "steps": m.steps,
            "steps_skipped": self.steps_skipped,
            "error": f"{m.error:.4f}",
            "windowed_error": f"{m.windowed_error:.4f}",
            "uncertainty": f"{m.uncertainty:.4f}",
            "ensemble_size": m.model.metadata.get("ensemble_size", 1),
            "threshold": f"{m.threshold:.4f}",
            "anomaly": m.anomaly,
            "reloads_accepted": self.reloads["accepted"],
            "reloads_rejected": self.reloads["rejected"],
        }
        status = DiagnosticStatus(name=f"{self.get_name()}: health monitor", hardware_id=self.model_path)
        status.level = DiagnosticStatus.WARN if m.anomaly else DiagnosticStatus.OK
        status.message = "prediction error above threshold" if m.anomaly else "predictions match"
        self.pub_diag.publish(diagnostic_array(status, values, self.get_clock().now().to_msg()))

    def destroy_node(self) -> None:
        """Stop the monitor's thread before the subscriptions and publishers go away."""
        if all(worker.stop() for worker in getattr(self, "workers", ())) and hasattr(self, "inputs"):
            self.inputs.close()
        if hasattr(self, "monitor"):  # absent when __init__ failed
            steps = {"predicted": self.monitor.steps, "skipped": self.steps_skipped}
            print(f"[{self.get_name()}] steps: {json.dumps(steps)}", flush=True)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    spin_node(WorldModelNode, args)


if __name__ == "__main__":
    main()
