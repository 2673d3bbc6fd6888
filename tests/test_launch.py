"""`ros2 launch rwm_bringup anymal.launch.py` for real, over DDS on a private domain: the arguments, clear
refusals, the main job (walks, records, reports), a terminal's Ctrl-C that loses nothing, and a killed
logger whose bag is recovered up to its last second."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader

from ros_helpers import PYTHON, domain_id
from rwm.data.bag_loader import load_bags
from rwm.data.bag_recovery import PARTIAL
from rwm.robot import contract as C
from rwm_ros.launch_stack import (
    bag_message_counts,
    launch_command,
    node_exits,
    published_counts,
    source_env,
    stack_report,
    start_logger,
    stop_process_group,
)
from rwm_ros.topics import LATCHED, TOPIC_ACTION, TOPIC_OBSERVATION

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]


def _launch_arguments() -> list[str]:
    spec = importlib.util.spec_from_file_location("anymal_launch", ROOT / "launch" / "anymal.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [name for name, *_ in module.ARGUMENTS]


def _run(timeout: float, tmpdir: Path | None = None, **arguments) -> subprocess.CompletedProcess:
    env = source_env(domain_id(2))
    if tmpdir is not None:  # where the launch writes its temporary files
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run(
        launch_command(**arguments),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _bags(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _assert_rows_for_nearly_every_command(bag: Path) -> None:
    """The loader makes a row of at least 95 % of the commands recorded once robot states were
    (on a loaded machine, the logger can discover the simulator seconds after the policy), however
    late the messages came."""
    stamps: dict[str, list[int]] = {"/anymal/joint_states": [], "/anymal/joint_command": []}
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.topic in stamps]
        for connection, _, raw in reader.messages(connections=connections):
            stamp = reader.deserialize(raw, connection.msgtype).header.stamp
            stamps[connection.topic].append(stamp.sec * 10**9 + stamp.nanosec)
    first_state = min(stamps["/anymal/joint_states"])
    commands = sum(t >= first_state for t in stamps["/anymal/joint_command"])
    trajectories, report = load_bags([bag])
    assert sum(len(t) for t in trajectories) >= 0.95 * commands > 0, str(report)


def _assert_one_complete_bag(directory: Path, min_commands: int) -> Path:
    """One bag with its metadata, nothing partial, readable by rosbags (the loader) and by mcap."""
    (bag,) = _bags(directory)
    assert (bag / "metadata.yaml").is_file()
    assert not [p for p in (directory / PARTIAL).iterdir() if p.is_dir()], "nothing left partial"
    _assert_rows_for_nearly_every_command(bag)
    with next(bag.glob("*.mcap")).open("rb") as f:
        reader = make_reader(f)
        topics = {c.topic for c in reader.get_summary().channels.values()}
        assert sum(1 for _ in reader.iter_messages(topics=["/anymal/joint_command"])) > min_commands
    assert {"/anymal/joint_states", "/anymal/imu", "/anymal/odom", "/anymal/joint_command"} <= topics
    return bag


def test_show_args_lists_every_argument() -> None:
    proc = subprocess.run(
        [*launch_command(), "--show-args"], env=source_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    shown = re.findall(r"^\s+'(\w+)':", proc.stdout, re.MULTILINE)
    assert shown == _launch_arguments() and "robot" in shown and "duration" in shown


def test_ros2_pkg_finds_the_stack_and_what_launch_ros_needs() -> None:
    cmd = [launch_command()[0], "pkg", "list"]
    proc = subprocess.run(cmd, env=source_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert {"rwm", "rwm_ros", "rwm_bringup", "composition_interfaces"} <= set(proc.stdout.split())


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("robot:=anymal_x", "Valid options are: ['anymal_d', 'anymal_c']"),
        ("worldmodel:=true", "unknown argument(s) ['worldmodel']"),
        ("duration:=soon", "duration:=soon is not a number of seconds"),
        ("variant:=heavy_robot", "unknown robot variant 'heavy_robot'"),
        ("robot:=anymal_c", "robot:=anymal_c has no policy 'anymal_c_ppo.onnx'"),
        ("policy_file:=" + str(ROOT / "models" / "anymal_d_rwm.onnx"), "not an RWM policy export"),
    ],
)
def test_bad_arguments_fail_before_anything_starts(argument: str, message: str) -> None:
    name, _, value = argument.partition(":=")
    proc = _run(60, **{name: value})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in out, out
    assert "process started" not in out or "not an RWM policy" in message


def test_a_model_for_another_robot_is_refused(tmp_path: Path) -> None:
    """A policy made for ANYmal D on ANYmal C: the policy node refuses it; the stack stops with an error."""
    proc = _run(60, robot="anymal_c", policy_file=ROOT / "models" / "anymal_d_ppo.onnx", record=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "was trained for anymal_d, not anymal_c" in out, out


@pytest.mark.slow
def test_exploration_stack_stands_and_reports(tmp_path: Path) -> None:
    """policy:=false: sim and the exploration controller; the robot stands; the report ends the run,
    and the launch's parameter files go with it."""
    # without the state publisher: this run times the simulator's stream from start-up, and one node
    # less starting beside it keeps a loaded machine's start-up slips out of its 8 s
    proc = _run(60, tmp_path, policy=False, record=False, duration=8, report=True, state_publisher=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert not list(tmp_path.glob("rwm_*")), "the launch left its parameter files"
    exits = node_exits(out)
    expected = {"sim_node-1", "exploration_node-2", "stack_probe-3"}
    assert set(exits) == expected and not any(exits.values()), exits
    report = stack_report(out)
    assert report["joint_states"]["stamp_interval_mean_ms"] == pytest.approx(2.5, abs=0.01)
    assert report["base"]["height_m"] == pytest.approx(0.544, abs=0.03)
    assert report["base"]["foot_contacts"] == [1, 1, 1, 1]
    assert int(report["sim"]["commands_accepted"]) > 150
    assert set(report["nodes"]) == {"anymal_sim", "exploration_controller"}


@pytest.mark.slow
def test_a_logger_heard_from_start_to_end_loses_nothing_once_matched(tmp_path: Path) -> None:
    """The data logger started before the stack (`record:=false`) and stopped after it. What a
    publisher sent before DDS matched its writer with the logger's reader never reaches the bag (up to
    3.2 s under CI's load, measured); from then on nothing is lost: no 400 Hz tick is missing between the
    bag's first and last joint states, and the policy's observations and actions, which start after
    the soft start, are all there from the first one sent to a matched reader (the policy node counts
    those sent before) to the last one sent at shutdown."""
    logger = start_logger(tmp_path / "bags", source_env(domain_id(2)), tmp_path / "logger.log")
    try:
        proc = _run(90, duration=12, record=False)
        time.sleep(2.0)  # what the stack sent last is still on its way
    finally:
        stop_process_group(logger, timeout_s=30.0)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert logger.returncode == 0, (tmp_path / "logger.log").read_text()[-3000:]
    published = published_counts(proc.stdout + proc.stderr)
    (bag,) = _bags(tmp_path / "bags")
    recorded = bag_message_counts(tmp_path / "bags")
    for topic, sent in published.items():
        if topic not in LATCHED:
            assert 0 < recorded.get(topic, 0) <= sent, topic
    unmatched = published_counts(proc.stdout + proc.stderr, before_match=True)
    for topic in ("/rwm/policy/observation", "/rwm/policy/action"):
        assert recorded[topic] == published[topic] - unmatched[topic] > 150, (topic, unmatched[topic])
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == C.TOPIC_JOINT_STATES]
        stamps = [
            (m.header.stamp.sec, m.header.stamp.nanosec)
            for m in (reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(conns))
        ]
    t_ns = [sec * 10**9 + ns for sec, ns in stamps]
    ticks_between = [round((b - a) / (C.PHYSICS_DT * 1e9)) for a, b in zip(t_ns, t_ns[1:], strict=False)]
    assert len(t_ns) > 2000 and set(ticks_between) == {1}


@pytest.mark.slow
def test_on_simulated_time_the_robot_walks_and_the_bag_keeps_that_clock(tmp_path: Path) -> None:
    """use_sim_time:=true: the simulated robot publishes /clock and stamps with simulated time, every
    other node runs on it; the robot walks the sequence and the bag's stamps and log times are
    simulated seconds since its start."""
    proc = _run(90, duration=12, report=True, use_sim_time=True, bag_dir=tmp_path / "bags")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    exits = node_exits(out)
    assert exits and not any(exits.values()), exits
    report = stack_report(out)
    assert report["base"]["path_length_m"] > 1.0 and int(report["sim"]["resets"]) == 0, report["base"]
    assert "latency_p99_ms" not in report["joint_states"], "no latency from simulated-time stamps"
    (bag,) = _bags(tmp_path / "bags")
    _assert_rows_for_nearly_every_command(bag)
    with next(bag.glob("*.mcap")).open("rb") as f:
        stats = make_reader(f).get_summary().statistics
    assert stats.message_end_time < 60e9, "log times are simulated seconds, not the wall clock"


def _assert_tf_matches_the_robot(bag: Path) -> None:
    """The bag draws the robot: its description and static transforms are there, and the TF tree read
    back puts every foot where the joint states say (forward kinematics, an independent model) and the
    base where the odometry says, at the same stamps."""
    import numpy as np
    import pinocchio as pin
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from rwm.robot import contract as C
    from rwm.robot.kinematics import AnymalKinematics

    store = get_typestore(Stores.ROS2_KILTED)
    parents: dict[str, tuple[str, pin.SE3]] = {}
    joints, odom, legs, base = {}, {}, [], []
    with Reader(bag) as reader:
        for conn, _, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == "/robot_description":
                assert "<robot" in msg.data
            elif conn.topic in ("/tf", "/tf_static"):
                for t in msg.transforms:
                    tr, q = t.transform.translation, t.transform.rotation
                    pose = pin.XYZQUATToSE3(np.array([tr.x, tr.y, tr.z, q.x, q.y, q.z, q.w]))
                    stamp = t.header.stamp.sec * 10**9 + t.header.stamp.nanosec
                    if conn.topic == "/tf_static":
                        parents[t.child_frame_id] = (t.header.frame_id, pose)
                    elif t.child_frame_id == C.BASE_FRAME:
                        base.append((stamp, pose))
                    else:
                        legs.append((stamp, t.child_frame_id, t.header.frame_id, pose))
            elif conn.topic in (C.TOPIC_JOINT_STATES, C.TOPIC_ODOM):
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                if conn.topic == C.TOPIC_ODOM:
                    p, q = msg.pose.pose.position, msg.pose.pose.orientation
                    odom[stamp] = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
                else:
                    order = [msg.name.index(n) for n in C.JOINT_NAMES]
                    joints[stamp] = np.asarray(msg.position)[order]
    assert parents and len(base) > 100 and len(legs) > 100 * 12
    stamp = legs[len(legs) // 2][0]
    tree = dict(parents)
    tree.update({child: (parent, pose) for s, child, parent, pose in legs if s == stamp})
    kinematics = AnymalKinematics()
    feet = kinematics.foot_positions(joints[stamp])
    for leg, expected in zip(("LF", "RF", "LH", "RH"), feet, strict=True):
        frame, pose = f"{leg}_FOOT", pin.SE3.Identity()
        while frame != C.BASE_FRAME:
            parent, link = tree[frame]
            pose, frame = link * pose, parent
        np.testing.assert_allclose(pose.translation, expected, atol=1e-5, err_msg=f"{leg} foot")
    # a /tf at the bag's very start or end may answer odometry sent before the logger matched it
    matched = [(s, pose) for s, pose in base if s in odom]
    assert len(matched) >= 0.95 * len(base), (
        f"{len(matched)} of {len(base)} /tf base poses have their odometry"
    )
    for s, pose in matched[::50]:
        np.testing.assert_allclose(pin.SE3ToXYZQUAT(pose), odom[s], atol=1e-6)


@pytest.mark.slow
def test_main_job_walks_the_command_sequence_and_records(tmp_path: Path) -> None:
    """The default stack (sim, policy, command sequence, logger) for 21 s: the robot follows /cmd_vel,
    never falls, every node exits 0 and the run is one complete bag. The robot, the policy and the
    command sequence wait for the logger (`await_reader`): the bag holds every message they published,
    from the first."""
    proc = _run(90, duration=21, report=True, bag_dir=tmp_path / "bags", report_dir=tmp_path / "report")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    exits = node_exits(out)
    assert len(exits) == 6 and not any(exits.values()), exits
    bag = _assert_one_complete_bag(tmp_path / "bags", 50 * 15)
    published, recorded = published_counts(out), bag_message_counts(tmp_path / "bags")
    waited = (C.TOPIC_JOINT_STATES, C.TOPIC_IMU, C.TOPIC_ODOM, C.TOPIC_CONTACTS, C.TOPIC_CMD_VEL)
    waited += (C.TOPIC_JOINT_COMMAND, TOPIC_OBSERVATION, TOPIC_ACTION)
    assert {t: recorded[t] for t in waited} == {t: published[t] for t in waited}
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["tracking"] == stack_report(out)["tracking"], "the file is the printed report"
    for png in ("report_velocity.png", "report_latency.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"
    _assert_tf_matches_the_robot(bag)
    report = stack_report(out)
    assert report["sim"]["resets"] == "0", "the robot fell"
    tracking = report["tracking"]
    assert tracking["duration_s"] > 15
    # It follows the commands (0.3-0.6 m/s; standing still would give about 0.45). Typical steady RMSE
    # is 0.05-0.06 m/s; bench/bench_policy_stack.py measures it, with the stack's timing.
    assert tracking["lin_vel_rmse_steady"] < 0.35, report["policy"]
    assert tracking["yaw_rate_rmse_steady"] < 0.3
    assert report["base"]["path_length_m"] > 3.0, "it walked"
    assert set(report["nodes"]) == {
        "anymal_sim",
        "policy",
        "command_sequence",
        "data_logger",
        "state_publisher",
    }


def _start(tmp_path: Path, **arguments) -> subprocess.Popen:
    """The stack in a session of its own (a terminal's process group), output into a file."""
    log = open(tmp_path / "launch.log", "w")  # noqa: SIM115 - closed by the child's end
    return subprocess.Popen(
        launch_command(bag_dir=tmp_path / "bags", **arguments),
        env=source_env(domain_id(2)),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_line(tmp_path: Path, pattern: str, timeout: float) -> re.Match:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = re.search(pattern, (tmp_path / "launch.log").read_text())
        if m:
            return m
        time.sleep(0.1)
    pytest.fail(
        f"no {pattern!r} in the launch output after {timeout} s:\n" + (tmp_path / "launch.log").read_text()
    )


def _wait_until_recording_commands(tmp_path: Path) -> None:
    """The logger records and the policy commands: a loaded machine can take seconds between the two."""
    _wait_for_line(tmp_path, r"\[data_logger\]: recording", 60)
    _wait_for_line(tmp_path, r"\[policy\]: mode waiting -> soft_start", 60)


@pytest.mark.slow
def test_terminal_ctrl_c_ends_every_node_cleanly_and_keeps_the_recording(tmp_path: Path) -> None:
    """Ctrl-C in a terminal: SIGINT to the whole process group, and launch forwards a second one to each
    node. Every node exits 0 within 5 s and the bag is complete."""
    launch = _start(tmp_path)
    _wait_until_recording_commands(tmp_path)
    time.sleep(6.0)
    os.killpg(launch.pid, signal.SIGINT)
    assert launch.wait(timeout=20) == 0  # how fast each node stops: bench/bench_shutdown.py
    out = (tmp_path / "launch.log").read_text()
    exits = node_exits(out)
    assert len(exits) == 5 and not any(exits.values()), out[-3000:]
    _assert_one_complete_bag(tmp_path / "bags", 50 * 4)


@pytest.mark.slow
def test_sigkilled_logger_loses_at_most_1_5_s_after_recovery(tmp_path: Path) -> None:
    """SIGKILL of the logger after 10 s of recording: the stack stops with an error, and
    `rwm bag-recover` gets back the bag up to at most 1.5 s before the kill."""
    launch = _start(tmp_path)
    pid = int(
        _wait_for_line(tmp_path, r"\[logger_node-\d+\]: process started with pid \[(\d+)\]", 60).group(1)
    )
    _wait_until_recording_commands(tmp_path)
    time.sleep(10.0)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    assert launch.wait(timeout=20) != 0, "a node that dies is an error"
    (partial,) = [p for p in (tmp_path / "bags" / PARTIAL).iterdir() if p.is_dir()]
    recovered = tmp_path / "bags" / partial.name
    proc = subprocess.run(
        [PYTHON, "-m", "rwm.cli", "bag-recover", str(partial), "--out", str(recovered)],
        env=source_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with next(recovered.glob("*.mcap")).open("rb") as f:
        stats = make_reader(f).get_summary().statistics
    first, last = stats.message_start_time / 1e9, stats.message_end_time / 1e9
    assert killed_at - last <= 1.5, f"lost {killed_at - last:.2f} s"
    assert last - first >= 8.5, f"recovered {last - first:.2f} s of about 10"
    _assert_rows_for_nearly_every_command(recovered)
    print(json.dumps({"recovered_s": last - first, "lost_s": killed_at - last}))


def test_params_file_overrides_what_the_arguments_set(tmp_path: Path) -> None:
    """`params_file` comes last: it beats the config files and the parameters the launch arguments
    give (here the simulator's variant, which `variant:=` sets): a variant that does not exist makes
    the simulator refuse to start."""
    params = tmp_path / "params.yaml"
    params.write_text("/**/anymal_sim:\n  ros__parameters:\n    variant: no_such_robot\n")
    launch_tmp = tmp_path / "launch_tmp"
    launch_tmp.mkdir()
    proc = _run(
        60, launch_tmp, policy=False, record=False, state_publisher=False, duration=5, params_file=params
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "no_such_robot" in out, out[-3000:]
    assert not list(launch_tmp.glob("rwm_*")), "a failed launch left its parameter files"
