"""Subscriptions that a thread of the node reads itself, outside the rclpy executor.

Why: the executor costs 0.1-0.3 ms of Python per message (task objects, a wait set rebuilt for every
wake-up). A consumer of the 400 Hz robot streams that acts at 50 Hz pays that 1 200 times a second and,
worse, finds its due message queued behind the others. Here a control thread waits on the one stream
that paces it and takes the others only when it needs them (the latest sample, draining the rest), so
IMU and odometry never wake anything. The subscriptions belong to a callback group that the executor
never runs, so the node's executor keeps serving its low-rate topics, timers and services.
"""

from __future__ import annotations

import struct
from contextlib import ExitStack
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.subscription import Subscription

from rwm_ros.conversions import raw_stamp_ns


class NeverExecuted(CallbackGroup):
    """A callback group whose entities the executor leaves alone (it neither waits on nor takes them)."""

    def can_execute(self, entity: Any) -> bool:
        return False


class PolledSubscriptions:
    """Subscriptions of `node`, read with `wait`, `take` and `take_latest` by one thread."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._group = NeverExecuted()
        self._wake: list[Subscription] = []
        self._wait_set = None

    def subscribe(self, msg_type: type, topic: str, qos: QoSProfile, wakes: bool) -> Subscription:
        """A raw subscription; `wakes`: `wait` returns when it has a message (else it is only taken)."""
        if self._wait_set is not None:
            raise RuntimeError("subscribe before the first wait")
        sub = self.node.create_subscription(
            msg_type, topic, _never_called, qos, callback_group=self._group, raw=True
        )
        if wakes:
            self._wake.append(sub)
        return sub

    def wait(self, timeout_s: float) -> None:
        """Block until a waking subscription has a message or `timeout_s` passes (then take to see)."""
        if not self._wake:
            raise RuntimeError("nothing to wait on: subscribe at least one topic with wakes=True")
        context = self.node.context
        with ExitStack() as held:  # the handles stay valid for the whole wait, as in rclpy's executor
            held.enter_context(context.handle)
            for sub in self._wake:
                held.enter_context(sub.handle)
            if self._wait_set is None:
                self._wait_set = _rclpy.WaitSet(len(self._wake), 0, 0, 0, 0, 0, context.handle)
            ws = self._wait_set
            ws.clear_entities()
            for sub in self._wake:
                ws.add_subscription(sub.handle)
            ws.wait(max(int(timeout_s * 1e9), 0))

    def close(self) -> None:
        """Release the wait set, once the thread that waits has stopped."""
        if self._wait_set is not None:
            self._wait_set.destroy_when_not_in_use()
            self._wait_set = None

    @classmethod
    def take(cls, sub: Subscription) -> bytes | None:
        """The oldest waiting message of `sub` (CDR bytes), or None."""
        taken = cls.take_received(sub)
        return None if taken is None else taken[0]

    @staticmethod
    def take_received(sub: Subscription) -> tuple[bytes, int] | None:
        """The oldest waiting message of `sub` (CDR bytes) and when the middleware received it (ns, the
        system clock), or None."""
        with sub.handle:
            taken = sub.handle.take_message(sub.msg_type, True)
        return None if taken is None else (taken[0], taken[1]["received_timestamp"])

    @classmethod
    def take_latest(cls, sub: Subscription) -> bytes | None:
        """The newest waiting message of `sub`, dropping older ones, or None when none waits."""
        latest = None
        while (cdr := cls.take(sub)) is not None:
            latest = cdr
        return latest


class StampAlignedStream:
    """A stamped stream of `PolledSubscriptions` read in step with another stream's stamps.

    Why: a consumer that takes the newest sample when it acts pairs each 50 Hz command with a state
    one to several physics ticks newer than the one the command was computed from, more so the later
    it runs (the world-model monitor, at normal priority beside the control loop). Its subscription
    needs a queue as deep as the samples that arrive between two of its steps, and then some.
    """

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self._held: tuple[bytes, int] | None = None
        """The first sample found newer than the last stamp asked for: the next step's."""
        self._asked = -1
        """The last stamp asked for."""

    def take_at(self, stamp_ns: int) -> tuple[bytes, int] | None:
        """(CDR, stamp ns) of the newest waiting sample stamped at or before `stamp_ns`, dropping older
        ones; None when none waits or every waiting one is newer. A sample too short to hold a header
        is returned as if stamped `stamp_ns`, for the reader to reject. Asked for an earlier stamp than
        last time (the clock jumped back: a simulator restarted on its own clock, a bag replayed in a
        loop), the sample held for later is dropped, as it belongs to the old timeline."""
        if stamp_ns < self._asked:
            self._held = None
        self._asked = stamp_ns
        best = None
        while True:
            if self._held is not None:
                taken, self._held = self._held, None
            else:
                cdr = PolledSubscriptions.take(self.sub)
                if cdr is None:
                    return best
                try:
                    taken = (cdr, raw_stamp_ns(cdr))
                except (struct.error, IndexError):
                    taken = (cdr, stamp_ns)
            if taken[1] > stamp_ns:
                self._held = taken
                return best
            best = taken


def _never_called(_msg: bytes) -> None:  # pragma: no cover - the group is never executed
    raise AssertionError("a polled subscription's callback ran: its callback group was executed")
