"""Deployment of the world model: refinement from bags (validated, versioned, atomic), the live health
monitor, and the trainer and world-model nodes over real DDS (a new version is announced and loaded)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_helpers import PYTHON, domain_id, node_process, ros_context, ros_env, wait_for
from rwm.control.world_model_monitor import MonitorConfig, WorldModelMonitor, validate_world_model
from rwm.data.array_dataset import ArrayDataset
from rwm.data.collect import collect_bag, collect_dataset
from rwm.evaluation.heldout import heldout_error, heldout_tensors
from rwm.export.world_model_onnx import OnnxWorldModel, export_world_model
from rwm.models.factory import build_world_model, load_checkpoint, save_checkpoint
from rwm.robot import contract as C
from rwm.runners.refinement import RefineConfig, refine_from_bags
from rwm_ros.launch_stack import launch_command

TINY = {"hidden_size": 32, "head_hidden": 16}
FAST = RefineConfig(
    iterations=30,
    batch_size=16,
    learning_rate=3e-3,
    history=8,
    horizon=3,
    heldout_length=90,
    tail_forecast=10,
    threads=1,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny RWM (checkpoint + ONNX), two short bags, one corrupt bag, a small held-out set."""
    root = tmp_path_factory.mktemp("wm")
    held = root / "heldout"
    collect_dataset(held, steps=100, num_envs=3, controller="perturb", seed=5, num_threads=1)
    torch.manual_seed(0)
    model = build_world_model("rwm", TINY)
    from rwm.data.array_dataset import ArrayDataset

    data = ArrayDataset(held)
    first = heldout_tensors(data, 71)  # normalized on each robot's first 70 steps, as FAST was sized with
    model.normalizer.fit(first["state"].reshape(-1, C.STATE_DIM), first["action"].reshape(-1, C.ACTION_DIM))
    save_checkpoint(model, root / "tiny.pt", train_config={"history": 8, "horizon": 3})
    export_world_model(model, root / "tiny.onnx", {"source": "test"}, [heldout_tensors(data, 90)])
    replay = root / "replay"
    replay.mkdir()
    for i in range(2):
        collect_bag(replay / f"bag_{i}", controller="perturb", duration_s=3.0, seed=i)
    corrupt = replay / "bag_corrupt"
    shutil.copytree(replay / "bag_0", corrupt)
    mcap = next(corrupt.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 3])
    return root


def test_refine_accepts_a_validated_version_and_skips_the_corrupt_bag(world, tmp_path):
    bags = sorted((world / "replay").iterdir())
    cfg = RefineConfig(**{**FAST.__dict__, "tolerance": 100.0, "validate_every": 10})
    result = refine_from_bags(world / "tiny.pt", bags, world / "heldout", tmp_path, cfg)
    assert result.accepted, result.reason
    assert [v[0] for v in result.validations] == [10, 20, 30]
    kept = next(v for v in result.validations if v[0] == result.iteration)
    assert kept[2] == min(v[2] for v in result.validations), "every iterate passes (b): the best on (a)"
    saved, _ = load_checkpoint(result.checkpoint)
    held = heldout_tensors(ArrayDataset(world / "heldout"), FAST.heldout_length)
    assert heldout_error(saved, held, FAST.history)["mean"] == pytest.approx(kept[1], rel=1e-5), "it is saved"
    assert result.version == 1 and Path(result.onnx).is_file() and Path(result.checkpoint).is_file()
    assert result.new_error_after < result.new_error_before, "it learned the new bags (their held-out tail)"
    assert "bag_corrupt" in result.load_report and result.rows >= 2 * 110, "80 % of each bag trains"
    assert result.parity <= 1e-4 and np.isfinite(result.error_after)
    assert not any(p.name.startswith(".refine-") for p in tmp_path.iterdir()), "no temporary left"
    again = refine_from_bags(result.checkpoint, bags[:1], world / "heldout", tmp_path, cfg)
    assert again.version == 2


def test_refine_saves_the_best_iterate_not_the_last(world, tmp_path, monkeypatch):
    """The tail error is scripted lowest at iteration 20 of 30: the version written is that iterate."""
    import rwm.runners.refinement as refinement

    calls, real = [], refinement.heldout_error

    def scripted(model, tensors, history):  # before: (shipped, tail); then per validation the same
        out = dict(real(model, tensors, history))
        calls.append(out["mean"])
        if len(calls) == 6:  # the tail at the second validation (iteration 20)
            out["mean"] *= 0.01
        return out

    monkeypatch.setattr(refinement, "heldout_error", scripted)
    bags = sorted(p for p in (world / "replay").iterdir() if p.name != "bag_corrupt")
    cfg = RefineConfig(**{**FAST.__dict__, "tolerance": 100.0, "validate_every": 10})
    result = refine_from_bags(world / "tiny.pt", bags, world / "heldout", tmp_path, cfg)
    assert result.accepted and result.iteration == 20, (result.reason, result.validations)
    shipped = [v[1] for v in result.validations]
    assert len(set(shipped)) == 3, "the iterates differ on the shipped set"
    saved, _ = load_checkpoint(result.checkpoint)
    held = heldout_tensors(ArrayDataset(world / "heldout"), FAST.heldout_length)
    assert real(saved, held, FAST.history)["mean"] == pytest.approx(shipped[1], rel=1e-5)


def test_refine_rejects_a_version_that_is_worse_on_heldout_data(world, tmp_path):
    cfg = RefineConfig(**{**FAST.__dict__, "tolerance": -1.0})  # nothing can be that good
    result = refine_from_bags(
        world / "tiny.pt", sorted((world / "replay").iterdir()), world / "heldout", tmp_path, cfg
    )
    assert not result.accepted and "forgot" in result.reason, result.reason
    assert not list(tmp_path.glob("rwm_v*")), "a rejected version leaves no file"


def test_refinement_mixes_in_the_pretraining_data(world, tmp_path):
    """With the pretraining data as anchor, half of every batch comes from it (recorded in the result)."""
    cfg = RefineConfig(**{**FAST.__dict__, "tolerance": 100.0})
    bags = sorted(p for p in (world / "replay").iterdir() if p.name != "bag_corrupt")
    result = refine_from_bags(
        world / "tiny.pt", bags, world / "heldout", tmp_path, cfg, pretrain=world / "heldout"
    )
    assert result.accepted and result.pretrain_rows == len(ArrayDataset(world / "heldout")), result.reason


def test_trainer_never_retries_a_failed_bag_until_it_changes(world, tmp_path):
    pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from rwm_ros.trainer_node import TrainerNode

    replay = tmp_path / "replay"
    shutil.copytree(world / "replay" / "bag_corrupt", replay / "bag_corrupt")
    overrides = {
        "replay_buffer": str(replay),
        "model_dir": str(tmp_path / "versions"),
        "checkpoint": str(world / "tiny.pt"),
        "heldout": str(world / "heldout"),
        "pretrain": "",
        "scan_interval_s": 3600.0,
    }
    with ros_context(domain_id(0)) as ctx:
        node = TrainerNode(
            context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
        )
        try:
            assert node.new_bags() == [replay / "bag_corrupt"]
            node._train(node.new_bags())  # it cannot be read: nothing to train on, both stages reject
            assert [(r["stage"], r["accepted"]) for r in node.results] == [
                ("world_model", False),
                ("policy", False),
            ]
            assert "no trajectory" in node.results[-1]["reason"]
            assert node.new_bags() == [], "not retried unchanged"
            saved = json.loads((tmp_path / "versions" / "trainer_state.json").read_text())
            assert [r["stage"] for r in saved["results"]] == ["world_model", "policy"], "both on record"
            again = TrainerNode(
                context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
            )
            assert again.new_bags() == [], "nor after a restart"
            again.destroy_node()
            mcap = next((replay / "bag_corrupt").glob("*.mcap"))
            mcap.write_bytes(mcap.read_bytes() + b"more")  # the bag changed: tried again
            assert node.new_bags() == [replay / "bag_corrupt"]
        finally:
            node.destroy_node()


def test_monitor_tracks_the_robot_and_flags_a_persistent_error(world):
    model = OnnxWorldModel(world / "tiny.onnx")
    rule = model.metadata["anomaly"]
    monitor = WorldModelMonitor(model, MonitorConfig(anomaly_steps=3, warmup_steps=2))
    assert monitor.threshold == rule["threshold"], "the threshold calibrated into the model"
    state = np.asarray(model.metadata["state_mean"]) + np.asarray(
        model.metadata["state_std"]
    )  # 1 in normalized units
    for _ in range(3 + rule["window_steps"]):
        pred = monitor.step(state, C.DEFAULT_JOINT_POS)
    assert pred.shape == (45,) and np.isfinite(monitor.error) and not monitor.anomaly
    assert monitor.windowed_error < monitor.threshold
    jump = 50 * np.asarray(model.metadata["state_std"])
    raised = []
    for k in range(rule["window_steps"]):  # states that jump far from every prediction, step after step
        monitor.step(state + (-1) ** k * jump, C.DEFAULT_JOINT_POS)
        raised.append(monitor.anomaly)
    first = raised.index(True)
    assert not any(raised[:first]) and all(raised[first:]), "raised once the window statistic stays above"
    assert first >= 2, "held for anomaly_steps steps above the threshold first"
    assert monitor.windowed_error > monitor.threshold
    for _ in range(rule["window_steps"] + 5):
        monitor.step(state, C.DEFAULT_JOINT_POS)
    assert not monitor.anomaly, "cleared once the predictions match again"
    windowed, error = monitor.windowed_error, monitor.error
    monitor.skip()  # a step without a usable state: the next one has nothing to be scored against
    monitor.step(state + jump, C.DEFAULT_JOINT_POS)
    assert monitor.windowed_error == windowed and monitor.error == error
    assert monitor.steps == 3 + 3 * rule["window_steps"] + 6
    monitor.step(state, C.DEFAULT_JOINT_POS)
    assert monitor.error != error, "scored again from the step after"


def test_monitor_scores_recorded_bags_as_the_node_runs_over_them(world):
    """`rwm eval-monitor --bags`: a recording split into pieces is one run; healthy data stays below the
    threshold, states that jump away from every prediction raise the alarm."""
    from dataclasses import replace

    from rwm.data.bag_loader import load_bags
    from rwm.evaluation.monitor_eval import monitor_on_bags, recorded_runs

    model = OnnxWorldModel(world / "tiny.onnx")
    trajectories, report = load_bags(sorted((world / "replay").glob("bag_[0-9]")))
    assert report.ok and len(trajectories) == 2
    first = trajectories[0]
    half = len(first) // 2
    fields = ("time", "state", "action", "contacts", "command")
    bounds = ((0, half), (half + 10, len(first)))  # 10 rows left out: a gap of 0.2 s
    pieces = [replace(first, **{k: getattr(first, k)[a:b] for k in fields}) for a, b in bounds]
    assert len(recorded_runs(pieces)) == 1, "pieces 0.2 s apart are one run of the monitor"
    healthy = monitor_on_bags(model, pieces, warmup_steps=5)
    assert healthy["runs"] == 1 and healthy["rows"] == len(first) - 10
    # the tiny model's threshold comes from 3 robots of 90 steps: its healthy windows reach it, but no alarm
    assert healthy["alarms_raised"] == 0 and healthy["windowed_error_max"] < 1.5 * healthy["threshold"]
    jump = 50 * np.asarray(model.metadata["state_std"], dtype=np.float32)
    wrong = replace(first, state=first.state + jump * (-1) ** np.arange(len(first))[:, None])
    broken = monitor_on_bags(model, [wrong], warmup_steps=5)
    assert broken["alarms_raised"] >= 1 and broken["windowed_error_max"] > broken["threshold"]


def test_a_model_without_a_calibrated_threshold_needs_one_set(world, tmp_path):
    import json

    import onnx

    graph = onnx.load(world / "tiny.onnx")
    for p in graph.metadata_props:
        if p.key == "rwm_world_model":
            meta = json.loads(p.value)
            meta.pop("anomaly")
            p.value = json.dumps(meta)
    onnx.save(graph, tmp_path / "old.onnx")
    old = OnnxWorldModel(tmp_path / "old.onnx")
    with pytest.raises(ValueError, match="anomaly threshold"):
        WorldModelMonitor(old)
    assert WorldModelMonitor(old, MonitorConfig(error_threshold=0.3)).threshold == 0.3


def test_a_threshold_calibrated_on_another_error_is_refused(world, tmp_path):
    import json

    import onnx

    graph = onnx.load(world / "tiny.onnx")
    for p in graph.metadata_props:
        if p.key == "rwm_world_model":
            meta = json.loads(p.value)
            meta["anomaly"].pop("error")  # as exported before the monitor's error changed
            p.value = json.dumps(meta)
    onnx.save(graph, tmp_path / "old.onnx")
    with pytest.raises(ValueError, match="another one-step error"):
        WorldModelMonitor(OnnxWorldModel(tmp_path / "old.onnx"))


def test_validation_refuses_a_model_without_normalization(world, tmp_path):
    import onnx

    graph = onnx.load(world / "tiny.onnx")
    for p in graph.metadata_props:
        if p.key == "rwm_world_model":
            p.value = '{"hidden_layers": 2, "hidden_size": 32}'
    onnx.save(graph, tmp_path / "old.onnx")
    with pytest.raises(ValueError, match="state_mean"):
        validate_world_model(OnnxWorldModel(tmp_path / "old.onnx"))


def _monitor_listener(ctx, name: str):
    """A node on `ctx` that keeps the world-model node's latest diagnostics: (node, values, spin)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node(name, context=ctx)
    diag: dict[str, str] = {}

    def on_diag(msg) -> None:
        for s in msg.status:
            if s.name.endswith("health monitor"):
                diag.update({kv.key: kv.value for kv in s.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    return node, diag, lambda t: executor.spin_once(timeout_sec=t)


@pytest.mark.ros
@pytest.mark.slow
def test_trainer_node_announces_a_model_the_monitor_loads_and_an_adapted_policy(world, tmp_path):
    pytest.importorskip("rclpy")
    from std_msgs.msg import String

    from rwm_ros.topics import TOPIC_POLICY_RELOAD, TOPIC_WM_RELOAD

    domain = domain_id(0)
    env = ros_env(domain)
    trainer = [PYTHON, "-m", "rwm_ros.trainer_node", "--ros-args", "-r", "__node:=world_model_trainer"]
    for k, v in {
        "replay_buffer": world / "replay",
        "model_dir": tmp_path / "versions",
        "checkpoint": world / "tiny.pt",
        "heldout": world / "heldout",
        "scan_interval_s": 1.0,
        "iterations": FAST.iterations,
        "batch_size": FAST.batch_size,
        "learning_rate": FAST.learning_rate,
        "tolerance": 100.0,
        "heldout_length": 90,
        "tail_forecast": FAST.tail_forecast,
        "pretrain": "''",  # an empty string on the command line: no pretraining data
        "policy_versions_dir": tmp_path / "policies",
        "adapt.critic_warmup": 1,
        "adapt.iterations": 1,
        "adapt.validation_episodes": 2,
        "adapt.validation_episode_s": 2.0,
        "adapt.tracking_tolerance": 1.0,
        "adapt.threads": 1,
    }.items():
        trainer += ["-p", f"{k}:={v}"]
    wm = [PYTHON, "-m", "rwm_ros.world_model_node", "--ros-args", "-r", "__node:=world_model"]
    wm += ["-p", f"model:={world / 'tiny.onnx'}", "-p", f"versions_dir:={tmp_path / 'versions'}"]
    announced: list[str] = []
    policies: list[str] = []
    with ros_context(domain) as ctx, node_process(wm, env), node_process(trainer, env) as trainer_proc:
        node, diag, spin = _monitor_listener(ctx, "deploy_test")
        node.create_subscription(String, TOPIC_WM_RELOAD, lambda m: announced.append(m.data), 10)
        node.create_subscription(String, TOPIC_POLICY_RELOAD, lambda m: policies.append(m.data), 10)
        wait_for(spin, lambda: announced, 90.0, "an announced model version")
        assert Path(announced[0]).is_file() and announced[0].endswith("rwm_v1.onnx")
        wait_for(spin, lambda: diag.get("reloads_accepted") == "1", 10.0, "the world model to load it")
        assert diag["model"] == announced[0]
        bogus = tmp_path / "versions" / "bogus.onnx"
        bogus.write_bytes(b"not a model")
        pub = node.create_publisher(String, TOPIC_WM_RELOAD, 10)
        time.sleep(0.5)
        spin(0.5)
        pub.publish(String(data=str(bogus)))
        wait_for(spin, lambda: diag.get("reloads_rejected") == "1", 10.0, "the bogus file to be refused")
        # A valid model from outside the versions directory is refused too: the topic names no file it likes.
        pub.publish(String(data=str(world / "tiny.onnx")))
        wait_for(spin, lambda: diag.get("reloads_rejected") == "2", 10.0, "a file outside versions_dir")
        pub.publish(String(data=str(tmp_path / "versions" / ".." / "versions" / ".." / "bogus.onnx")))
        wait_for(spin, lambda: diag.get("reloads_rejected") == "3", 10.0, "a path escaping versions_dir")
        assert diag["model"] == announced[0], "the validated version stays in service"
        # Stage 2: the policy adapted in that model's imagination, validated, announced for the policy node.
        wait_for(spin, lambda: policies, 120.0, "an announced policy version")
        assert policies == [str((tmp_path / "policies" / "policy_v1.onnx").resolve())]
        assert (tmp_path / "policies" / "policy_v1.json").is_file()
        assert trainer_proc.poll() is None
        node.destroy_node()


@pytest.mark.ros
@pytest.mark.slow
def test_world_model_node_monitors_the_running_stack() -> None:
    """world_model:=true: the monitor steps on every command of the live robot with the shipped RWM,
    its 400 Hz inputs those of each command's stamp, and its one-step error stays below the anomaly
    threshold."""
    pytest.importorskip("rclpy")
    domain = domain_id(3)
    env = ros_env(domain)
    cmd = launch_command(world_model=True, record=False, sequence=False, duration=20)
    with ros_context(domain) as ctx, node_process(cmd, env) as proc:
        node, diag, spin = _monitor_listener(ctx, "monitor_test")
        wait_for(spin, lambda: int(diag.get("steps", 0)) >= 250, 18.0, "250 monitored steps (5 s at 50 Hz)")
        assert proc.poll() is None
        windowed, threshold = float(diag["windowed_error"]), float(diag["threshold"])
        assert np.isfinite(windowed) and windowed < threshold and diag["anomaly"] == "False", diag
        assert int(diag["steps_skipped"]) <= int(diag["steps"]) // 50, "states found for the commands' stamps"
        node.destroy_node()
