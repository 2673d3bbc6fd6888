"""`command_sequence`: plays a scripted list of velocity commands on /cmd_vel (the operator's stand-in).

`segments` is a flat list of (duration_s, vx, vy, yaw_rate) quadruples; the sequence starts after
`start_delay_s` (time for the soft start) and repeats when `loop` is set, else it ends with zero. With
`await_reader` it starts once that node (the data logger) hears it (`ReaderGate`).
"""

from __future__ import annotations

import time

from geometry_msgs.msg import Twist
from rclpy.node import Node

from rwm.robot import contract as C
from rwm_ros.node_base import ReaderGate, declare, print_published
from rwm_ros.spin import spin_node

DEFAULT_SEGMENTS = [4.0, 0.6, 0.0, 0.0, 4.0, 0.0, 0.3, 0.0, 4.0, 0.0, 0.0, 0.8, 4.0, -0.5, 0.0, 0.0]


def parse_segments(flat: list[float]) -> list[tuple[float, float, float, float]]:
    """[(duration, vx, vy, yaw_rate), ...] from the flat parameter list; clear errors for bad input."""
    if len(flat) == 0 or len(flat) % 4:
        raise ValueError(
            f"segments must hold (duration, vx, vy, yaw_rate) quadruples, got {len(flat)} numbers"
        )
    segs = [tuple(float(x) for x in flat[i : i + 4]) for i in range(0, len(flat), 4)]
    if any(not d > 0 for d, *_ in segs):
        raise ValueError("every segment needs a positive duration")
    return segs


def command_at(
    segments: list[tuple[float, float, float, float]], t: float, loop: bool
) -> tuple[float, ...] | None:
    """The (vx, vy, yaw_rate) in force t seconds into the sequence; None once it is over."""
    total = sum(s[0] for s in segments)
    if t < 0:
        return (0.0, 0.0, 0.0)
    if t >= total:
        if not loop:
            return None
        t %= total
    for d, vx, vy, wz in segments:
        if t < d:
            return (vx, vy, wz)
        t -= d
    return None


class CommandSequenceNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("command_sequence", **kwargs)

        self.segments = parse_segments(
            declare(
                self, "segments", DEFAULT_SEGMENTS, "flat list of (duration_s, vx, vy, yaw_rate) quadruples"
            )
        )
        self.start_delay_s = declare(
            self, "start_delay_s", 3.0, "zero command this long first (soft start), s"
        )
        self.loop = declare(self, "loop", False, "repeat the sequence")
        rate = declare(self, "rate_hz", 10.0, "publish rate, Hz")
        self.pub = self.create_publisher(Twist, C.TOPIC_CMD_VEL, 10)
        self.msg = Twist()
        self.start_gate = ReaderGate(self, {C.TOPIC_CMD_VEL: self.pub})
        self._t0 = time.monotonic()
        self._done = False
        self.published = 0
        self.create_timer(1.0 / rate, self._on_timer)

    def _on_timer(self) -> None:
        if not self.start_gate.is_open:
            if not self.start_gate.poll():
                return
            self._t0 = time.monotonic()  # the sequence starts with its first message
        cmd = command_at(self.segments, time.monotonic() - self._t0 - self.start_delay_s, self.loop)
        if cmd is None:
            cmd = (0.0, 0.0, 0.0)
            if not self._done:
                self.get_logger().info("command sequence finished: zero command")
                self._done = True
        self.msg.linear.x, self.msg.linear.y, self.msg.angular.z = cmd
        self.pub.publish(self.msg)
        self.published += 1

    def destroy_node(self) -> None:
        if hasattr(self, "published"):  # absent when __init__ failed
            print_published(self, {C.TOPIC_CMD_VEL: self.published})
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    spin_node(CommandSequenceNode, args)


if __name__ == "__main__":
    main()
