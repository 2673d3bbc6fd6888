"""RWM-U's ensemble of state heads: shapes, the ensemble as one Gaussian, bootstrap training, growing
a trained RWM into an ensemble, and the ONNX step with the members' spread; the ensemble of RWMs
trained apart (own GRUs) composed from checkpoints, trained, imagined in and exported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rwm.models.base import ensemble_gaussian
from rwm.models.factory import (
    build_world_model,
    ensemble_checkpoints,
    load_checkpoint,
    save_checkpoint,
    with_ensemble,
)
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


def _members_apart(tmp_path, k: int = 3) -> list:
    """k single-head RWMs of different seeds on one normalization, saved as train-wm would."""
    rng = np.random.default_rng(5)
    states, actions = rng.normal(1.0, 2.0, (400, 45)), rng.normal(0.2, 0.5, (400, 12))
    paths = []
    for seed in range(k):
        torch.manual_seed(10 + seed)
        model = build_world_model("rwm", SMALL)
        model.normalizer.fit(states, actions)
        save_checkpoint(model, tmp_path / f"m{seed}.pt", train_config={"horizon": 4, "seed": seed})
        paths.append(tmp_path / f"m{seed}.pt")
    return paths


def test_members_trained_apart_compose_into_one_ensemble(tmp_path):
    paths = _members_apart(tmp_path)
    ensemble, extra = ensemble_checkpoints(paths)
    assert ensemble.ensemble_size == 3 and extra["train_config"]["seed"] == 0
    assert extra["train_config"]["arch"] == "rwm_ensemble" and extra["train_config"]["model"]["members"] == 3
    assert extra["members_from"] == [str(p) for p in paths]
    members = [load_checkpoint(p)[0] for p in paths]
    norm = ensemble.normalizer
    s_n, a_n = norm.state(torch.randn(2, 7, 45)), norm.action(torch.randn(2, 7, 12))
    with torch.no_grad():
        features, hidden = ensemble.features(s_n, a_n)
        assert features.shape == (2, 7, 3 * 32) and hidden.shape == (2, 2, 3 * 32)
        means, stds, logits = ensemble.member_heads(features, s_n)
        for k, member in enumerate(members):
            mean_k, std_k, logits_k, hidden_k = member.sequence(s_n, a_n)
            torch.testing.assert_close(means[k], mean_k, msg="each member is its own RWM")
            torch.testing.assert_close(stds[k], std_k)
            torch.testing.assert_close(hidden[..., 32 * k : 32 * (k + 1)], hidden_k)
        p_mean = torch.stack([torch.sigmoid(m.sequence(s_n, a_n)[2]) for m in members]).mean(0)
        torch.testing.assert_close(
            torch.sigmoid(logits), p_mean, msg="contacts: the members' mean probability"
        )
        # stepping from the carried hidden continues the sequence
        step_means = ensemble.step_members(
            s_n[:, -1], a_n[:, -1], ensemble.features(s_n[:, :-1], a_n[:, :-1])[1]
        )[0]
        torch.testing.assert_close(step_means, means[:, :, -1])
    save_checkpoint(ensemble, tmp_path / "e.pt", **extra)
    loaded, loaded_extra = load_checkpoint(tmp_path / "e.pt")
    assert loaded.ensemble_size == 3 and loaded_extra["members_from"] == extra["members_from"]
    for key, value in ensemble.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_members_must_share_normalization_and_architecture(tmp_path):
    paths = _members_apart(tmp_path, 2)
    other = build_world_model("rwm", SMALL)
    other.normalizer.fit(np.random.default_rng(9).normal(size=(50, 45)), np.zeros((50, 12)))
    save_checkpoint(other, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="normalization differs"):
        ensemble_checkpoints([paths[0], tmp_path / "other.pt"])
    save_checkpoint(build_world_model("rwm", {**SMALL, "ensemble_size": 2}), tmp_path / "heads.pt")
    with pytest.raises(ValueError, match="single-head RWM"):
        ensemble_checkpoints([paths[0], tmp_path / "heads.pt"])
    save_checkpoint(build_world_model("rwm", {**SMALL, "hidden_size": 16}), tmp_path / "narrow.pt")
    with pytest.raises(ValueError, match="architecture differs"):
        ensemble_checkpoints([paths[0], tmp_path / "narrow.pt"])
    with pytest.raises(ValueError, match="at least two"):
        ensemble_checkpoints(paths[:1])


def test_the_ensemble_trains_every_member_and_exports_its_step(tmp_path):
    from rwm.export.world_model_onnx import OnnxWorldModel, export_world_model

    ensemble, _ = ensemble_checkpoints(_members_apart(tmp_path))
    before = {k: v.clone() for k, v in ensemble.state_dict().items()}
    learner = WorldModelLearner(ensemble, LearnerConfig(history=6, horizon=4, learning_rate=1e-3))
    assert np.isfinite(learner.update(_batch(np.random.default_rng(2)))["total"])
    for k in range(3):
        for name in (
            "gru.weight_hh_l0",
            "heads_module.mean_head.0.weight",
            "heads_module.contact_head.0.weight",
        ):
            key = f"members.{k}.{name}"
            assert not torch.equal(before[key], ensemble.state_dict()[key]), f"{key} was trained"
    ensemble.eval()
    rng = np.random.default_rng(3)
    validation = {k: v for k, v in _batch(rng, 3, 100).items() if k != "contacts"}
    assert export_world_model(ensemble, tmp_path / "e.onnx", {"source": "test"}, [validation]) <= 1e-4
    wm = OnnxWorldModel(tmp_path / "e.onnx")
    assert wm.metadata["ensemble_size"] == 3 and wm.initial_hidden(2).shape == (2, 2, 96)
    # one step from a history's hidden state: each member's state must meet its own GRU
    norm = ensemble.normalizer
    s_n, a_n = norm.state(validation["state"][:, :6]), norm.action(validation["action"][:, :6])
    state, action = validation["state"][:, 6].numpy(), validation["action"][:, 6].numpy()
    with torch.no_grad():
        hidden = ensemble.features(s_n, a_n)[1]
        means = ensemble.step_members(
            norm.state(torch.from_numpy(state)), norm.action(torch.from_numpy(action)), hidden
        )[0]
    mean, _, _, _, spread = wm(state, action, hidden.transpose(0, 1).numpy())
    expected_mean = norm.state_inverse(means.mean(0)).numpy()
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-4, atol=1e-4 * float(norm.state_std.max()))
    np.testing.assert_allclose(
        spread, (means.std(0, unbiased=False) * norm.state_std).numpy(), rtol=1e-3, atol=1e-5
    )


def test_the_jacobian_penalty_weighs_an_ensemble_of_copies_as_one_member(tmp_path):
    """The penalty on the members' side-by-side latents is averaged over them, as their likelihoods
    are: an ensemble of copies of one RWM pays what that RWM pays (both Hutchinson estimates, so
    within their noise; summed, it would pay three times as much)."""
    from rwm.training.losses import world_model_loss

    path = _members_apart(tmp_path, 1)[0]
    single, _ = load_checkpoint(path)
    ensemble, _ = ensemble_checkpoints([path, path, path])
    batch = _batch(np.random.default_rng(4), b=64, t=8)
    penalties = []
    for model in (single, ensemble):
        torch.manual_seed(0)
        norm = model.normalizer
        losses = world_model_loss(
            model,
            norm.state(batch["state"]),
            norm.action(batch["action"]),
            batch["contacts"],
            history=6,
            horizon=2,
            jacobian_weight=1.0,
        )
        penalties.append(losses["jacobian"])
    assert penalties[0] > 0
    torch.testing.assert_close(penalties[1], penalties[0], rtol=0.15, atol=0.0)
