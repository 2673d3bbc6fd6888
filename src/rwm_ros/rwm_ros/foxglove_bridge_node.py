"""`foxglove_bridge`: the live stack in Foxglove. A WebSocket server (foxglove-sdk, on localhost by
default) offers the recorded topics as they arrive; open Foxglove, "Open connection", Foxglove
WebSocket, `ws://localhost:8765`, and a 3D panel draws the robot from /robot_description and /tf.

Messages are forwarded as DDS delivered them (CDR bytes, no deserialization) with their ROS 2 message
definitions as schemas, read by a thread of the node's own (`PolledSubscriptions`) as the logger
does. The latched topics (description, static transforms) are offered again every second so that a
client that connects later draws the robot at once. The meshes the URDF names
(`package://<description>/...`) are served from the robot description's own directory, nothing else.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import foxglove
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.typesys import get_typestore

from rwm.data.bag_writer import TYPESTORE
from rwm.robot.description import find_urdf
from rwm_ros.node_base import WorkerThread, declare, raise_middleware_threads
from rwm_ros.polled_subscriptions import PolledSubscriptions
from rwm_ros.spin import spin_node
from rwm_ros.topics import LATCHED, RECORDED


def description_assets(urdf: Path):
    """An asset handler serving `package://<package>/<path>` from the description's package directory
    (the URDF's grandparent), and refusing anything outside it."""
    package_dir = urdf.resolve().parents[1]
    prefix = f"package://{package_dir.name}/"

    def fetch(uri: str) -> bytes | None:
        if not uri.startswith(prefix):
            return None
        path = (package_dir / uri[len(prefix) :]).resolve()
        if not path.is_relative_to(package_dir) or not path.is_file():
            return None
        return path.read_bytes()

    return fetch


class FoxgloveBridgeNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("foxglove_bridge", **kwargs)

        host = declare(
            self, "host", "127.0.0.1", "interface the WebSocket server listens on (localhost only by default)"
        )
        port = declare(self, "port", 8765, "WebSocket port", (1, 65535))
        robot = declare(self, "robot", "anymal_d", "robot whose description's meshes are served")
        store = get_typestore(TYPESTORE)
        self.channels: dict[str, foxglove.Channel] = {}
        for topic, (_, typename) in RECORDED.items():
            definition, _ = store.generate_msgdef(typename, ros_version=2)
            schema = foxglove.Schema(name=typename, encoding="ros2msg", data=definition.encode())
            self.channels[topic] = foxglove.Channel(topic, schema=schema, message_encoding="cdr")
        self.latest_latched: dict[str, bytes] = {}
        self.forwarded = 0
        """Messages forwarded (latched ones repeated for late clients not counted)."""
        self.server = foxglove.start_server(
            name="rwm", host=host, port=port, asset_handler=description_assets(find_urdf(robot))
        )
        stream = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.inputs = PolledSubscriptions(self)
        self._subs = [
            (self.inputs.subscribe(cls, topic, latched if topic in LATCHED else stream, wakes=True), topic)
            for topic, (cls, _) in RECORDED.items()
        ]
        self.forwarder = WorkerThread(self, "foxglove_forwarder", self._forward_loop)
        self.workers = [self.forwarder]
        self.forwarder.start()
        self.get_logger().info(
            f"Foxglove WebSocket on ws://{host}:{self.server.port}: {len(self.channels)} topics; "
            f"{raise_middleware_threads(self)}"
        )

    def _forward(self) -> None:
        take = self.inputs.take
        for sub, topic in self._subs:
            while (data := take(sub)) is not None:
                self.channels[topic].log(data, log_time=time.time_ns())
                self.forwarded += 1
                if topic in LATCHED:
                    self.latest_latched[topic] = data

    def _forward_loop(self, stop: threading.Event) -> None:
        last_latched = 0.0
        while not stop.is_set():
            self.inputs.wait(0.1)
            self._forward()
            if time.monotonic() - last_latched >= 1.0:  # late clients draw the robot at once
                last_latched = time.monotonic()
                for topic, data in self.latest_latched.items():
                    self.channels[topic].log(data, log_time=time.time_ns())

    def destroy_node(self) -> None:
        if getattr(self, "workers", None) is not None:
            self.forwarder.stop(1.0)
            self.server.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    spin_node(FoxgloveBridgeNode, args)


if __name__ == "__main__":
    main()
