"""Pretrain a world model on array datasets: the runner around `WorldModelLearner` (windows of M + N
steps sampled, updates, the relative autoregressive error on held-out trajectories, logs, checkpoints).

On the CPU or a CUDA device (`device`); started by `torchrun --nproc_per_node W`, data-parallel over
W processes (`rwm.training.distributed`): the batch is the global one, split over them."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rwm.data.array_dataset import ArrayDataset
from rwm.evaluation.heldout import heldout_error, heldout_tensors
from rwm.models.base import WorldModel
from rwm.models.factory import build_world_model, save_checkpoint
from rwm.training.distributed import start, stop
from rwm.training.latent_regularization import LatentNoise
from rwm.training.learner import LearnerConfig, WorldModelLearner


@dataclass
class WorldModelTrainConfig:
    """Paper defaults: M = 32, N = 8, lr 1e-4, weight decay 1e-5, batch 1024. The loss and optimizer
    fields are the learner's (`learner`); checkpoints keep them all as `train_config`."""

    arch: str = "rwm"
    """rwm, mlp, rssm or transformer."""
    model: dict[str, Any] = field(default_factory=dict)
    """Overrides of the architecture's config dataclass."""
    history: int = 32
    horizon: int = 8
    """Forecast steps N; 1 is teacher forcing."""
    decay: float = 1.0
    """Forecast decay alpha: weight alpha^k on forecast step k."""
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    """constant, or cosine: annealed to zero over `iterations`, so the final model is not a snapshot
    of an optimizer still bouncing at full step size."""
    weight_decay: float = 1e-5
    batch_size: int = 1024
    iterations: int = 2000
    eval_interval: int = 200
    seed: int = 0
    threads: int = 2
    """Torch threads per process."""
    device: str = "cpu"
    """cpu or cuda (under torchrun, each process on its local GPU)."""
    latent_noise: LatentNoise = field(default_factory=LatentNoise)
    jacobian_weight: float = 0.0
    """lambda of the Jacobian penalty on the latent transition (0 = off)."""
    history_grad_steps: int = 0
    """Backpropagate through only the last this many history steps (0: all; `LearnerConfig`)."""
    precision: str = "float32"
    """float32, or bfloat16 matrix products in the loss's forward pass (`LearnerConfig`)."""
    compile: bool = False
    """Compile the loss (`LearnerConfig`)."""

    def __post_init__(self) -> None:
        if isinstance(self.latent_noise, dict):  # read back from a checkpoint's train_config
            self.latent_noise = LatentNoise(**self.latent_noise)

    @property
    def learner(self) -> LearnerConfig:
        return replace(LearnerConfig.from_dict(asdict(self)), precision=self.precision, compile=self.compile)


class WindowSampler:
    """Uniformly random windows of `length` rows that stay inside one trajectory."""

    def __init__(self, dataset: ArrayDataset, length: int, seed: int) -> None:
        self.dataset, self.length = dataset, length
        self.starts = dataset.windows(length)
        if len(self.starts) == 0:
            raise ValueError(f"{dataset.path}: no trajectory holds {length} steps")
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int, rows: slice = slice(None)) -> dict[str, torch.Tensor]:
        """A batch of windows, or the `rows` of it (data-parallel processes draw the same batch)."""
        starts = self.rng.choice(self.starts, size=batch)[rows]
        arrays = self.dataset.gather(starts, self.length)
        return {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}


def train_world_model(
    cfg: WorldModelTrainConfig,
    train: ArrayDataset,
    heldout: ArrayDataset | None,
    out_dir: str | Path,
    heldout_length: int = 400,
    init_model: WorldModel | None = None,
) -> dict | None:
    """Train a world model; checkpoints `model_<it>.pt`, `train_log.jsonl` go to out_dir.

    `init_model` refines an existing model (its architecture and normalization are kept) instead of
    building a fresh one. Returns the last log entry, with the training time and time per iteration
    (the losses averaged over the processes); None in data-parallel processes other than the first,
    which alone logs, evaluates and writes.
    """
    parallel = start(cfg.device)
    rows = parallel.shard(cfg.batch_size)
    out = Path(out_dir)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    model = build_world_model(cfg.arch, cfg.model) if init_model is None else init_model
    for data in (train, heldout):
        if model.robot_param_dim and data is not None and data.robot_params is None:
            raise ValueError(f"{data.path} has no robot parameters for a model that takes them")
    if init_model is None:
        params = train.robot_params if model.robot_param_dim else None
        model.normalizer.fit(train.state, train.action, params)
    model.to(parallel.device)
    learner = WorldModelLearner(model, cfg.learner, total_updates=cfg.iterations, parallel=parallel)
    parallel.seed(cfg.seed)  # the same model everywhere (seeded above, DDP broadcasts it); own noise
    sampler = WindowSampler(train, cfg.learner.window, cfg.seed)
    held = None
    if heldout is not None and parallel.is_main:
        held = {k: v.to(parallel.device) for k, v in heldout_tensors(heldout, heldout_length).items()}
    if parallel.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        log = (out / "train_log.jsonl").open("w")
    train_s = 0.0
    summary: dict = {}
    for it in range(1, cfg.iterations + 1):
        tick = time.perf_counter()
        losses = learner.update(sampler.sample(cfg.batch_size, rows))
        train_s += time.perf_counter() - tick
        if it % cfg.eval_interval == 0 or it == cfg.iterations:
            losses = parallel.mean(losses)
            if not parallel.is_main:
                continue
            entry = {
                "iteration": it,
                "train_s": round(train_s, 1),
                "s_per_iteration": round(train_s / it, 4),
                "lr": learner.learning_rate,
                **{k: round(v, 5) for k, v in losses.items()},
            }
            if held is not None:
                entry["heldout_ar_error"] = round(heldout_error(model, held, cfg.history)["mean"], 5)
            log.write(json.dumps(entry) + "\n")
            log.flush()
            print(json.dumps(entry), flush=True)
            save_checkpoint(model, out / f"model_{it}.pt", train_config=asdict(cfg), iteration=it)
            summary = entry
    stop(parallel)
    if not parallel.is_main:
        return None
    log.close()
    save_checkpoint(model, out / "model.pt", train_config=asdict(cfg), iteration=cfg.iterations)
    return summary
