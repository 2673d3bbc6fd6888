"""History M x forecast N sweep of RWM (paper Fig. 5): error and training time per cell, JSON + PNG."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from rwm.data.array_dataset import ArrayDataset
from rwm.evaluation.plots import plot_heatmaps
from rwm.runners.world_model import WorldModelTrainConfig, train_world_model


def run_sweep(
    data: str | Path,
    heldout: str | Path,
    out: str | Path,
    base: WorldModelTrainConfig,
    histories: list[int],
    horizons: list[int],
) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, held = ArrayDataset(data), ArrayDataset(heldout)
    sweep: dict = {"histories": histories, "horizons": horizons, "base_config": asdict(base), "cells": {}}
    for m in histories:
        for n in horizons:
            print(f"== M={m} N={n}", flush=True)
            cfg = replace(base, history=m, horizon=n, eval_interval=base.iterations)
            summary = train_world_model(cfg, train, held, out / f"m{m}_n{n}")
            sweep["cells"][f"{m}x{n}"] = {
                "error": summary["heldout_ar_error"],
                "s_per_iteration": summary["s_per_iteration"],
                "train_s": summary["train_s"],
            }
            (out / "sweep.json").write_text(json.dumps(sweep, indent=1))
    plot_heatmaps(sweep, out / "heatmaps.png")
    return sweep
