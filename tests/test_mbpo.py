"""One short MBPO-PPO iteration end to end: real collection, model refinement, PPO in imagination,
true evaluation, logs, PNG, ONNX export of the result."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import torch

from rwm.data.array_dataset import ArrayDataset
from rwm.data.collect import collect_dataset
from rwm.export.policy_onnx import OnnxPolicy
from rwm.models.factory import build_world_model, save_checkpoint
from rwm.rl.imagination_env import ImaginationConfig
from rwm.runners.mbpo import MBPOConfig, train_mbpo
from rwm.runners.ppo import PPOConfig

MBPO_POLICY = "models/anymal_d_mbpo.onnx"


def _small_world_model(tmp_path) -> ArrayDataset:
    collect_dataset(tmp_path / "pre", steps=60, num_envs=4, controller="perturb", seed=1, num_threads=1)
    data = ArrayDataset(tmp_path / "pre")
    torch.manual_seed(0)
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(data.state, data.action)
    save_checkpoint(model, tmp_path / "wm.pt")
    return data


def _small_loop(**changes) -> MBPOConfig:
    return replace(
        MBPOConfig(
            iterations=2,
            real_envs=4,
            real_steps=20,
            wm_iterations=2,
            wm_batch=8,
            history=8,
            horizon=3,
            ppo_iterations=1,
            imagination=ImaginationConfig(num_envs=16, history=8, episode_steps=10),
            ppo=PPOConfig(num_steps_per_env=4, num_mini_batches=2),
            eval_episodes=2,
            threads=1,
        ),
        **changes,
    )


def test_one_loop_iteration_end_to_end(tmp_path):
    data = _small_world_model(tmp_path)
    cfg = _small_loop(eval_variants=("payload_15kg",))
    summary = train_mbpo(cfg, tmp_path / "wm.pt", tmp_path / "pre", tmp_path / "out", tmp_path / "mbpo.onnx")
    rows = list(csv.DictReader((tmp_path / "out" / "mbpo_log.csv").open()))
    assert len(rows) == 2 and (tmp_path / "out" / "mbpo.png").is_file()
    assert 0 <= int(rows[-1]["true_falls_payload_15kg"]) <= cfg.eval_episodes
    assert 0.0 <= float(rows[-1]["true_tracking_payload_15kg"]) <= 1.0
    assert summary["collected_transitions"] == 4 * 11 + 4 * 20, "stand-in start, then one collection"
    assert summary["real_transitions"] == len(data) + summary["collected_transitions"]
    assert np.isfinite(float(rows[-1]["imagined_reward_per_step"]))
    assert 0.0 <= float(rows[-1]["true_tracking_reward"]) <= 1.0
    policy = OnnxPolicy(tmp_path / "mbpo.onnx")
    assert (
        policy.metadata["source"] == "mbpo"
        and policy.metadata["real_transitions"] == summary["real_transitions"]
    )
    assert summary["onnx_parity_max_abs_err"] <= 1e-5


def test_a_loop_started_from_a_policy_begins_as_that_policy_and_counts_its_data(tmp_path):
    """With no PPO update the exported actor is the starting policy (the critic warm-up leaves the
    actor and its normalization alone), and the policy's real transitions are counted."""
    data = _small_world_model(tmp_path)
    start = OnnxPolicy(MBPO_POLICY)
    cfg = _small_loop(iterations=1, ppo_iterations=0, critic_warmup=2)
    summary = train_mbpo(
        cfg,
        tmp_path / "wm.pt",
        tmp_path / "pre",
        tmp_path / "out",
        tmp_path / "mbpo.onnx",
        init_from=MBPO_POLICY,
    )
    assert summary["real_transitions"] == (
        start.metadata["real_transitions"] + len(data) + summary["collected_transitions"]
    )
    obs = np.random.default_rng(0).normal(0, 1, (64, 48)).astype(np.float32)
    assert np.abs(OnnxPolicy(tmp_path / "mbpo.onnx")(obs) - start(obs)).max() < 1e-4


def test_a_resumed_loop_continues_where_it_stopped(tmp_path):
    """A loop resumed after its last iteration exports the policy it had; resumed with more iterations
    it keeps its log and collected data and adds to them."""
    _small_world_model(tmp_path)
    out = tmp_path / "out"
    first = train_mbpo(_small_loop(), tmp_path / "wm.pt", tmp_path / "pre", out, tmp_path / "a.onnx")
    rows = list(csv.DictReader((out / "mbpo_log.csv").open()))
    again = train_mbpo(
        _small_loop(), tmp_path / "wm.pt", tmp_path / "pre", out, tmp_path / "b.onnx", resume=True
    )
    assert again["collected_transitions"] == first["collected_transitions"]
    obs = np.random.default_rng(0).normal(0, 1, (64, 48)).astype(np.float32)
    assert np.array_equal(OnnxPolicy(tmp_path / "a.onnx")(obs), OnnxPolicy(tmp_path / "b.onnx")(obs))
    more = train_mbpo(_small_loop(iterations=3), tmp_path / "wm.pt", tmp_path / "pre", out, resume=True)
    rows_after = list(csv.DictReader((out / "mbpo_log.csv").open()))
    assert [r["iteration"] for r in rows_after] == ["0", "1", "2"] and rows_after[:2] == rows
    assert more["collected_transitions"] == first["collected_transitions"] + 4 * 20
