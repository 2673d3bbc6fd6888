"""The skeleton the nodes share: parameters declared with their descriptions (and ranges) from the
core's config dataclasses, and worker threads whose crash ends the node.

Why: a node's parameters are the core's configuration (`SafetyConfig`, `RecorderConfig`,
`MonitorConfig`, `RefineConfig`), so their names, defaults and descriptions live once, in the core, as
the dataclass fields and their docstrings; `ros2 param describe` shows them. A real-time node does its
work on a thread of its own (the executor's Python overhead is too large at 400 Hz); when that thread
fails, the node must not go on looking alive: the failure is logged and published on /diagnostics
(ERROR), the node shuts down, and its process exits with code 1 (`rwm_ros.spin`), which `ros2 launch`
reports and acts on.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from functools import cache
from typing import Any, TypeVar

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.publisher import Publisher

from rwm_ros.conversions import diagnostic_array
from rwm_ros.realtime import name_os_thread, set_middleware_priority

T = TypeVar("T")
RANGE = "range"
"""Key of a dataclass field's metadata holding its (low, high) bounds, inclusive."""


@cache
def field_descriptions(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (its one description)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    out = {}
    for stmt, following in zip(body, body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            out[stmt.target.id] = " ".join(following.value.value.split())
    return out


def declare(
    node: Node, name: str, default: Any, description: str, bounds: tuple[float, float] | None = None
) -> Any:
    """Declare one parameter with its description (and inclusive range); returns its value."""
    desc = ParameterDescriptor(description=description)
    if bounds is not None:
        lo, hi = bounds
        if isinstance(default, bool) or not isinstance(default, int | float):
            raise TypeError(f"parameter {name}: a range needs a number, got {default!r}")
        if isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            span = FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)
            desc.floating_point_range = [span]
    return node.declare_parameter(name, default, desc).value


def raise_middleware_threads(node: Node) -> str:
    """Declare `middleware_priority` and apply it (`rwm_ros.realtime.set_middleware_priority`); for the
    nodes at normal priority that read the robot's 400 Hz streams. Returns what was done, to log."""
    priority = declare(
        node,
        "middleware_priority",
        0,
        "SCHED_FIFO priority of this node's Fast DDS shared-memory threads only (1-99; 0: normal): a "
        "real-time writer waits on them while they hold a port's lock",
        (0, 99),
    )
    return set_middleware_priority(priority)


def declare_config(node: Node, cls: type[T], prefix: str = "", **defaults: Any) -> T:
    """An instance of the config dataclass `cls` whose plain fields (bool, int, float, str) are node
    parameters of the same names (after `prefix`, e.g. "adapt." where two configs share field
    names), described by the fields' docstrings; `defaults` replace the dataclass's defaults (the
    node's own)."""
    docs = field_descriptions(cls)
    values = {}
    for f in fields(cls):
        default = defaults.get(f.name, f.default)
        if default is MISSING or not isinstance(default, bool | int | float | str):
            continue  # nested or optional configuration: not a parameter
        name = prefix + f.name
        values[f.name] = declare(node, name, default, docs.get(f.name, ""), f.metadata.get(RANGE))
    return cls(**values)


class WorkerThread:
    """A node's own thread (control loop, physics, bag writer): started once the node is built, stopped
    before its entities go; a crash is kept in `failure`, logged, and shuts the node's context down."""

    def __init__(self, node: Node, name: str, target: Callable[[threading.Event], None]) -> None:
        self.node, self.name = node, name
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None
        self._target = target
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        name_os_thread(self.name)
        try:
            self._target(self.stop_event)
        except Exception as e:  # noqa: BLE001 - kept, reported, and the node ends
            if self.stop_event.is_set() or not self.node.context.ok():
                return  # torn down under it by a shutdown: not a failure
            self.failure = e
            text = f"{self.name} failed: {type(e).__name__}: {e}; the node stops"
            self.node.get_logger().fatal(text)
            self._report(text)
            rclpy.try_shutdown(context=self.node.context)

    def _report(self, text: str) -> None:
        """A last ERROR on /diagnostics, where the node has its diagnostics publisher (`pub_diag`)."""
        pub = getattr(self.node, "pub_diag", None)
        if pub is None:
            return
        status = DiagnosticStatus(level=DiagnosticStatus.ERROR, name=f"{self.node.get_name()}: {self.name}")
        status.message = text
        try:
            pub.publish(diagnostic_array(status, {}, self.node.get_clock().now().to_msg()))
        except Exception as e:  # noqa: BLE001 - the node is going down anyway; the log has it
            self.node.get_logger().error(f"could not publish the failure: {e}")

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Ask the thread to end and wait for it; False if it is still running (its inputs must stay)."""
        self.stop_event.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()


def print_published(node: Node, counts: dict[str, int], before_match: dict[str, int] | None = None) -> None:
    """At shutdown: the messages this node published per topic, one line on stdout (`[name]
    published: {json}`), so that a soak counts losses from the publishers' side, not the logger's.
    `before_match`: of those, how many went out before the topic's first reader matched (DDS
    discovery), which no reader can have received (`[name] published before a reader matched: {json}`)."""
    print(f"[{node.get_name()}] published: {json.dumps(counts)}", flush=True)
    if before_match is not None:
        text = json.dumps(before_match)
        print(f"[{node.get_name()}] published before a reader matched: {text}", flush=True)


def reader_matched(node: Node, publishers: Mapping[str, Publisher], reader_node: str) -> bool:
    """Whether a node named `reader_node` subscribes to every topic of `publishers` and each publisher has
    matched every subscription the graph shows on its topic (the graph learns of a reader when its
    endpoint is discovered, the writer matches it in the same exchange: both are checked)."""
    for topic, pub in publishers.items():
        readers = node.get_subscriptions_info_by_topic(topic)
        if not any(r.node_name == reader_node for r in readers) or pub.get_subscription_count() < len(
            readers
        ):
            return False
    return True


class ReaderGate:
    """Holds a source's first message (the simulated robot's physics, the scripted commands) until a node
    named `await_reader` reads every topic it publishes and DDS has matched it (`reader_matched`), or
    `await_reader_timeout_s` has passed; then open for good. Empty `await_reader`: open from the start.

    Why: what a writer publishes before DDS has matched a reader never reaches it, even a reader that
    existed first. The data logger missed the first 0.5-0.7 s of every stream (286 messages per 400 Hz
    topic in the hour soak of issue 19); sources that wait for it lose nothing to it."""

    def __init__(self, node: Node, publishers: Mapping[str, Publisher]) -> None:
        self.node, self.publishers = node, dict(publishers)
        self.reader_node: str = declare(
            node,
            "await_reader",
            "",
            "publish nothing until a node of this name reads every topic this node publishes and DDS has "
            "matched it (the data logger: then it records the first message); empty: start at once",
        )
        self.timeout_s: float = declare(
            node,
            "await_reader_timeout_s",
            10.0,
            "start anyway, with a warning, after waiting this long for await_reader",
            (0.0, 3600.0),
        )
        self.is_open = not self.reader_node
        self._since = time.monotonic()

    def poll(self) -> bool:
        """Whether the source may publish (cheap once open)."""
        if self.is_open:
            return True
        waited = time.monotonic() - self._since
        if reader_matched(self.node, self.publishers, self.reader_node):
            self.node.get_logger().info(
                f"'{self.reader_node}' reads {sorted(self.publishers)}: starting ({waited:.2f} s)"
            )
        elif waited >= self.timeout_s:
            self.node.get_logger().warning(
                f"no matched '{self.reader_node}' on {sorted(self.publishers)} after {self.timeout_s:g} s: "
                "starting without it"
            )
        else:
            return False
        self.is_open = True
        return True

    def wait(self, stop: threading.Event) -> None:
        """Block a source's own thread until the gate opens or `stop` is set."""
        while not (self.poll() or stop.wait(0.01)):
            pass
