"""Baselines (MLP, RSSM, Transformer) behind the shared interface; checkpoints; latent noise and the
Jacobian regularizer."""

from __future__ import annotations

import pytest
import torch

from rwm.evaluation.autoregressive_error import rollout_trajectories
from rwm.models.factory import average_checkpoints, build_world_model, load_checkpoint, save_checkpoint
from rwm.training.latent_regularization import LatentNoise, jacobian_frobenius_sq
from rwm.training.losses import world_model_loss
from rwm.training.rollout import forecast

SMALL = {
    "rwm": {"hidden_size": 32, "head_hidden": 16},
    "mlp": {"hidden_dims": (32, 32), "context": 6, "head_hidden": 16},
    "rssm": {"hidden_size": 32, "latents": 4, "categories": 4, "head_hidden": 16},
    "transformer": {"dim": 16, "heads": 4, "context": 6, "feedforward": 32, "head_hidden": 16},
}


def _batch(b=3, t=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, t, 45, generator=g),
        torch.randn(b, t, 12, generator=g),
        (torch.rand(b, t, 8, generator=g) > 0.5).float(),
    )


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_shapes_and_step_by_step_equals_sequence(arch):
    torch.manual_seed(0)
    model = build_world_model(arch, SMALL[arch]).eval()
    s, a, _ = _batch(t=6)
    with torch.no_grad():
        mean, std, contact, _ = model.sequence(s, a)
        assert mean.shape == (3, 6, 45) and std.shape == (3, 6, 45) and contact.shape == (3, 6, 8)
        assert (std > 0).all()
        h = model.initial_hidden(3)
        for t in range(6):
            m, _, _, h = model.step(s[:, t], a[:, t], h)
            assert torch.allclose(m, mean[:, t], atol=1e-5), f"{arch} step {t}"


@pytest.mark.parametrize("arch", ["mlp", "transformer"])
def test_context_models_forget_inputs_older_than_their_context(arch):
    torch.manual_seed(0)
    model = build_world_model(arch, SMALL[arch]).eval()
    s, a, _ = _batch(t=9)
    s2 = s.clone()
    s2[:, 0] += 50.0  # 9 - 6 = 3 steps before the last context window
    with torch.no_grad():
        outs = []
        for states in (s, s2):
            h = model.initial_hidden(3)
            for t in range(9):
                m, _, _, h = model.step(states[:, t], a[:, t], h)
            outs.append(m)
    assert torch.allclose(outs[0], outs[1])


@pytest.mark.parametrize("arch", sorted(SMALL))
@pytest.mark.parametrize("horizon", [1, 3])
def test_every_model_learns_a_tiny_set(arch, horizon):
    torch.manual_seed(0)
    model = build_world_model(arch, SMALL[arch])
    t = torch.linspace(0, 6, 10)
    s = torch.sin(t[None, :, None] + torch.arange(45)[None, None] * 0.1).repeat(8, 1, 1)
    a = torch.cos(t[None, :, None] + torch.arange(12)[None, None]).repeat(8, 1, 1)
    c = (s[..., :8] > 0).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = world_model_loss(model, s, a, c, history=6, horizon=horizon)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_rssm_kl_is_gathered_then_consumed():
    model = build_world_model("rssm", SMALL["rssm"]).train()
    s, a, c = _batch()
    terms = world_model_loss(model, s, a, c, history=6, horizon=3)
    assert terms["aux"].item() >= 0.1 * 1.0 - 1e-6  # free nats floor, weight 0.1
    assert model.auxiliary_loss().item() == 0.0


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_checkpoint_round_trip(arch, tmp_path):
    model = build_world_model(arch, SMALL[arch]).eval()
    model.normalizer.state_mean.fill_(0.5)
    save_checkpoint(model, tmp_path / "m.pt", iteration=7)
    loaded, extra = load_checkpoint(tmp_path / "m.pt")
    s, a, _ = _batch()
    with torch.no_grad():
        assert torch.equal(model.sequence(s, a)[0], loaded.sequence(s, a)[0])
    assert extra["iteration"] == 7 and type(loaded) is type(model)


def test_averaged_checkpoints_hold_the_mean_weights_and_refuse_other_runs(tmp_path):
    torch.manual_seed(0)
    a, b = build_world_model("rwm", SMALL["rwm"]), build_world_model("rwm", SMALL["rwm"])
    for m in (a, b):
        m.normalizer.state_mean.fill_(0.5)
    save_checkpoint(a, tmp_path / "a.pt", iteration=1)
    save_checkpoint(b, tmp_path / "b.pt", iteration=2)
    avg, extra = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    w = "gru.weight_hh_l0"
    assert torch.allclose(avg.state_dict()[w], (a.state_dict()[w] + b.state_dict()[w]) / 2)
    assert not torch.equal(avg.state_dict()[w], b.state_dict()[w])
    assert torch.equal(avg.normalizer.state_mean, a.normalizer.state_mean)
    assert extra["iteration"] == 2 and len(extra["averaged_from"]) == 2

    b.normalizer.state_mean.fill_(0.7)  # another dataset's statistics: not the same run
    save_checkpoint(b, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="normalization differs"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])
    save_checkpoint(build_world_model("mlp", SMALL["mlp"]), tmp_path / "d.pt")
    with pytest.raises(ValueError, match="architecture differs"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "d.pt"])


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown world-model architecture"):
        build_world_model("lstm")


def test_hutchinson_estimate_matches_the_exact_jacobian():
    torch.manual_seed(0)
    w = torch.randn(6, 6)
    h = torch.randn(1, 4000, 6, requires_grad=True)  # (layers, B, H): batch of projections
    nxt = torch.tanh(h @ w.T)
    est = jacobian_frobenius_sq(nxt, h, projections=4)
    jac = torch.diag_embed(1 - nxt.detach() ** 2) @ w  # (1, B, 6, 6) per sample
    exact = jac.pow(2).sum((-1, -2)).mean()
    assert est.item() == pytest.approx(exact.item(), rel=0.05)
    est.backward()  # differentiable, so it can be a loss term
    assert h.grad is not None


def test_jacobian_penalty_shrinks_the_latent_jacobian():
    s, a, c = _batch(b=8, t=10)

    def train(weight):
        torch.manual_seed(0)
        model = build_world_model("rwm", SMALL["rwm"])
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(30):
            terms = world_model_loss(model, s, a, c, history=6, horizon=4, jacobian_weight=weight)
            opt.zero_grad()
            terms["total"].backward()
            opt.step()
        torch.manual_seed(1)
        return world_model_loss(model, s, a, c, history=6, horizon=4, jacobian_weight=1.0)["jacobian"].item()

    assert train(1.0) < 0.5 * train(0.0)


def test_latent_noise_perturbs_only_models_with_a_latent():
    s, a, _ = _batch(t=10)
    drift = LatentNoise(sigma=0.0, mu=0.5)
    for arch, moved in (("rwm", True), ("mlp", False)):
        model = build_world_model(arch, SMALL[arch]).eval()
        clean = forecast(model, s, a, 6, 4, sample=False).mean
        noisy = forecast(model, s, a, 6, 4, sample=False, latent_noise=drift).mean
        assert torch.allclose(clean[:, 0], noisy[:, 0]), "the first forecast step precedes any perturbation"
        assert (not torch.allclose(clean, noisy)) == moved
        rolled = rollout_trajectories(model, s, a, 6, latent_noise=drift)
        assert (not torch.allclose(rolled, clean)) == moved


def test_input_noise_changes_the_rollout_but_not_its_shape():
    model = build_world_model("rwm", SMALL["rwm"])
    s, a, _ = _batch(t=10)
    g = torch.Generator().manual_seed(0)
    clean = rollout_trajectories(model, s, a, 6)
    noisy = rollout_trajectories(model, s, a, 6, input_noise=0.5, generator=g)
    assert noisy.shape == clean.shape and not torch.allclose(noisy, clean)
