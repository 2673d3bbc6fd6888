"""Refine a world model from the robot's logged bags, validate it, and publish a new version atomically.

The offline trainer's core (the trainer node only finds bags and announces versions). The model is
refined with the loss it was pretrained with (its checkpoint's `train_config`, `WorldModelLearner`)
on a replay buffer: the new bags' trajectories, without their last `bag_heldout_fraction` of time,
mixed with the pretraining data (`pretrain_fraction` of every batch) so that it learns the new robot
without forgetting the old one. Every `validate_every` iterations the iterate is scored on both
held-out sets, and the candidate is the iterate with the lowest error on the new bags' tail among
those that pass (b): on a robot unlike the pretraining one, training first learns the new robot and
then drifts from the old one, so the last iterate is often not the one to keep. A version is
accepted only if
  (a) its relative AR error on the held-out tail of the new bags is lower than the current model's,
  (b) its error on the held-out set shipped with the models is not worse beyond `tolerance`, and
  (c) its ONNX export matches torch over a 100-step rollout.
The tail both selects the iterate and accepts it: (a) is a validation figure, not a test figure.
Only then do `rwm_v<N>.onnx` and `rwm_v<N>.pt` appear in the model directory (renamed into place).
Bags that cannot be read are reported and skipped (the loader), never retried by the trainer until
they change.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rwm.data.array_dataset import ArrayDataset
from rwm.data.bag_loader import load_bags
from rwm.evaluation.heldout import heldout_error, heldout_tensors, trajectory_tensors
from rwm.export.world_model_onnx import export_world_model
from rwm.models.factory import load_robot_checkpoint, save_checkpoint
from rwm.storage.replay_buffer import ReplayBuffer
from rwm.training.learner import LearnerConfig, WorldModelLearner


@dataclass(frozen=True)
class RefineConfig:
    """A refinement's budget and its acceptance rule (the trainer node's parameters of the same names)."""

    iterations: int = field(default=200, metadata={"range": (1, 1_000_000)})
    """Training iterations per refinement."""
    validate_every: int = field(default=25, metadata={"range": (1, 1_000_000)})
    """Score the iterate on both held-out sets every this many iterations (and after the last)."""
    batch_size: int = field(default=256, metadata={"range": (1, 65536)})
    """Windows per iteration."""
    learning_rate: float = field(default=1e-4, metadata={"range": (0.0, 1.0)})
    """Adam learning rate (constant)."""
    history: int | None = None
    """History of the loss and the held-out error; None: the checkpoint's."""
    horizon: int | None = None
    """Forecast steps of the loss; None: the checkpoint's."""
    heldout_length: int = field(default=400, metadata={"range": (2, 100_000)})
    """Held-out trajectories are cut to this many steps."""
    pretrain_fraction: float = field(default=0.5, metadata={"range": (0.0, 1.0)})
    """Share of every batch drawn from the pretraining data (when there is some): the anchor against
    forgetting."""
    bag_heldout_fraction: float = field(default=0.2, metadata={"range": (0.05, 0.9)})
    """The last part (in time) of every new trajectory is held out to validate on, not trained on."""
    tail_forecast: int = field(default=50, metadata={"range": (1, 1000)})
    """Steps predicted after the history when scoring the held-out tail of the new bags."""
    tolerance: float = 0.0
    """Accept a held-out error up to (1 + tolerance) x the current model's."""
    seed: int = 0
    """Seed of the window sampling."""
    threads: int = field(default=2, metadata={"range": (1, 256)})
    """Torch threads."""


@dataclass
class RefineResult:
    accepted: bool
    reason: str
    version: int | None = None
    onnx: str | None = None
    checkpoint: str | None = None
    rows: int = 0
    error_before: float | None = None
    """Relative AR error on the shipped held-out set, before and after (validation (b))."""
    error_after: float | None = None
    new_error_before: float | None = None
    """The same on the held-out tail of the new bags (validation (a))."""
    new_error_after: float | None = None
    pretrain_rows: int = 0
    """Pretraining rows mixed in (0: refined on the bags alone)."""
    iteration: int | None = None
    """The candidate iterate: the best within the tolerance, or (none within it) the best on the tail."""
    validations: list[tuple[int, float, float]] = field(default_factory=list)
    """Every scored iterate: (iteration, shipped-set error, new bags' tail error)."""
    parity: float | None = None
    load_report: str = ""


def next_version(model_dir: Path) -> int:
    versions = [
        int(p.stem.split("_v")[-1]) for p in model_dir.glob("rwm_v*.onnx") if p.stem.split("_v")[-1].isdigit()
    ]
    return max(versions, default=0) + 1


def _split_tails(trajectories, fraction: float, length: int):
    """Each trajectory's first part (to train on) and its last `fraction` cut into windows of `length`
    rows (to validate on); pieces too short for a window are left out."""
    train, tails = [], []
    for t in trajectories:
        cut = int(round(len(t) * (1.0 - fraction)))
        if cut >= length:
            train.append(t.slice(0, cut))
        tail_s, tail_a = t.state[cut:], t.action[cut:]
        for start in range(0, len(tail_s) - length + 1, length):
            tails.append((tail_s[start : start + length], tail_a[start : start + length]))
    return train, tails


def refine_from_bags(
    checkpoint: str | Path,
    bags: list[str | Path],
    heldout: str | Path,
    model_dir: str | Path,
    cfg: RefineConfig = RefineConfig(),
    pretrain: str | Path | None = None,
) -> RefineResult:
    """Refine `checkpoint` on the trajectories of `bags` (mixed with the array dataset `pretrain`, if
    given); see the module docstring for the checks."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model, entries = load_robot_checkpoint(checkpoint)
    learner_cfg = LearnerConfig.from_dict(entries.get("train_config", {}))
    learner_cfg.learning_rate, learner_cfg.lr_schedule = cfg.learning_rate, "constant"
    if cfg.history is not None:
        learner_cfg.history = cfg.history
    if cfg.horizon is not None:
        learner_cfg.horizon = cfg.horizon
    eval_length = learner_cfg.history + cfg.tail_forecast
    trajectories, report = load_bags(bags)
    train, tails = _split_tails(trajectories, cfg.bag_heldout_fraction, max(learner_cfg.window, eval_length))
    rows = sum(len(t.state) for t in train)
    if not train or not tails:
        return RefineResult(
            False,
            f"the bags hold no trajectory long enough to train on and validate with ({eval_length} steps "
            f"after a {1 - cfg.bag_heldout_fraction:.0%} cut): record longer",
            load_report=str(report),
        )
    held = heldout_tensors(ArrayDataset(heldout), cfg.heldout_length)
    new_held = trajectory_tensors([s for s, _ in tails], [a for _, a in tails], eval_length)
    before = heldout_error(model, held, learner_cfg.history)["mean"]
    new_before = heldout_error(model, new_held, learner_cfg.history)["mean"]
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    base = ArrayDataset(pretrain) if pretrain is not None else None
    buffer = ReplayBuffer(base, seed=cfg.seed)
    for t in train:
        buffer.add(t.state, t.action, t.contacts)
    learner = WorldModelLearner(model, learner_cfg)
    online = 1.0 - cfg.pretrain_fraction
    limit = before * (1.0 + cfg.tolerance)
    validations, best, best_state = [], None, None
    for it in range(1, cfg.iterations + 1):
        learner.update(buffer.sample(cfg.batch_size, learner_cfg.window, online_fraction=online))
        if it % cfg.validate_every and it != cfg.iterations:
            continue
        error = heldout_error(model, held, learner_cfg.history)["mean"]
        new_error = heldout_error(model, new_held, learner_cfg.history)["mean"]
        validations.append((it, error, new_error))
        if error <= limit and (best is None or new_error < best[2]):
            best, best_state = validations[-1], copy.deepcopy(model.state_dict())
    if best is not None:
        model.load_state_dict(best_state)
    it, after, new_after = best if best is not None else min(validations, key=lambda v: v[2])
    result = RefineResult(
        False,
        "",
        rows=rows,
        error_before=before,
        error_after=after,
        new_error_before=new_before,
        new_error_after=new_after,
        pretrain_rows=len(base) if base is not None else 0,
        iteration=it,
        validations=validations,
        load_report=str(report),
    )
    if not new_after < new_before:
        learned_by_forgetting = any(v[2] < new_before for v in validations)
        result.reason = (
            f"it did not learn the new data without forgetting: error on the bags' held-out tail "
            f"{new_after:.4f} >= {new_before:.4f} at its best iterate within the tolerance ({it})"
            if learned_by_forgetting
            else f"it did not learn the new data: error on the bags' held-out tail {new_after:.4f} >= "
            f"{new_before:.4f} at its best iterate ({it})"
        ) + "; current model kept"
        return result
    if best is None:
        result.reason = (
            f"it forgot: held-out AR error on the shipped set got worse at every iterate, at least "
            f"{min(v[1] for v in validations):.4f} > {limit:.4f} ({before:.4f} + {cfg.tolerance:.0%}); "
            "current model kept"
        )
        return result
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".refine-") as tmp:
        version = next_version(model_dir)
        onnx_tmp, ckpt_tmp = Path(tmp) / "model.onnx", Path(tmp) / "model.pt"
        try:
            result.parity = export_world_model(
                model,
                onnx_tmp,
                {"source": "refine", "version": version, "parent": str(checkpoint), "rows": rows},
                validation=[held, new_held],  # the monitor's threshold, recalibrated for this version
            )
        except (RuntimeError, ValueError) as e:  # parity, or no window to calibrate the monitor on
            result.reason = f"ONNX export failed validation: {e}"
            return result
        save_checkpoint(
            model,
            ckpt_tmp,
            train_config=entries.get("train_config", {}),
            refine_config=asdict(cfg),
            parent=str(checkpoint),
            version=version,
        )
        final_ckpt, final_onnx = model_dir / f"rwm_v{version}.pt", model_dir / f"rwm_v{version}.onnx"
        os.replace(ckpt_tmp, final_ckpt)
        os.replace(onnx_tmp, final_onnx)  # the ONNX last: its appearance announces a complete version
    result.accepted, result.reason, result.version = True, "validated", version
    result.onnx, result.checkpoint = str(final_onnx), str(final_ckpt)
    (model_dir / f"rwm_v{version}.json").write_text(json.dumps(asdict(result), indent=1))
    return result
