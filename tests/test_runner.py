"""The pip-only launcher: its YAML (arguments, conditions, substitution, overrides), command lines, and a
short run of the whole stack (sim + exploration controller) with its report."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from ros_helpers import PYTHON, domain_id, ros_env
from rwm_ros.runner import command_line, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "anymal.yaml"


def test_default_config_starts_sim_policy_sequence_and_logger() -> None:
    cfg = load_config(CONFIG)
    enabled = {n.name: n for n in cfg.nodes if n.enabled}
    assert set(enabled) == {"anymal_sim", "policy", "command_sequence", "data_logger"}
    assert enabled["policy"].parameters == {"robot": "anymal_d", "policy": "anymal_d_ppo.onnx"}
    sim = enabled["anymal_sim"]
    assert sim.module == "sim_node" and sim.parameters == {"robot": "anymal_d"}
    assert sim.params_files == [ROOT / "config" / "sim.yaml"]
    cmd = command_line(sim, python="py")
    assert cmd[:6] == ["py", "-m", "rwm_ros.sim_node", "--ros-args", "-r", "__node:=anymal_sim"]
    assert cmd[-4:] == ["--params-file", str(ROOT / "config" / "sim.yaml"), "-p", "robot:=anymal_d"]


def test_overrides_conditions_and_namespace() -> None:
    cfg = load_config(
        CONFIG,
        [
            "robot=anymal_c",
            "policy=false",
            "namespace=/r1",
            "anymal_sim.real_time_factor=0.5",
            "anymal_sim.urdf_path=",
        ],
    )
    sim = cfg.nodes[0]
    assert sim.parameters == {"robot": "anymal_c", "real_time_factor": 0.5, "urdf_path": ""}
    enabled = {n.name for n in cfg.nodes if n.enabled}
    assert enabled == {"anymal_sim", "exploration_controller", "data_logger"}  # no policy: exploration drives
    cmd = command_line(sim, python="py")
    assert "__ns:=/r1" in cmd and "real_time_factor:=0.5" in cmd and "urdf_path:=''" in cmd


def test_bad_files_and_overrides_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown argument 'bogus'"):
        load_config(CONFIG, ["bogus=1"])
    with pytest.raises(ValueError, match="unknown nodes"):
        load_config(CONFIG, ["nobody.rate_hz=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent("""
        arguments: {sim: true, robot: anymal_d}
        nodes:
          - {name: a, module: sim_node, enabled: "sim and not policy"}
    """)
    )
    with pytest.raises(ValueError, match="cannot read condition term 'not policy'"):
        load_config(bad)
    bad.write_text("arguments: {}\nnodes:\n  - {name: a, module: sim_node, params_files: [missing.yaml]}\n")
    with pytest.raises(ValueError, match="missing.yaml not found"):
        load_config(bad)
    bad.write_text("arguments: {}\nnodes:\n  - {name: a, module: m, parameters: {x: $(nope)}}\n")
    with pytest.raises(ValueError, match=r"unknown argument \$\(nope\)"):
        load_config(bad)


def test_launch_file_declares_the_runner_arguments() -> None:
    """launch/anymal.launch.py cannot run here (no launch_ros on PyPI): check it stays in step statically."""
    src = (ROOT / "launch" / "anymal.launch.py").read_text()
    tree = ast.parse(src)
    declared = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"
    }
    assert declared == set(load_config(CONFIG).arguments)
    assert set(re.findall(r'executable="(\w+)"', src)) == {n.module for n in load_config(CONFIG).nodes}


@pytest.mark.ros
@pytest.mark.slow
def test_stack_runs_and_reports() -> None:
    """`runner --duration 8 --report --set policy=false`: sim and exploration run, the robot stands."""
    env = ros_env(domain_id(2))
    proc = subprocess.run(
        [PYTHON, "-m", "rwm_ros.runner", "--config", str(CONFIG), "--duration", "8", "--report"]
        + ["--set", "policy=false", "--set", "record=false"],
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "duration 8 s reached" in out and out.count(" stopped ") == 2
    report = json.loads(out.split("[runner] report: ", 1)[1])
    assert report["joint_states"]["rate_hz"] > 380
    assert report["rates_hz"]["joint_command"] == pytest.approx(50, abs=5)
    assert report["base"]["height_m"] == pytest.approx(0.544, abs=0.03)
    assert report["base"]["foot_contacts"] == [1, 1, 1, 1]
    assert int(report["sim"]["commands_accepted"]) > 150


@pytest.mark.ros
@pytest.mark.slow
def test_policy_stack_walks_the_command_sequence(tmp_path: Path) -> None:
    """The main job: sim, policy, command sequence and logger for 21 s; the robot follows /cmd_vel,
    never falls, and the run is recorded."""
    env = ros_env(domain_id(2))
    proc = subprocess.run(
        [PYTHON, "-m", "rwm_ros.runner", "--config", str(CONFIG), "--duration", "21", "--report"]
        + ["--set", f"data_logger.directory={tmp_path}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.count(" stopped ") == 4
    assert len(list(tmp_path.glob("*/*.mcap"))) == 1, "one complete bag"
    report = json.loads(out.split("[runner] report: ", 1)[1])
    assert report["rates_hz"]["joint_command"] == pytest.approx(50, abs=5)
    assert report["sim"]["resets"] == "0", "the robot fell"
    tracking = report["tracking"]
    assert tracking["duration_s"] > 15
    # Typical steady RMSE is 0.05-0.06 m/s. A state stall of ~0.2 s, seen now and then on 2 cores, trips
    # the policy's watchdog; the loop then holds and soft-starts again for 2 s by design, standing while
    # /cmd_vel asks for 0.3-0.6 m/s: 0.23-0.27 measured. Only such a run gets the wider bound.
    stalled = "ticks_watchdog" in report["policy"]
    assert tracking["lin_vel_rmse_steady"] < (0.35 if stalled else 0.25), report["policy"]
    assert tracking["yaw_rate_rmse_steady"] < 0.3
    assert report["base"]["path_length_m"] > 3.0, "it walked"


@pytest.mark.ros
@pytest.mark.slow
def test_logger_records_the_running_stack(tmp_path: Path) -> None:
    """record:=true: the data logger writes one complete bag of the running stack, readable by rosbags
    (our loader) and by mcap."""
    env = ros_env(domain_id(2))
    proc = subprocess.run(
        [PYTHON, "-m", "rwm_ros.runner", "--config", str(CONFIG), "--duration", "8"]
        + ["--set", "policy=false", "--set", "record=true", "--set", f"data_logger.directory={tmp_path}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from mcap.reader import make_reader

    from rwm.data.bag_loader import load_bags

    bags = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(bags) == 1 and not any((tmp_path / ".partial").iterdir()), "one complete bag, none partial"
    trajectories, report_bag = load_bags(bags)
    assert sum(len(t) for t in trajectories) > 50 * 4, report_bag
    with (next(bags[0].glob("*.mcap"))).open("rb") as f:
        topics = {c.topic for c in make_reader(f).get_summary().channels.values()}
    assert {"/anymal/joint_states", "/anymal/imu", "/anymal/odom", "/anymal/joint_command"} <= topics
