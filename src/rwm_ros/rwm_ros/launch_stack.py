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
import time
from pathlib import Path

from rwm_ros.middleware import script_dds_env

LAUNCH = ("rwm_bringup", "anymal.launch.py")
REPORT_MARK = "[stack_probe] report: "
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


def source_env(domain: int | None = None, transport: str = "stack") -> dict[str, str]:
    """This environment with the source checkout of rwm and rwm_ros first on PYTHONPATH (the launched
    nodes then run the code under test), on a private domain if `domain` (`rwm_ros.middleware`)."""
    import rwm  # noqa: PLC0415 - only to locate it
    import rwm_ros  # noqa: PLC0415

    roots = [str(Path(m.__file__).resolve().parent.parent) for m in (rwm, rwm_ros)]
    old = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*roots, *filter(None, old.split(os.pathsep))]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    if domain is not None:
        env.pop("ROS_LOCALHOST_ONLY", None)
        env.update(ROS_DOMAIN_ID=str(domain), **script_dds_env(transport))
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


def start_logger(
    bag_dir: Path, env: dict[str, str], log_path: Path, timeout_s: float = 60.0
) -> subprocess.Popen:
    """The data logger of the launch file (its executable and parameter file) as a process of its own,
    recording into `bag_dir`; returns once it says it is recording, i.e. its subscriptions exist.
    Started before a stack with `record:=false` and stopped after it, it hears every message sent
    once DDS has matched its reader with each new writer."""
    from ament_index_python.packages import get_package_prefix, get_package_share_directory  # noqa: PLC0415

    config = Path(get_package_share_directory("rwm_bringup")) / "config" / "logger.yaml"
    node = Path(get_package_prefix("rwm_ros")) / "lib" / "rwm_ros" / "logger_node"  # what `ros2 run` runs
    cmd = [str(node), "--ros-args", "--params-file", str(config)]
    cmd += ["-r", "__node:=data_logger", "-p", f"directory:={bag_dir}"]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while "recording " not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process_group(proc, timeout_s=5.0)
            raise RuntimeError(f"the data logger did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc


def published_counts(output: str, before_match: bool = False) -> dict[str, int]:
    """Per topic, what the nodes in launch's output say they published (`[name] published: {json}`);
    `before_match`: of that, what they sent before the topic's first reader matched, where they count it."""
    mark = r"published before a reader matched" if before_match else r"published"
    counts: dict[str, int] = {}
    for m in re.finditer(r"\] " + mark + r": (\{.*\})", output):
        counts.update(json.loads(m.group(1)))
    return counts


def bag_message_counts(bag_dir: Path) -> dict[str, int]:
    """Per topic, the messages in every bag under `bag_dir` (their rosbag2 metadata)."""
    import yaml  # noqa: PLC0415

    counts: dict[str, int] = {}
    for meta in bag_dir.glob("*/metadata.yaml"):
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        for topic in info["topics_with_message_count"]:
            name = topic["topic_metadata"]["name"]
            counts[name] = counts.get(name, 0) + int(topic["message_count"])
    return counts


def stack_report(output: str) -> dict:
    """The stack probe's report in launch's output; ValueError if there is none."""
    for line in output.splitlines():
        if REPORT_MARK in line:
            return json.loads(line.split(REPORT_MARK, 1)[1])
    raise ValueError("no stack probe report in the output (report:=true, and did the probe run?)")
