"""The paper's world-model evaluation on held-out trajectories: relative autoregressive error (mean and
per forecast step), the hold-last-state baseline, robustness to Gaussian noise on states and actions,
error under latent perturbations of growing drift (the second paper's Fig. 1), and for an ensemble
(RWM-U) the calibration of its uncertainty against its error."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from rwm.evaluation.autoregressive_error import (
    autoregressive_error,
    hold_last_prediction,
    rollout_trajectories,
)
from rwm.evaluation.heldout import heldout_params_n
from rwm.evaluation.uncertainty import uncertainty_calibration
from rwm.models.base import WorldModel
from rwm.training.latent_regularization import LatentNoise

NOISE_LEVELS = (0.1, 0.2, 0.4, 0.5, 0.8)
"""Std of the Gaussian noise on normalized states and actions (paper, Fig. 4)."""
DRIFT_LEVELS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
"""Mean of the latent perturbation added before every forecast step."""


@dataclass(frozen=True)
class SuiteConfig:
    history: int = 32
    noise_levels: tuple[float, ...] = NOISE_LEVELS
    drift_levels: tuple[float, ...] = DRIFT_LEVELS
    drift_sigma: float = 0.0
    """Std of the latent perturbation on top of the drift."""
    seed: int = 0


def _summary(result: dict) -> dict:
    return {"mean": round(result["mean"], 5), "per_step": [round(x, 5) for x in result["per_step"]]}


def evaluate_world_models(
    models: dict[str, WorldModel], heldout: dict[str, torch.Tensor], cfg: SuiteConfig = SuiteConfig()
) -> dict:
    """Every figure of the suite for every model; `heldout` holds (B, T, .) physical states/actions.

    Errors are in each model's normalized space (the models of one comparison share the training
    data, hence the statistics); hold-last uses the first model's. A model given the robots'
    parameters reads them from `heldout["robot_params"]`.
    """
    m = cfg.history
    params_n = {name: heldout_params_n(model, heldout) for name, model in models.items()}
    first = next(iter(models.values()))
    s_ref = first.normalizer.state(heldout["state"])
    out: dict = {
        "heldout": {"trajectories": int(s_ref.shape[0]), "length": int(s_ref.shape[1]), "history": m},
        "hold_last": _summary(autoregressive_error(hold_last_prediction(s_ref, m), s_ref, m)),
        "models": {},
    }
    jobs = [(name, None, None) for name in models]
    jobs += [(name, sigma, None) for name in models for sigma in cfg.noise_levels]
    latent = [name for name, model in models.items() if model.has_latent]
    jobs += [(name, None, mu) for name in latent for mu in cfg.drift_levels]
    for name, sigma, mu in tqdm(jobs, desc="world-model evaluation", unit="rollout"):
        model = models[name]
        s_n, a_n = model.normalizer.state(heldout["state"]), model.normalizer.action(heldout["action"])
        g = torch.Generator().manual_seed(cfg.seed)
        latent = LatentNoise(sigma=cfg.drift_sigma, mu=mu) if mu is not None else None
        pred = rollout_trajectories(model, s_n, a_n, m, sigma or 0.0, latent, g, params_n[name])
        result = _summary(autoregressive_error(pred, s_n, m))
        entry = out["models"].setdefault(name, {"noise": {}, "latent_drift": {}})
        if sigma is not None:
            entry["noise"][str(sigma)] = result
        elif mu is not None:
            entry["latent_drift"][str(mu)] = result
        else:
            entry.update(result)
            if model.ensemble_size > 1:
                entry["uncertainty_calibration"] = uncertainty_calibration(
                    model, s_n, a_n, m, params_n=params_n[name]
                )
    return out
