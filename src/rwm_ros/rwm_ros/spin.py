"""The body of every node's `main()`: init, construct, spin until a signal or shutdown, clean up, exit 0.

Signals: the spin ends on the signal itself, counted by the handlers installed here (it spins in steps
of `SIGNAL_CHECK_S`), or on the context's shutdown, which rclpy's own handler does on SIGINT or SIGTERM. Under
overload (simulated time with /clock at 400 Hz), rclpy's handler alone left a node waiting in its
executor after SIGINT in 2 of 5 runs, until launch escalated to SIGTERM. Under
`ros2 launch` a terminal's Ctrl-C arrives twice (the terminal signals the whole process group, then
launch forwards SIGINT to each node), often while the node is closing its files. Python's default
SIGINT handler would raise KeyboardInterrupt wherever that second signal lands (a thread join, the
bag's final write) and lose the recording; the handlers installed here only count signals, so the
cleanup always runs to its end. Launch escalates to SIGTERM and SIGKILL if a node hangs.

A node with a `linger` step (the data logger) keeps its context through the signal: rclpy's handlers
are left out, and `linger(node)` runs after the spin with the node still receiving (the logger waits
there for its sources, which stop on the same signal, to send their last).
"""

from __future__ import annotations

import contextlib
import faulthandler
import signal
import time
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

N = TypeVar("N", bound=Node)

SIGNAL_CHECK_S = 0.5
"""The longest the spin waits before it looks for a counted signal (each wake-up of an idle node's
executor costs 0.7 ms of CPU here: 0.8 % of a core per node at 0.1 s)."""

EXIT_STACK_DUMP_S = 4.0
"""A process still alive this long after its cleanup began prints every thread's stack to stderr (and
goes on): under launch, which escalates to SIGTERM 5 s after its SIGINT, a node's rare hang at its end
(docs/startup/README.md, 12-05) then shows where it is. The interpreter's exit cancels the dump; a
node only slow to finish (a logger writing a long backlog) prints it and finishes."""

signals_received: list[int] = []
"""Signals this process got: they end the spin."""


def _count_signal(signum: int, _frame) -> None:
    signals_received.append(signum)


def install_shutdown_signal_handlers() -> None:
    """SIGINT and SIGTERM never raise in Python code: they are counted, and the spin ends on them."""
    signal.signal(signal.SIGINT, _count_signal)
    signal.signal(signal.SIGTERM, _count_signal)


def _spin_until_signal(node: Node) -> None:
    """Spin until a signal arrives or the context goes down (a failed worker shuts it down)."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not signals_received and node.context.ok():
            executor.spin_once(timeout_sec=SIGNAL_CHECK_S)
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)


def _await_shutdown(context, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while context.ok() and time.monotonic() < deadline:
        time.sleep(0.005)


def spin_node(
    factory: Callable[[], N], args: list[str] | None = None, linger: Callable[[N], None] | None = None
) -> N | None:
    """Run the node that `factory` builds; returns it (destroyed) so callers can read its final state.
    `linger`: run after the signal, before the node is destroyed, with its context still up.
    A node whose worker thread failed (`rwm_ros.node_base.WorkerThread`) ends the process with code 1."""
    install_shutdown_signal_handlers()  # before rclpy.init, whose handlers chain to these
    if linger is None:
        rclpy.init(args=args)
    else:  # the context outlives the signal: the spin ends on it here
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = factory()
        if signals_received:  # signalled while starting, before rclpy's handlers were in: stop now
            pass
        else:
            _spin_until_signal(node)
            if linger is not None:
                linger(node)
            else:  # rclpy's handler shuts the context down on the same signal: not while we destroy
                _await_shutdown(node.context, 0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # rclpy can fail to take a message while a signal shuts the context down under load; that is a
        # shutdown, not a failure. Anything else while the context is still up is re-raised.
        if rclpy.ok(context=node.context if node is not None else None):
            raise
    finally:
        with contextlib.suppress(RuntimeError, ValueError, OSError):  # no usable stderr: no dump
            faulthandler.dump_traceback_later(EXIT_STACK_DUMP_S)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        # Python restores the default (fatal) SIGINT action while the interpreter finalizes, unless the
        # signal is ignored: a late forwarded Ctrl-C would otherwise end a clean exit with code -2.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    failed = [w for w in getattr(node, "workers", ()) if w.failure is not None]
    if failed:
        raise SystemExit(f"{failed[0].name} failed: {type(failed[0].failure).__name__}: {failed[0].failure}")
    return node
