"""RWM-U's ensemble of state heads: shapes, the ensemble as one Gaussian, bootstrap training, growing
a trained RWM into an ensemble, and the ONNX step with the members' spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rwm.models.base import ensemble_gaussian
from rwm.models.factory import build_world_model, load_checkpoint, save_checkpoint, with_ensemble
from rwm.training.learner import LearnerConfig, WorldModelLearner

SMALL = {"hidden_size": 32, "head_hidden": 16}


def _batch(rng: np.random.Generator, b: int = 6, t: int = 12) -> dict[str, torch.Tensor]:
    return {
        "state": torch.from_numpy(rng.normal(0.0, 1.0, (b, t, 45))).float(),
        "action": torch.from_numpy(rng.normal(0.0, 0.3, (b, t, 12))).float(),
        "contacts": torch.from_numpy((rng.random((b, t, 8)) > 0.5).astype(np.float32)),
    }


def test_members_and_the_ensemble_gaussian():
    torch.manual_seed(0)
    model = build_world_model("rwm", {**SMALL, "ensemble_size": 4})
    s, a = torch.randn(3, 45), torch.randn(3, 12)
    means, stds, contact, hidden = model.step_members(s, a, model.initial_hidden(3))
    assert means.shape == stds.shape == (4, 3, 45) and contact.shape == (3, 8) and hidden.shape == (2, 3, 32)
    mean, std, _, _ = model.step(s, a, model.initial_hidden(3))
    torch.testing.assert_close(mean, means.mean(0))
    total = (stds.square().mean(0) + means.var(0, unbiased=False)).sqrt()
    torch.testing.assert_close(std, total)
    assert (std > stds.square().mean(0).sqrt()).all(), "disagreement adds to the std"
    one_mean, one_std = ensemble_gaussian(means[:1], stds[:1])
    assert torch.equal(one_mean, means[0]) and torch.equal(one_std, stds[0])


@pytest.mark.parametrize("horizon", [1, 4])
def test_every_member_learns_on_its_own_bootstrap(horizon):
    torch.manual_seed(1)
    model = build_world_model("rwm", {**SMALL, "ensemble_size": 3})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learner = WorldModelLearner(model, LearnerConfig(history=6, horizon=horizon, learning_rate=1e-3))
    losses = learner.update(_batch(np.random.default_rng(0)))
    assert np.isfinite(losses["total"])
    after = model.state_dict()
    for k in (
        "heads_module.mean_head.0.weight",
        "heads_module.member_mean_heads.1.0.weight",
        "gru.weight_hh_l0",
    ):
        assert not torch.equal(before[k], after[k]), f"{k} was trained"


def test_a_trained_rwm_grows_into_an_ensemble(tmp_path):
    torch.manual_seed(2)
    single = build_world_model("rwm", SMALL)
    save_checkpoint(single, tmp_path / "single.pt")
    loaded, _ = load_checkpoint(tmp_path / "single.pt")
    grown = with_ensemble(loaded, 3)
    assert grown.heads_module.members == 3 and grown.cfg.ensemble_size == 3
    s, a = torch.randn(2, 45), torch.randn(2, 12)
    with torch.no_grad():
        means, _, _, _ = grown.step_members(s, a, grown.initial_hidden(2))
        ref = single.step(s, a, single.initial_hidden(2))[0]
    torch.testing.assert_close(means[0], ref, msg="member 0 is the trained model")
    assert not torch.allclose(means[1], ref), "new members are perturbed copies"
    spread = (means[1:] - ref).abs().mean() / (ref - s).abs().mean()
    assert 0 < float(spread) < 0.5, "close to the trained model, not a random start"
    save_checkpoint(grown, tmp_path / "grown.pt")
    assert load_checkpoint(tmp_path / "grown.pt")[0].heads_module.members == 3
    with pytest.raises(ValueError, match="RWM"):
        with_ensemble(build_world_model("mlp", {}), 2)


def test_onnx_step_exports_the_mean_and_the_members_spread(tmp_path):
    from rwm.export.world_model_onnx import OnnxWorldModel, export_world_model

    torch.manual_seed(3)
    model = build_world_model("rwm", {**SMALL, "ensemble_size": 3})
    rng = np.random.default_rng(0)
    model.normalizer.fit(rng.normal(2.0, 3.0, (500, 45)), rng.normal(0.5, 0.2, (500, 12)))
    validation = {k: v for k, v in _batch(rng, 3, 100).items() if k != "contacts"}
    validation["state"] = 2.0 + 3.0 * validation["state"]
    assert export_world_model(model, tmp_path / "u.onnx", {"source": "test"}, [validation]) <= 1e-4
    wm = OnnxWorldModel(tmp_path / "u.onnx")
    assert wm.metadata["ensemble_size"] == 3
    state = validation["state"][:, 0].numpy()
    action = validation["action"][:, 0].numpy()
    mean, std, _, _, spread = wm(state, action, wm.initial_hidden(3))
    norm = model.normalizer
    with torch.no_grad():
        means, _, _, _ = model.step_members(
            norm.state(torch.from_numpy(state)),
            norm.action(torch.from_numpy(action)),
            model.initial_hidden(3),
        )
    expected = (means.std(0, unbiased=False) * norm.state_std).numpy()
    np.testing.assert_allclose(spread, expected, rtol=1e-3, atol=1e-5)
    assert (spread > 0).all() and (std > spread).all()


def test_uncertainty_calibration_reports_rank_correlation_and_bins():
    from rwm.evaluation.uncertainty import uncertainty_calibration

    torch.manual_seed(4)
    model = build_world_model("rwm", {**SMALL, "ensemble_size": 3})
    batch = _batch(np.random.default_rng(1), b=4, t=20)
    result = uncertainty_calibration(model, batch["state"], batch["action"], history=8, bins=4)
    assert result["members"] == 3 and -1 <= result["spearman"] <= 1 and len(result["bins"]) == 4
    assert [b["spread_from"] for b in result["bins"]] == sorted(b["spread_from"] for b in result["bins"])
