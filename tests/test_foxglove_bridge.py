"""The live view: the Foxglove bridge offers the recorded topics over the Foxglove WebSocket protocol
with their ROS 2 schemas, forwards the bytes DDS delivered, repeats the latched description for a
client that connects late, and serves the description's meshes but nothing outside it."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import pytest

from ros_helpers import PYTHON, domain_id, node_process, ros_context, ros_env, wait_for
from rwm.robot.description import find_urdf
from rwm_ros.foxglove_bridge_node import description_assets

pytestmark = pytest.mark.ros


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_assets_are_served_from_the_description_only():
    fetch = description_assets(find_urdf("anymal_d"))
    package = find_urdf("anymal_d").resolve().parents[1].name
    assert fetch(f"package://{package}/meshes/base.dae")[:5] == b"<?xml"
    assert fetch(f"package://{package}/../../../etc/passwd") is None
    assert fetch("file:///etc/passwd") is None and fetch(f"package://{package}/meshes/none.dae") is None


async def _first_description(port: int, timeout_s: float) -> tuple[dict, bytes]:
    import websockets

    uri = f"ws://127.0.0.1:{port}"
    async with websockets.connect(uri, subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"]) as ws:
        channels: dict[str, dict] = {}
        end = time.monotonic() + timeout_s
        while "/robot_description" not in channels:
            msg = await asyncio.wait_for(ws.recv(), end - time.monotonic())
            if isinstance(msg, str) and json.loads(msg).get("op") == "advertise":
                channels.update({c["topic"]: c for c in json.loads(msg)["channels"]})
        desc = channels["/robot_description"]
        await ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": desc["id"]}]}))
        while True:
            msg = await asyncio.wait_for(ws.recv(), end - time.monotonic())
            if isinstance(msg, bytes) and msg[0] == 1 and struct.unpack_from("<I", msg, 1)[0] == 7:
                return channels, msg[1 + 4 + 8 :]


def test_bridge_offers_the_topics_and_repeats_the_latched_description():
    rclpy = pytest.importorskip("rclpy")
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import String

    domain, port = domain_id(3), _free_port()
    cmd = [PYTHON, "-m", "rwm_ros.foxglove_bridge_node", "--ros-args", "-p", f"port:={port}"]
    with ros_context(domain) as ctx, node_process(cmd, ros_env(domain)) as bridge:
        node = rclpy.create_node("bridge_test", context=ctx)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        pub = node.create_publisher(String, "/robot_description", latched)
        message = String(data="<robot name='anymal'/>")
        pub.publish(message)
        wait_for(lambda t: time.sleep(t), lambda: pub.get_subscription_count() > 0, 20.0, "the bridge")
        time.sleep(1.5)  # the description was taken before this client connects: it comes again
        channels, payload = asyncio.run(_first_description(port, 10.0))
        assert bridge.poll() is None
        node.destroy_node()
    assert {"/tf", "/tf_static", "/anymal/joint_states", "/anymal/odom"} <= set(channels)
    desc = channels["/robot_description"]
    assert (
        desc["encoding"] == "cdr"
        and desc["schemaEncoding"] == "ros2msg"
        and desc["schemaName"] == "std_msgs/msg/String"
    )
    assert deserialize_message(payload, String).data == message.data, "the CDR bytes DDS delivered"
