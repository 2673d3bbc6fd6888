"""Refine a world model from newly logged bags, validate it, and publish a new version atomically.

The offline trainer's core (the trainer node only finds bags and announces versions). A version is
accepted only if (1) the bags gave usable trajectories (corrupt or truncated ones are reported and
skipped by the loader), (2) its relative autoregressive error on held-out data is no worse than the
current model's (within `tolerance`), and (3) its ONNX export matches torch over a 100-step rollout.
Only then do `rwm_v<N>.onnx` and `rwm_v<N>.pt` appear in the model directory (renamed into place).
The model is refined with the loss it was pretrained with (its checkpoint's `train_config`, through
`WorldModelLearner`), at the refinement's own learning rate, batch and number of updates.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rwm.data.array_dataset import ArrayDataset, ArrayDatasetWriter
from rwm.data.bag_loader import load_bags
from rwm.evaluation.heldout import heldout_error, heldout_tensors
from rwm.export.world_model_onnx import export_world_model
from rwm.models.factory import load_checkpoint, save_checkpoint
from rwm.runners.world_model import WorldModelTrainConfig, train_world_model


@dataclass(frozen=True)
class RefineConfig:
    """A refinement's budget and its acceptance rule (the trainer node's parameters of the same names)."""

    iterations: int = field(default=200, metadata={"range": (1, 1_000_000)})
    """Training iterations per refinement."""
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
    error_after: float | None = None
    parity: float | None = None
    load_report: str = ""


def next_version(model_dir: Path) -> int:
    versions = [
        int(p.stem.split("_v")[-1]) for p in model_dir.glob("rwm_v*.onnx") if p.stem.split("_v")[-1].isdigit()
    ]
    return max(versions, default=0) + 1


def refine_from_bags(
    checkpoint: str | Path,
    bags: list[str | Path],
    heldout: str | Path,
    model_dir: str | Path,
    cfg: RefineConfig = RefineConfig(),
) -> RefineResult:
    """Refine `checkpoint` on the trajectories of `bags`; see the module docstring for the checks."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model, entries = load_checkpoint(checkpoint)
    pretrained = entries.get("train_config", {})
    overrides = {k: v for k, v in (("history", cfg.history), ("horizon", cfg.horizon)) if v is not None}
    train_cfg = WorldModelTrainConfig(
        **{
            **{k: v for k, v in pretrained.items() if k in WorldModelTrainConfig.__dataclass_fields__},
            **overrides,
            "learning_rate": cfg.learning_rate,
            "lr_schedule": "constant",
            "batch_size": cfg.batch_size,
            "iterations": cfg.iterations,
            "eval_interval": cfg.iterations,
            "seed": cfg.seed,
            "threads": cfg.threads,
        }
    )
    learner = train_cfg.learner
    trajectories, report = load_bags(bags)
    usable = [t for t in trajectories if len(t) >= learner.window]
    rows = sum(len(t) for t in usable)
    if not usable:
        return RefineResult(
            False, f"no trajectory of {learner.window} steps in the bags", load_report=str(report)
        )
    held = heldout_tensors(ArrayDataset(heldout), cfg.heldout_length)
    before = heldout_error(model, held, learner.history)["mean"]
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".refine-") as tmp:
        with ArrayDatasetWriter(Path(tmp) / "data") as writer:
            for t in usable:
                writer.add_trajectory(t)
        train_world_model(
            train_cfg, ArrayDataset(Path(tmp) / "data"), None, Path(tmp) / "run", init_model=model
        )
        after = heldout_error(model, held, learner.history)["mean"]
        result = RefineResult(
            False, "", rows=rows, error_before=before, error_after=after, load_report=str(report)
        )
        if not after <= before * (1.0 + cfg.tolerance):
            result.reason = f"held-out AR error got worse: {after:.4f} > {before:.4f}; current model kept"
            return result
        version = next_version(model_dir)
        onnx_tmp, ckpt_tmp = Path(tmp) / "model.onnx", Path(tmp) / "model.pt"
        try:
            result.parity = export_world_model(
                model,
                onnx_tmp,
                {"source": "refine", "version": version, "parent": str(checkpoint), "rows": rows},
            )
        except RuntimeError as e:
            result.reason = f"ONNX export failed validation: {e}"
            return result
        save_checkpoint(model, ckpt_tmp, refine_config=asdict(cfg), parent=str(checkpoint), version=version)
        final_ckpt, final_onnx = model_dir / f"rwm_v{version}.pt", model_dir / f"rwm_v{version}.onnx"
        os.replace(ckpt_tmp, final_ckpt)
        os.replace(onnx_tmp, final_onnx)  # the ONNX last: its appearance announces a complete version
    result.accepted, result.reason, result.version = True, "validated", version
    result.onnx, result.checkpoint = str(final_onnx), str(final_ckpt)
    (model_dir / f"rwm_v{version}.json").write_text(json.dumps(asdict(result), indent=1))
    return result
