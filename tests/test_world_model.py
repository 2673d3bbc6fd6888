"""RWM core: shapes, autoregressive vs teacher-forced semantics, normalization, loss, the AR metric."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from rwm.evaluation.autoregressive_error import (
    autoregressive_error,
    hold_last_prediction,
    relative_error,
    rollout_trajectories,
)
from rwm.models.normalization import StateActionNormalizer
from rwm.models.rwm import RobotWorldModel, RWMConfig
from rwm.training.losses import contact_bce, world_model_loss
from rwm.training.rollout import forecast

SMALL = RWMConfig(hidden_size=32, head_hidden=16)
SMALL_DICT = {"hidden_size": 32, "head_hidden": 16}


def _batch(b=4, t=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, t, 45, generator=g),
        torch.randn(b, t, 12, generator=g),
        (torch.rand(b, t, 8, generator=g) > 0.5).float(),
    )


def test_step_and_sequence_shapes_and_residual_mean():
    model = RobotWorldModel(SMALL)
    s, a, _ = _batch()
    mean, std, contact, hidden = model.sequence(s, a)
    assert mean.shape == (4, 12, 45) and std.shape == (4, 12, 45) and contact.shape == (4, 12, 8)
    assert hidden.shape == (2, 4, 32) and (std > 0).all()
    for p in model.heads_module.mean_head[-1].parameters():
        torch.nn.init.zeros_(p)
    m, _, _, _ = model.step(s[:, 0], a[:, 0], model.initial_hidden(4))
    assert torch.allclose(m, s[:, 0]), "the mean is a residual on the input state"


def test_step_by_step_equals_sequence():
    model = RobotWorldModel(SMALL)
    s, a, _ = _batch()
    mean_seq, _, _, _ = model.sequence(s, a)
    h = model.initial_hidden(4)
    for t in range(12):
        m, _, _, h = model.step(s[:, t], a[:, t], h)
        assert torch.allclose(m, mean_seq[:, t], atol=1e-6)


def test_forecast_feeds_back_its_own_predictions():
    model = RobotWorldModel(SMALL)
    s, a, _ = _batch(t=10)
    f = forecast(model, s, a, history=6, horizon=4, sample=False)
    assert f.mean.shape == (4, 4, 45)
    assert torch.allclose(f.fed_back, f.mean[:, :-1]), "inputs after the history are the previous means"
    s2 = s.clone()
    s2[:, 6:] += 100.0  # the true future must not leak into an autoregressive forecast
    assert torch.allclose(forecast(model, s2, a, 6, 4, sample=False).mean, f.mean)
    tf, _, _, _ = model.sequence(s2[:, :-1], a[:, :-1])  # teacher forcing reads the true states
    assert not torch.allclose(tf[:, 6:9], f.mean[:, 1:])


def test_normalization_round_trip():
    rng = np.random.default_rng(0)
    states, actions = rng.normal(3.0, 2.0, (1000, 45)), rng.normal(-1.0, 0.5, (1000, 12))
    states[:, 5] = 7.0  # constant dimension: std floored, no division by zero
    norm = StateActionNormalizer().fit(states, actions)
    x = torch.from_numpy(states).float()
    assert torch.allclose(norm.state_inverse(norm.state(x)), x, atol=1e-4)
    n = norm.state(x)
    assert n[:, 0].mean().abs() < 1e-4 and (n[:, 0].std() - 1).abs() < 1e-2 and torch.isfinite(n).all()


@pytest.mark.parametrize("horizon", [1, 4])
def test_loss_decreases_on_a_tiny_set(horizon):
    torch.manual_seed(0)
    model = RobotWorldModel(SMALL)
    t = torch.linspace(0, 6, 12)
    s = torch.sin(t[None, :, None] + torch.arange(45)[None, None] * 0.1).repeat(8, 1, 1)
    a = torch.cos(t[None, :, None] + torch.arange(12)[None, None]).repeat(8, 1, 1)
    c = (s[..., :8] > 0).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = world_model_loss(model, s, a, c, history=8, horizon=horizon)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0


def test_unknown_contacts_are_left_out_of_the_loss():
    """NaN contact flags (a robot without /anymal/contacts) add nothing to the contact loss, whatever
    is in their place; the known ones count as before; all unknown: the loss is 0, not NaN."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, 8, generator=g)
    c = (torch.rand(6, 4, 8, generator=g) > 0.5).float()
    unknown = c.clone()
    unknown[3:] = float("nan")
    torch.testing.assert_close(contact_bce(logits, unknown, (0, 2)), contact_bce(logits[:3], c[:3], (0, 2)))
    torch.manual_seed(0)
    model = RobotWorldModel(SMALL)
    s, a, c = _batch(b=6)
    full = world_model_loss(model, s[:3], a[:3], c[:3], history=8, horizon=1)["contact"]
    unknown = c.clone()
    unknown[3:] = float("nan")
    mixed = world_model_loss(model, s, a, unknown, history=8, horizon=1)
    assert mixed["contact"].item() == pytest.approx(full.item(), rel=1e-5)
    for horizon in (1, 4):
        none = world_model_loss(model, s, a, torch.full_like(c, float("nan")), history=8, horizon=horizon)
        assert none["contact"].item() == 0.0 and torch.isfinite(none["total"])
        model.zero_grad()
        none["total"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_relative_error_hand_computed():
    truth = torch.tensor([[[1.0, -1.0], [2.0, 0.0], [0.0, 4.0]]])
    pred = torch.tensor([[[1.0, -1.0], [1.0, 1.0], [0.0, 2.0]]])
    err = relative_error(pred, truth)
    assert torch.allclose(err, torch.tensor([[0.0, 1.0, 0.5]]))
    result = autoregressive_error(pred[:, 1:], truth, history=1)
    assert result["mean"] == pytest.approx(0.75) and result["per_step"] == pytest.approx([1.0, 0.5])
    held = hold_last_prediction(truth, history=1)
    assert torch.equal(held, truth[:, :1].expand(-1, 2, -1))


def test_rollout_matches_forecast_without_sampling():
    model = RobotWorldModel(SMALL)
    s, a, _ = _batch(t=10)
    pred = rollout_trajectories(model, s, a, history=6)
    f = forecast(model, s, a, history=6, horizon=4, sample=False)
    assert pred.shape == (4, 4, 45) and torch.allclose(pred, f.mean, atol=1e-6)


def test_trainer_runs_on_collected_data(tmp_path):
    from rwm.data.array_dataset import ArrayDataset
    from rwm.data.collect import collect_dataset
    from rwm.runners.world_model import WorldModelTrainConfig, train_world_model

    collect_dataset(tmp_path / "train", steps=60, num_envs=4, controller="perturb", seed=1, num_threads=1)
    collect_dataset(tmp_path / "held", steps=40, num_envs=2, controller="perturb", seed=2, num_threads=1)
    cfg = WorldModelTrainConfig(
        history=8, horizon=3, batch_size=16, iterations=4, eval_interval=2, model=SMALL_DICT, threads=1
    )
    summary = train_world_model(
        cfg,
        ArrayDataset(tmp_path / "train"),
        ArrayDataset(tmp_path / "held"),
        tmp_path / "out",
        heldout_length=30,
    )
    assert summary["iteration"] == 4 and np.isfinite(summary["heldout_ar_error"])
    assert (tmp_path / "out" / "model_4.pt").is_file()
    assert len((tmp_path / "out" / "train_log.jsonl").read_text().splitlines()) == 2
    assert summary["lr"] == cfg.learning_rate, "constant by default"

    cosine = replace(cfg, lr_schedule="cosine")
    train_world_model(cosine, ArrayDataset(tmp_path / "train"), None, tmp_path / "cos")
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "cos" / "train_log.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(cfg.learning_rate / 2) and lrs[1] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lr_schedule"):
        train_world_model(
            replace(cfg, lr_schedule="step"), ArrayDataset(tmp_path / "train"), None, tmp_path / "x"
        )


def test_world_model_onnx_parity_over_100_steps(tmp_path):
    from rwm.export.world_model_onnx import OnnxWorldModel, export_world_model

    torch.manual_seed(0)
    model = RobotWorldModel(SMALL)
    rng = np.random.default_rng(0)
    model.normalizer.fit(rng.normal(2.0, 3.0, (500, 45)), rng.normal(0.5, 0.2, (500, 12)))
    validation = {
        "state": torch.from_numpy(rng.normal(2.0, 3.0, (4, 100, 45))).float(),
        "action": torch.from_numpy(rng.normal(0.5, 0.2, (4, 100, 12))).float(),
    }
    err = export_world_model(model, tmp_path / "wm.onnx", {"source": "test"}, [validation])
    assert err <= 1e-4
    wm = OnnxWorldModel(tmp_path / "wm.onnx")
    mean, std, logits, h, spread = wm(np.zeros((3, 45)), np.zeros((3, 12)), wm.initial_hidden(3))
    assert (spread == 0).all(), "one model: no disagreement"
    assert mean.shape == (3, 45) and std.shape == (3, 45) and logits.shape == (3, 8) and h.shape == (3, 2, 32)
    assert (std > 0).all() and wm.metadata["source"] == "test"
    anomaly = wm.metadata["anomaly"]
    window = anomaly["window_steps"]
    assert anomaly["validation_windows"] == 4 * (100 - 1 - 32 - window + 1), "row 0 has no prediction"
    assert anomaly["threshold"] == pytest.approx(1.1 * anomaly["validation_max"], rel=1e-4), "1.1 x the max"


def test_history_grad_steps_reads_the_burn_in_without_gradients() -> None:
    """A truncated history changes the gradient, not the loss: the same value, and no gradient reaches
    the history steps before the last `history_grad_steps`."""
    model = RobotWorldModel(RWMConfig(hidden_size=32, head_hidden=16))
    states = torch.randn(3, 12, 45, requires_grad=True)
    actions, contacts = torch.randn(3, 12, 12), (torch.rand(3, 12, 8) > 0.5).float()
    torch.manual_seed(0)
    full = world_model_loss(model, states, actions, contacts, history=8, horizon=4)["total"]
    torch.manual_seed(0)
    truncated = world_model_loss(model, states, actions, contacts, 8, 4, history_grad_steps=3)["total"]
    assert torch.allclose(full, truncated)
    (grad_full,) = torch.autograd.grad(full, states)
    (grad,) = torch.autograd.grad(truncated, states)
    assert (grad[:, :5] == 0).all() and (grad_full[:, :5] != 0).any()
    assert (grad[:, 5:8] != 0).any()


def test_a_model_given_the_robots_parameters_reads_them_with_every_step(tmp_path) -> None:
    """The parameters change the prediction, reach the GRU's input weights through the loss (with a
    burn-in too), and are required by such a model and refused by any other; it is not exported for
    the robot's monitor, which does not know them."""
    model = RobotWorldModel(RWMConfig(hidden_size=32, head_hidden=16, robot_param_dim=8))
    s, a, contacts = _batch()
    light, heavy = torch.zeros(4, 8), torch.zeros(4, 8)
    heavy[:, 0] = 2.0
    assert not torch.allclose(model.sequence(s, a, None, light)[0], model.sequence(s, a, None, heavy)[0])
    m = model.step(s[:, 0], a[:, 0], model.initial_hidden(4), heavy)[0]
    assert torch.allclose(m, model.sequence(s[:, :1], a[:, :1], None, heavy)[0][:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="none were given"):
        model.sequence(s, a)
    with pytest.raises(ValueError, match="some were given"):
        RobotWorldModel(SMALL).sequence(s, a, None, heavy)
    for steps in (0, 3):
        loss = world_model_loss(
            model, s, a, contacts, 6, 4, jacobian_weight=1e-3, history_grad_steps=steps, params_n=heavy
        )
        (grad,) = torch.autograd.grad(loss["total"], model.gru.weight_ih_l0)
        assert grad[:, 57:].abs().sum() > 0, "the parameters' input weights learn"

    from rwm.export.world_model_onnx import export_world_model

    with pytest.raises(ValueError, match="monitor does not know"):
        export_world_model(model, tmp_path / "wm.onnx", {}, [])


def test_robot_parameter_normalization_is_fitted_and_a_constant_parameter_refused() -> None:
    rng = np.random.default_rng(0)
    states, actions = rng.normal(size=(100, 45)), rng.normal(size=(100, 12))
    robot_params = rng.uniform(0, 20, (100, 8))
    norm = StateActionNormalizer(8).fit(states, actions, robot_params)
    c_n = norm.robot_params(torch.from_numpy(robot_params).float())
    assert torch.allclose(c_n.mean(0), torch.zeros(8), atol=1e-5) and torch.allclose(
        c_n.std(0, unbiased=False), torch.ones(8), atol=1e-4
    )
    robot_params[:, 3] = 1.0
    with pytest.raises(ValueError, match="same in all the data"):
        StateActionNormalizer(8).fit(states, actions, robot_params)
    with pytest.raises(ValueError, match="0 robot-parameter dimensions"):
        StateActionNormalizer().fit(states, actions, robot_params)
    assert "robot_params_mean" not in StateActionNormalizer().state_dict(), "plain checkpoints load as before"


def test_plain_and_robot_parameter_checkpoints_load_strictly_and_only_the_plain_one_for_bags(
    tmp_path,
) -> None:
    from rwm.models.factory import load_checkpoint, load_robot_checkpoint, save_checkpoint

    load_robot_checkpoint("models/anymal_d_rwm.pt")  # shipped before the option existed
    for dim in (0, 8):
        save_checkpoint(
            RobotWorldModel(RWMConfig(hidden_size=32, head_hidden=16, robot_param_dim=dim)),
            tmp_path / f"{dim}.pt",
        )
        assert load_checkpoint(tmp_path / f"{dim}.pt")[0].robot_param_dim == dim
    with pytest.raises(ValueError, match="bags do not carry"):
        load_robot_checkpoint(tmp_path / "8.pt")


def test_the_suite_scores_an_ensemble_given_the_robots_parameters() -> None:
    from rwm.evaluation.world_model_suite import SuiteConfig, evaluate_world_models

    torch.manual_seed(0)
    model = RobotWorldModel(RWMConfig(hidden_size=32, head_hidden=16, robot_param_dim=8, ensemble_size=2))
    s, a, _ = _batch(b=6, t=14)
    held = {"state": s, "action": a, "robot_params": torch.randn(6, 8)}
    out = evaluate_world_models({"m": model}, held, SuiteConfig(history=6, noise_levels=(), drift_levels=()))
    assert (
        np.isfinite(out["models"]["m"]["mean"])
        and out["models"]["m"]["uncertainty_calibration"]["members"] == 2
    )
    with pytest.raises(ValueError, match="held-out data has none"):
        evaluate_world_models({"m": model}, {"state": s, "action": a}, SuiteConfig(history=6))


def test_bfloat16_precision_trains_a_float32_model_on_the_same_loss() -> None:
    """bfloat16 changes where the forward pass's products are rounded, not the model: the weights,
    their gradients and the loss terms stay float32, the loss is float32's within bfloat16 rounding,
    and the updates learn; an unknown precision is refused."""
    from rwm.training.learner import LearnerConfig, WorldModelLearner

    t = torch.linspace(0, 6, 12)
    batch = {
        "state": torch.sin(t[None, :, None] + torch.arange(45)[None, None] * 0.1).repeat(8, 1, 1),
        "action": torch.cos(t[None, :, None] + torch.arange(12)[None, None]).repeat(8, 1, 1),
    }
    batch["contacts"] = (batch["state"][..., :8] > 0).float()
    losses = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model = RobotWorldModel(SMALL)
        cfg = LearnerConfig(history=8, horizon=4, learning_rate=3e-3, precision=precision)
        learner = WorldModelLearner(model, cfg)
        torch.manual_seed(1)
        losses[precision] = [learner.update(batch) for _ in range(60)]
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    first32, first16 = losses["float32"][0], losses["bfloat16"][0]
    assert first16["total"] == pytest.approx(first32["total"], rel=0.02, abs=0.02)
    assert first16["contact"] == pytest.approx(first32["contact"], rel=0.02)
    assert losses["bfloat16"][-1]["total"] < first16["total"] - 1.0
    with pytest.raises(ValueError, match="precision 'float16'"):
        LearnerConfig(precision="float16")


@pytest.mark.parametrize("horizon", [1, 4])
def test_bfloat16_keeps_the_jacobian_penalty_and_an_ensembles_sure_contacts_finite(horizon) -> None:
    """The heads give float32 whatever precision their layers ran in: an ensemble's contact logits of
    sure contacts (probability 1 in bfloat16) stay finite, and so does the Jacobian penalty's term."""
    from rwm.models.ensemble import RWMEnsemble, RWMEnsembleConfig
    from rwm.training.learner import LearnerConfig, WorldModelLearner

    torch.manual_seed(0)
    model = RWMEnsemble(RWMEnsembleConfig(members=2, member=SMALL))
    for member in model.members:  # contact probabilities that round to 1 in bfloat16
        torch.nn.init.constant_(member.heads_module.contact_head[-1].bias, 12.0)
    batch = {"state": torch.randn(4, 12, 45), "action": torch.randn(4, 12, 12)}
    batch["contacts"] = torch.ones(4, 12, 8)
    cfg = LearnerConfig(history=8, horizon=horizon, precision="bfloat16", jacobian_weight=1e-3)
    losses = WorldModelLearner(model, cfg).update(batch)
    assert all(np.isfinite(v) for v in losses.values()), losses
    assert losses["jacobian"] > 0.0 and losses["contact"] < 1e-3


@pytest.mark.slow
def test_a_compiled_learner_trains_and_refuses_the_jacobian_penalty() -> None:
    """`compile` runs the same loss through torch.compile: the updates learn, the model's weights stay
    the eager module's (what checkpoints save); the Jacobian penalty, a double backward, is refused."""
    from rwm.training.learner import LearnerConfig, WorldModelLearner

    t = torch.linspace(0, 3, 7)
    batch = {
        "state": torch.sin(t[None, :, None] + torch.arange(45)[None, None] * 0.1).repeat(4, 1, 1),
        "action": torch.cos(t[None, :, None] + torch.arange(12)[None, None]).repeat(4, 1, 1),
    }
    batch["contacts"] = (batch["state"][..., :8] > 0).float()
    torch.manual_seed(0)
    model = RobotWorldModel(RWMConfig(hidden_size=16, num_layers=1, head_hidden=16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = LearnerConfig(history=4, horizon=3, learning_rate=3e-3, precision="bfloat16", compile=True)
    learner = WorldModelLearner(model, cfg)
    losses = [learner.update(batch)["total"] for _ in range(60)]
    assert losses[-1] < losses[0] - 1.0
    assert model.state_dict().keys() == before.keys()
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="compile: the Jacobian penalty"):
        LearnerConfig(compile=True, jacobian_weight=1e-3)
