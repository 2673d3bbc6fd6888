"""Build any world model by name, and save/load checkpoints that carry their architecture."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from rwm.models.base import WorldModel
from rwm.models.ensemble import RWMEnsemble, RWMEnsembleConfig, compose_ensemble
from rwm.models.mlp import MLPConfig, MLPWorldModel
from rwm.models.rssm import RSSMConfig, RSSMWorldModel
from rwm.models.rwm import RobotWorldModel, RWMConfig
from rwm.models.transformer import TransformerConfig, TransformerWorldModel

ARCHITECTURES: dict[str, tuple[type, type]] = {
    "rwm": (RobotWorldModel, RWMConfig),
    "rwm_ensemble": (RWMEnsemble, RWMEnsembleConfig),
    "mlp": (MLPWorldModel, MLPConfig),
    "rssm": (RSSMWorldModel, RSSMConfig),
    "transformer": (TransformerWorldModel, TransformerConfig),
}


def build_world_model(arch: str, config: dict[str, Any] | None = None) -> WorldModel:
    """A fresh model of architecture `arch` (`ARCHITECTURES`); config overrides defaults."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown world-model architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    cls, cfg_cls = ARCHITECTURES[arch]
    cfg = dict(config or {})
    for key, value in cfg.items():
        if isinstance(value, list):
            cfg[key] = tuple(value)
    return cls(cfg_cls(**cfg))


def model_config(model: WorldModel) -> dict[str, Any]:
    """(arch, config) of a model, as stored in checkpoints."""
    arch = next(name for name, (cls, _) in ARCHITECTURES.items() if type(model) is cls)
    return {"arch": arch, "config": asdict(model.cfg)}


def save_checkpoint(model: WorldModel, path: str | Path, **extra: Any) -> None:
    """Write model weights, normalization and architecture (atomically: temp file, then rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model": model.state_dict(), **model_config(model), **extra}, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> tuple[WorldModel, dict[str, Any]]:
    """The model of a checkpoint (eval mode) and the checkpoint's other entries."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build_world_model(ckpt.get("arch", "rwm"), ckpt.get("config") if "arch" in ckpt else None)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, {k: v for k, v in ckpt.items() if k not in ("model", "config", "arch")}


def load_robot_checkpoint(path: str | Path) -> tuple[WorldModel, dict[str, Any]]:
    """`load_checkpoint` for work on a robot's own data (bags), which carries no simulated robot's
    parameters: a model that needs them is refused before any work."""
    model, extra = load_checkpoint(path)
    if model.robot_param_dim:
        raise ValueError(
            f"{path} takes each simulated robot's parameters, which a robot's bags do not carry; "
            "use a model trained without --robot-params"
        )
    return model, extra


def with_ensemble(model: WorldModel, members: int, perturbation: float = 0.1, seed: int = 0) -> WorldModel:
    """`model` grown to an ensemble of `members` state heads (RWM-U): its weights, normalization and
    first member kept, each new member a copy of the first with every weight perturbed by Gaussian
    noise of `perturbation` times that tensor's std. Members started at random instead made the
    ensemble's mean much worse than the model it grew from for a long time (held-out AR error 0.82
    after 250 updates, 0.42 after 1000, on `make wm-ensemble`'s data; copies: 0.34 and 0.36); copies
    start as good, and the perturbation and each member's own bootstrap of the data make them
    disagree where the data does not pin them down. Only RWM has the option."""
    arch, config = model_config(model).values()
    if arch != "rwm":
        raise ValueError(f"ensembles are built on RWM, not {arch!r}")
    if members < model.heads_module.members:
        raise ValueError(f"the model already has {model.heads_module.members} members")
    grown = build_world_model(arch, {**config, "ensemble_size": members})
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("heads_module.member_") for k in missing):
        raise ValueError(f"cannot grow the model to an ensemble: missing {missing}, unexpected {unexpected}")
    heads, generator = grown.heads_module, torch.Generator().manual_seed(seed)
    pairs = [(m, heads.mean_head) for m in heads.member_mean_heads]
    pairs += [(m, heads.std_head) for m in heads.member_std_heads]
    with torch.no_grad():
        for member, source in pairs:
            for target, weights in zip(member.parameters(), source.parameters(), strict=True):
                noise = torch.randn(weights.shape, generator=generator) * perturbation * weights.std()
                target.copy_(weights + noise)
    return grown


def ensemble_checkpoints(paths: list[str | Path]) -> tuple[WorldModel, dict[str, Any]]:
    """One ensemble of RWMs trained apart (`rwm.models.ensemble`), from their checkpoints, with the
    first one's training configuration (refinement trains the ensemble with its loss), naming the
    ensemble's architecture."""
    loaded = [load_checkpoint(p) for p in paths]
    try:
        model = compose_ensemble([m for m, _ in loaded])
    except ValueError as err:
        raise ValueError(f"{[str(p) for p in paths]}: {err}") from None
    arch = model_config(model)
    train_config = {**loaded[0][1].get("train_config", {}), "arch": arch["arch"], "model": arch["config"]}
    return model, {"train_config": train_config, "members_from": [str(p) for p in paths]}


def average_checkpoints(paths: list[str | Path]) -> tuple[WorldModel, dict[str, Any]]:
    """One model whose weights are the mean of several checkpoints of the same run.

    Averaging the last checkpoints of a constant-learning-rate run smooths out the iterate noise that
    makes a single final checkpoint a poor basis for comparing models. The checkpoints must share
    architecture and normalization (same run, same data); returns the model and the last one's entries.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0][0]
    states = [m.state_dict() for m, _ in loaded]
    for path, (model, _), state in zip(paths, loaded, states, strict=True):
        if model_config(model) != model_config(first):
            raise ValueError(f"{path}: architecture differs from {paths[0]}")
        for key, value in state.items():
            if key.startswith("normalizer.") and not torch.equal(value, states[0][key]):
                raise ValueError(f"{path}: normalization differs from {paths[0]} (not the same run)")
    mean = {
        key: torch.stack([s[key] for s in states]).mean(0) if value.is_floating_point() else value
        for key, value in states[-1].items()
    }
    model, extra = loaded[-1]
    model.load_state_dict(mean)
    return model, {**extra, "averaged_from": [str(p) for p in paths]}
