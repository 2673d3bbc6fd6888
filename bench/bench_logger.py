"""Benchmark of the data logger: does it lose anything at 400 Hz over 10 minutes?

Starts `python -m rwm_ros.logger_node` (private ROS domain, loopback) with bags split every 60 s,
publishes /anymal/joint_states at 400 Hz for --duration seconds with a sequence number in the first
joint position (plus /anymal/imu at the same rate), stops the logger with SIGINT, reads every bag
back with rosbags and prints JSON: messages sent and recorded per topic, lost, duplicates, bags,
bytes, and the logger's CPU share.

    python bench/bench_logger.py [--duration 600]
Goal: 0 messages lost at 400 Hz for 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

import psutil  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from sensor_msgs.msg import Imu, JointState  # noqa: E402

from rwm.robot import contract as C  # noqa: E402
from rwm_ros.launch_stack import source_env  # noqa: E402
from rwm_ros.middleware import script_dds_env  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--rate-hz", type=float, default=400.0)
    ap.add_argument("--domain", type=int, default=80 + os.getpid() % 10)
    args = ap.parse_args()
    out_dir = Path(tempfile.mkdtemp(prefix="bench_logger_"))
    env = source_env()
    env.update(ROS_DOMAIN_ID=str(args.domain), **script_dds_env())
    os.environ.update(script_dds_env())
    cmd = [sys.executable, "-m", "rwm_ros.logger_node", "--ros-args", "-r", "__node:=data_logger"]
    cmd += ["-p", f"directory:={out_dir}", "-p", "split_duration_s:=60.0"]
    logger = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init(domain_id=args.domain)
    node = rclpy.create_node("bench_logger")
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    pub_js = node.create_publisher(JointState, C.TOPIC_JOINT_STATES, qos)
    pub_imu = node.create_publisher(Imu, C.TOPIC_IMU, qos)
    deadline = time.monotonic() + 30
    while pub_js.get_subscription_count() == 0 or pub_imu.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print("logger did not subscribe", file=sys.stderr)
            return 1
        time.sleep(0.1)
    time.sleep(1.0)
    js = JointState()
    js.name = list(C.JOINT_NAMES)
    js.position, js.velocity, js.effort = [0.0] * 12, [0.0] * 12, [0.0] * 12
    imu = Imu()
    n = int(args.duration * args.rate_hz)
    period = 1.0 / args.rate_hz
    start = time.monotonic()
    cpu0 = sum(psutil.Process(logger.pid).cpu_times()[:2])
    for i in range(n):
        js.header.stamp = node.get_clock().now().to_msg()
        js.position[0] = float(i)
        imu.header.stamp = js.header.stamp
        imu.orientation.x = float(i)
        pub_js.publish(js)
        pub_imu.publish(imu)
        delay = start + (i + 1) * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    sent_s = time.monotonic() - start
    cpu = sum(psutil.Process(logger.pid).cpu_times()[:2]) - cpu0
    time.sleep(1.0)
    logger.send_signal(signal.SIGINT)
    log_out, _ = logger.communicate(timeout=60)
    node.destroy_node()
    rclpy.shutdown()
    bags = sorted(p for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    seen = {C.TOPIC_JOINT_STATES: [], C.TOPIC_IMU: []}
    with AnyReader(bags) as reader:
        for conn, _, raw in reader.messages([c for c in reader.connections if c.topic in seen]):
            msg = reader.deserialize(raw, conn.msgtype)
            seen[conn.topic].append(
                int(msg.position[0] if conn.topic == C.TOPIC_JOINT_STATES else msg.orientation.x)
            )
    result = {
        "duration_s": round(sent_s, 1),
        "rate_hz_sent": round(n / sent_s, 1),
        "bags": len(bags),
        "bytes": sum(f.stat().st_size for b in bags for f in b.iterdir()),
        "logger_exit_code": logger.returncode,
        "logger_cpu_percent_of_a_core": round(100 * cpu / sent_s, 1),
        "partial_bags_left": len(list((out_dir / ".partial").iterdir()))
        if (out_dir / ".partial").is_dir()
        else 0,
    }
    for topic, ids in seen.items():
        result[topic] = {
            "sent": n,
            "recorded": len(ids),
            "lost": n - len(set(ids)),
            "duplicates": len(ids) - len(set(ids)),
        }
    result["lost_total"] = sum(v["lost"] for k, v in result.items() if k.startswith("/"))
    print(json.dumps(result, indent=2))
    print(log_out.strip().splitlines()[-1] if log_out.strip() else "", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
