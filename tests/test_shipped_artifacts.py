"""The shipped models, and the sample bag recorded with the nominal policy (make pretrain-data) agrees
with that policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rwm.data.bag_loader import load_bag
from rwm.export.policy_onnx import OnnxPolicy
from rwm.robot.policy_io import policy_observation, raw_to_targets

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "models" / "anymal_d_ppo.onnx"
NOMINAL_POLICY = ROOT / "models" / "anymal_d_ppo_nominal.onnx"
"""The first PPO policy (no domain randomization): it recorded the pretraining data and the sample bag."""
SAMPLE_BAG = ROOT / "tests" / "data" / "anymal_d_ppo_sample"


@pytest.mark.skipif(not POLICY.is_file(), reason="no shipped PPO policy yet")
def test_shipped_policy_metadata():
    policy = OnnxPolicy(POLICY)
    meta = policy.metadata
    assert meta["source"] == "ppo" and meta["real_transitions"] > 0 and policy.obs_dim == 48
    assert policy(np.zeros((3, 48), np.float32)).shape == (3, 12)


@pytest.mark.skipif(not SAMPLE_BAG.is_dir(), reason="no sample bag yet")
def test_sample_bag_replays_the_nominal_policy():
    trajectories, report = load_bag(SAMPLE_BAG)
    assert report.ok, str(report)
    assert sum(len(t) for t in trajectories) >= 200  # 5 s at 50 Hz
    policy = OnnxPolicy(NOMINAL_POLICY)
    for t in trajectories:
        obs = policy_observation(t.state[1:], t.command[1:], t.action[:-1])
        assert np.allclose(t.action[1:], raw_to_targets(policy(obs)), atol=1e-4)


WORLD_MODEL = ROOT / "models" / "anymal_d_rwm.onnx"


def _world_model_and_checkpoint(path: Path, parity_steps: int):
    """A shipped world model (checked by the nodes' own validation) and its checkpoint beside it, after
    asserting that the two roll out alike: (ONNX model, torch model, checkpoint entries)."""
    from rwm.control.world_model_monitor import validate_world_model
    from rwm.export.runtime import OnnxWorldModel
    from rwm.export.world_model_onnx import _Step, rollout_parity
    from rwm.models.factory import load_checkpoint

    onnx_model = OnnxWorldModel(path)
    validate_world_model(onnx_model)
    model, extra = load_checkpoint(path.with_suffix(".pt"))
    assert rollout_parity(_Step(model).eval(), path, steps=parity_steps) <= 1e-4
    return onnx_model, model, extra


@pytest.mark.skipif(not WORLD_MODEL.is_file(), reason="no shipped world model yet")
def test_shipped_world_model_matches_its_checkpoint():
    _, _, extra = _world_model_and_checkpoint(WORLD_MODEL, parity_steps=100)
    # The RWM-AR row of the table in models/README.md: dual autoregression, M = 32, N = 8, 2000 iterations,
    # scored (and shipped) as the mean weights of its last three checkpoints.
    cfg = extra["train_config"]
    assert (cfg["arch"], cfg["history"], cfg["horizon"], cfg["iterations"]) == ("rwm", 32, 8, 2000)
    averaged = [Path(p).name for p in extra["averaged_from"]]
    assert averaged == ["model_1200.pt", "model_1600.pt", "model_2000.pt"]


MBPO_POLICY = ROOT / "models" / "anymal_d_mbpo.onnx"


@pytest.mark.skipif(not MBPO_POLICY.is_file(), reason="no shipped MBPO-PPO policy yet")
def test_shipped_mbpo_policy_used_at_most_5_percent_of_the_real_data_and_matches_its_evaluation():
    import json

    mbpo, ppo = OnnxPolicy(MBPO_POLICY), OnnxPolicy(POLICY)
    assert mbpo.metadata["source"] == "mbpo" and mbpo.obs_dim == 48
    assert mbpo.metadata["real_transitions"] <= 0.05 * ppo.metadata["real_transitions"]
    evaluation = json.loads((ROOT / "models" / "anymal_d_mbpo_eval.json").read_text())
    assert evaluation["policy"].endswith("anymal_d_mbpo.onnx")
    assert evaluation["real_transitions_used"] == mbpo.metadata["real_transitions"]
    assert evaluation["episodes"] == 100 and evaluation["falls"] == len(evaluation["fall_events"])


@pytest.mark.skipif(not MBPO_POLICY.is_file(), reason="no shipped MBPO-PPO policy yet")
def test_shipped_mbpo_policy_walks_through_a_command_change_in_simulation():
    """Trained only in imagination, it must carry over: 10 episodes of 20 s with a switch at 10 s."""
    from rwm.evaluation.policy_eval import PolicyEvalConfig, evaluate_policy

    result = evaluate_policy(OnnxPolicy(MBPO_POLICY), 48, PolicyEvalConfig(episodes=10, seed=2024))
    assert result["falls"] == 0, result["fall_events"]
    assert result["tracking_reward_normalized"] > 0.85


ENSEMBLE = ROOT / "models" / "anymal_d_rwmu.onnx"


@pytest.mark.skipif(not ENSEMBLE.is_file(), reason="no shipped ensemble yet")
def test_shipped_ensemble_matches_its_checkpoint_and_carries_its_monitor_rule():
    onnx_model, model, _ = _world_model_and_checkpoint(ENSEMBLE, parity_steps=50)
    assert model.heads_module.members == onnx_model.metadata["ensemble_size"] == 5
    rule = onnx_model.metadata["anomaly"]
    assert rule["threshold"] > rule["validation_max"] and rule["validation_windows"] > 1000
