"""Train a world model on array datasets: sliding windows of M + N steps, Adam, checkpoints, and the
relative autoregressive error on held-out trajectories as the validation figure."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from rwm.data.array_dataset import ArrayDataset
from rwm.evaluation.autoregressive_error import autoregressive_error, rollout_trajectories
from rwm.models.rwm import RobotWorldModel, RWMConfig
from rwm.training.losses import world_model_loss


@dataclass
class WorldModelTrainConfig:
    """Paper defaults: M = 32, N = 8, lr 1e-4, weight decay 1e-5, batch 1024."""

    history: int = 32
    horizon: int = 8
    """Forecast steps N; 1 is teacher forcing."""
    decay: float = 1.0
    """Forecast decay alpha: weight alpha^k on forecast step k."""
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    batch_size: int = 1024
    iterations: int = 2000
    eval_interval: int = 200
    seed: int = 0
    threads: int = 2
    model: RWMConfig = field(default_factory=RWMConfig)


class WindowSampler:
    """Uniformly random windows of `length` rows that stay inside one trajectory."""

    def __init__(self, dataset: ArrayDataset, length: int, seed: int) -> None:
        self.dataset, self.length = dataset, length
        self.starts = dataset.windows(length)
        if len(self.starts) == 0:
            raise ValueError(f"{dataset.path}: no trajectory holds {length} steps")
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        starts = self.rng.choice(self.starts, size=batch)
        arrays = self.dataset.gather(starts, self.length)
        return {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}


def heldout_tensors(dataset: ArrayDataset, length: int) -> dict[str, torch.Tensor]:
    """Every held-out trajectory of at least `length` rows, cut to `length`: (B, length, .)."""
    trajs = [dataset.trajectory(i) for i in range(dataset.num_trajectories)]
    trajs = [t for t in trajs if len(t) >= length]
    if not trajs:
        raise ValueError(f"{dataset.path}: no trajectory of {length} steps")
    return {
        "state": torch.from_numpy(np.stack([t.state[:length] for t in trajs]).astype(np.float32)),
        "action": torch.from_numpy(np.stack([t.action[:length] for t in trajs]).astype(np.float32)),
    }


def evaluate_heldout(model: RobotWorldModel, heldout: dict[str, torch.Tensor], history: int) -> dict:
    """Relative AR error of `model` on held-out trajectories (normalized space)."""
    model.eval()
    s_n = model.normalizer.state(heldout["state"])
    a_n = model.normalizer.action(heldout["action"])
    result = autoregressive_error(rollout_trajectories(model, s_n, a_n, history), s_n, history)
    model.train()
    return result


def train_world_model(
    cfg: WorldModelTrainConfig,
    train: ArrayDataset,
    heldout: ArrayDataset | None,
    out_dir: str | Path,
    heldout_length: int = 400,
) -> dict:
    """Train RWM; checkpoints `model_<it>.pt` and `train_log.jsonl` go to out_dir. Returns a summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    model = RobotWorldModel(cfg.model)
    model.normalizer.fit(train.state, train.action)
    window = cfg.history + max(cfg.horizon, 1)
    sampler = WindowSampler(train, window, cfg.seed)
    held = heldout_tensors(heldout, heldout_length) if heldout is not None else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    log = (out / "train_log.jsonl").open("a")
    start = time.perf_counter()
    summary: dict = {}
    for it in range(1, cfg.iterations + 1):
        batch = sampler.sample(cfg.batch_size)
        s_n, a_n = model.normalizer.state(batch["state"]), model.normalizer.action(batch["action"])
        losses = world_model_loss(model, s_n, a_n, batch["contacts"], cfg.history, cfg.horizon, cfg.decay)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        if it % cfg.eval_interval == 0 or it == cfg.iterations:
            entry = {
                "iteration": it,
                "wall_s": round(time.perf_counter() - start, 1),
                **{k: v.item() for k, v in losses.items()},
            }
            if held is not None:
                entry["heldout_ar_error"] = evaluate_heldout(model, held, cfg.history)["mean"]
            log.write(json.dumps(entry) + "\n")
            log.flush()
            print(json.dumps(entry), flush=True)
            torch.save(
                {"model": model.state_dict(), "config": asdict(cfg), "iteration": it}, out / f"model_{it}.pt"
            )
            summary = entry
    log.close()
    return summary
