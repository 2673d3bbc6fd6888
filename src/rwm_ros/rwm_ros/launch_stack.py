"""Start the stack through `ros2 launch rwm_bringup anymal.launch.py` from a script, and read its output.

The tests and the benches use this, so that what they measure is what users start. The stack itself
is defined once, in the launch file; this only builds the command line and environment and reads what
launch prints: each node's exit, and the stack probe's report.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

LAUNCH = ("rwm_bringup", "anymal.launch.py")
REPORT_MARK = "[stack_probe] report: "
LOCAL_DISCOVERY = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": ""}
"""DDS discovery kept on this host: a stack started from a script and whoever listens to it in the
script's own process (set in `os.environ` before `rclpy.init`) must agree on it, or they never meet."""
_EXIT = re.compile(
    r"\[INFO\] \[(?P<clean>[\w-]+)\]: process has finished cleanly \[pid \d+\]"
    r"|\[ERROR\] \[(?P<died>[\w-]+)\]: process has died \[pid \d+, exit code (?P<code>-?\d+)"
)


def launch_command(**arguments) -> list[str]:
    """`ros2 launch rwm_bringup anymal.launch.py name:=value ...` (booleans as true/false)."""
    beside = Path(sys.executable).with_name("ros2")  # this venv's, which runs with this rclpy
    ros2 = str(beside) if beside.is_file() else shutil.which("ros2")
    if ros2 is None:
        raise FileNotFoundError("ros2 not on PATH: run `make setup`, then `source install/setup.bash`")
    words = [ros2, "launch", *LAUNCH]
    for name, value in arguments.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        words.append(f"{name}:={text}")
    return words


def source_env(domain: int | None = None) -> dict[str, str]:
    """This environment with the source checkout of rwm and rwm_ros first on PYTHONPATH (the launched
    nodes then run the code under test), on a private domain and loopback discovery if `domain`."""
    import rwm  # noqa: PLC0415 - only to locate it
    import rwm_ros  # noqa: PLC0415

    roots = [str(Path(m.__file__).resolve().parent.parent) for m in (rwm, rwm_ros)]
    old = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*roots, *filter(None, old.split(os.pathsep))]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    if domain is not None:
        env.pop("ROS_LOCALHOST_ONLY", None)
        env.update(ROS_DOMAIN_ID=str(domain), **LOCAL_DISCOVERY)
    return env


def stop_process_group(proc: subprocess.Popen, timeout_s: float) -> None:
    """Stop a launch started with `start_new_session=True` as a terminal's Ctrl-C would: SIGINT to its
    process group, SIGKILL after `timeout_s`; then SIGKILL to whatever of the group outlived it (a
    launch killed alone leaves its nodes running, orphaned)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def node_exits(output: str) -> dict[str, int]:
    """Exit code of each process launch reported ending ('sim_node-1': 0, ...)."""
    exits = {}
    for m in _EXIT.finditer(output):
        if m.group("clean"):
            exits[m.group("clean")] = 0
        else:
            exits[m.group("died")] = int(m.group("code"))
    return exits


def stack_report(output: str) -> dict:
    """The stack probe's report in launch's output; ValueError if there is none."""
    for line in output.splitlines():
        if REPORT_MARK in line:
            return json.loads(line.split(REPORT_MARK, 1)[1])
    raise ValueError("no stack probe report in the output (report:=true, and did the probe run?)")
