"""ROS 2 test helpers: isolation (private domain, loopback) and node processes that always get stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from rwm_ros.middleware import script_dds_env


def domain_id(slot: int) -> int:
    """A ROS domain for this test process: slots 0..3 map to disjoint ranges of 25 ids within 1..100."""
    return 1 + 25 * slot + os.getpid() % 25


def ros_env(domain: int) -> dict[str, str]:
    """Environment for a node process: this source tree importable, private domain, loopback discovery."""
    from rwm_ros.launch_stack import source_env

    return source_env(domain)


@contextmanager
def node_process(cmd: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """Run `cmd` for the duration of the block in a session of its own; then SIGINT, and SIGKILL
    after 5 s, to its whole process group, whatever happens. The group matters for `ros2 launch`:
    its nodes share it, and a launch killed alone (blocked on its full output pipe, say) left them
    running on, orphaned, through the rest of the tests."""
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    # The pipe is always drained (a node blocked on a full pipe cannot shut down); `proc.output`
    # holds what it printed so far.
    proc.output = []
    reader = threading.Thread(target=lambda: proc.output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        yield proc
    finally:
        from rwm_ros.launch_stack import stop_process_group

        stop_process_group(proc, timeout_s=5.0)
        reader.join(timeout=2.0)
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def ros_context(domain: int):
    """An rclpy context of its own on `domain` (no signal handlers: pytest keeps its own)."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    dds = script_dds_env()
    saved = {k: os.environ.get(k) for k in dds}
    os.environ.update(dds)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    try:
        yield ctx
    finally:
        ctx.try_shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def wait_for(spin, condition, timeout_s: float, what: str) -> None:
    """Spin until `condition()` holds; fail naming `what` otherwise."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        spin(0.02)


PYTHON = sys.executable
