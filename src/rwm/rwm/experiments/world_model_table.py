"""The comparison of the RWM paper's Fig. 6 on our data, plus the Jacobian regularizer: train every
variant with one budget, evaluate all on the held-out set, write results.json, table.md and PNGs.

Variants already trained with the same configuration are reused, so an interrupted run resumes.
Each variant is scored with the mean weights of its last `average_last` checkpoints (`scored.pt`):
at a constant learning rate the final iterate alone moves by more than the gaps between the models.
Tables of several seeds are combined by `summarize_seeds`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from rwm.data.array_dataset import ArrayDataset
from rwm.evaluation.heldout import heldout_tensors
from rwm.evaluation.plots import plot_error_vs_step, plot_latent_drift, plot_noise
from rwm.evaluation.world_model_suite import SuiteConfig, evaluate_world_models
from rwm.models.factory import average_checkpoints, save_checkpoint
from rwm.runners.world_model import WorldModelTrainConfig, train_world_model

VARIANTS: dict[str, dict] = {
    "MLP-TF": {"arch": "mlp", "horizon": 1},
    "MLP-AR": {"arch": "mlp"},
    "RSSM-TF": {"arch": "rssm", "horizon": 1, "iterations_scale": 0.1875},
    "RSSM-AR": {"arch": "rssm", "iterations_scale": 0.1875},
    "Transformer-TF": {"arch": "transformer", "horizon": 1},
    "Transformer-AR": {"arch": "transformer"},
    "RWM-TF": {"arch": "rwm", "horizon": 1},
    "RWM-AR": {"arch": "rwm"},
    "RWM-AR+JR": {"arch": "rwm", "jacobian": True},
}
"""Name -> overrides of the common training config. "jacobian" turns the regularizer on;
"iterations_scale" shortens a run whose iterations cost several times the others' (RSSM: a per-step
Python loop over a 1024-d categorical latent, about 5x RWM's time per iteration on 2 CPU cores)."""
TRAIN_ORDER = ("RWM", "MLP", "Transformer", "RSSM")
"""Architectures in the order they are trained (the main result first); the table keeps VARIANTS' order."""


def variant_config(base: WorldModelTrainConfig, spec: dict, jacobian_weight: float) -> WorldModelTrainConfig:
    spec = dict(spec)
    weight = jacobian_weight if spec.pop("jacobian", False) else 0.0
    scale = spec.pop("iterations_scale", 1.0)
    iterations = max(1, round(base.iterations * scale))
    eval_interval = min(base.eval_interval, iterations)
    return replace(base, jacobian_weight=weight, iterations=iterations, eval_interval=eval_interval, **spec)


def _trained(run_dir: Path, cfg: WorldModelTrainConfig) -> dict | None:
    """The last log entry of a finished run with exactly this config (wherever it ran), else None."""
    cfg_file, log_file = run_dir / "train_config.json", run_dir / "train_log.jsonl"
    if not ((run_dir / "model.pt").is_file() and cfg_file.is_file() and log_file.is_file()):
        return None
    saved, wanted = json.loads(cfg_file.read_text()), json.loads(json.dumps(asdict(cfg)))
    saved.pop("device", None)
    wanted.pop("device", None)
    if saved != wanted:
        return None
    return json.loads(log_file.read_text().splitlines()[-1])


def scored_checkpoints(run_dir: Path, average_last: int) -> list[Path]:
    """The last `average_last` checkpoints of a finished run, oldest first (all of them if it has
    fewer, e.g. a run shortened by `iterations_scale`; the table lists what each row averaged)."""
    if average_last < 1:
        raise ValueError(f"average_last must be at least 1, got {average_last}")
    log = (run_dir / "train_log.jsonl").read_text().splitlines()
    paths = [run_dir / f"model_{json.loads(line)['iteration']}.pt" for line in log]
    paths = [path for path in paths if path.is_file()]
    if not paths:
        raise ValueError(f"{run_dir}: no checkpoint")
    return paths[-average_last:]


def run_table(
    data: str | Path,
    heldout: str | Path,
    out: str | Path,
    base: WorldModelTrainConfig,
    jacobian_weight: float,
    variants: list[str] | None = None,
    suite: SuiteConfig = SuiteConfig(),
    average_last: int = 1,
    heldout_length: int = 400,
) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, held = ArrayDataset(data), ArrayDataset(heldout)
    names = variants or list(VARIANTS)
    training: dict[str, dict] = {}
    for name in sorted(names, key=lambda n: TRAIN_ORDER.index(n.split("-")[0])):
        cfg = variant_config(base, VARIANTS[name], jacobian_weight)
        run_dir = out / name.lower().replace("+", "-")
        summary = _trained(run_dir, cfg)
        if summary is None:
            print(f"== training {name} in {run_dir}", flush=True)
            summary = train_world_model(cfg, train, held, run_dir, heldout_length)
        training[name] = {"dir": str(run_dir), **summary}
    training = {name: training[name] for name in names}
    models, scored = {}, {}
    for name in names:
        run_dir = Path(training[name]["dir"])
        checkpoints = scored_checkpoints(run_dir, average_last)
        models[name], extra = average_checkpoints(checkpoints)
        save_checkpoint(models[name], run_dir / "scored.pt", **extra)
        scored[name] = [path.name for path in checkpoints]
    held_trajs = heldout_tensors(held, heldout_length)
    results = evaluate_world_models(models, held_trajs, replace(suite, history=base.history))
    results["scored_checkpoints"] = scored
    results["training"] = training
    results["base_config"] = asdict(base)
    results["jacobian_weight"] = jacobian_weight
    results["goals"] = goals(table_errors(results))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(markdown_table(results))
    plot_error_vs_step(results, out / "error_vs_step.png")
    pair = ("RWM-AR", "MLP-AR") if {"RWM-AR", "MLP-AR"} <= set(models) else None
    plot_noise(results, out / "noise.png", pair)
    plot_latent_drift(results, out / "latent_drift.png")
    return results


def table_errors(results: dict) -> dict[str, float]:
    """Row name -> relative AR error, hold-last included."""
    return {"hold-last": results["hold_last"]["mean"], **{k: v["mean"] for k, v in results["models"].items()}}


def goals(errors: dict[str, float]) -> dict:
    """The issue's goals: RWM-AR lowest of all, and at most half of RWM-TF's error."""
    out: dict = {}
    if "RWM-AR" in errors:
        others = {k: v for k, v in errors.items() if not k.startswith("RWM-AR")}
        out["rwm_ar_lowest"] = all(errors["RWM-AR"] < v for v in others.values())
        if "RWM-TF" in errors:
            out["rwm_ar_over_rwm_tf"] = round(errors["RWM-AR"] / errors["RWM-TF"], 3)
    return out


def markdown_table(results: dict) -> str:
    h = results["heldout"]
    drift = "0.05"
    lines = [
        f"Relative autoregressive error on {h['trajectories']} held-out trajectories of {h['length']} steps "
        f"(history {h['history']}, then {h['length'] - h['history']} predicted steps); lower is better.",
        "",
        f"| model | relative AR error | noise σ=0.4 | latent drift μ={drift} | iterations | s/iteration "
        "| scored: mean weights of the checkpoints at |",
        "|---|---|---|---|---|---|---|",
        f"| hold-last | {results['hold_last']['mean']:.4f} | | | | | |",
    ]
    for name, entry in results["models"].items():
        noise = entry["noise"].get("0.4", {}).get("mean")
        lat = entry["latent_drift"].get(drift, {}).get("mean")
        sec = results["training"][name]["s_per_iteration"]
        its = results["training"][name]["iteration"]
        cells = [
            f"{entry['mean']:.4f}",
            f"{noise:.4f}" if noise is not None else "",
            f"{lat:.4f}" if lat is not None else "",
            str(its),
            f"{sec:.3f}",
            " / ".join(
                c.removeprefix("model_").removesuffix(".pt") for c in results["scored_checkpoints"][name]
            ),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Goals: {json.dumps(results['goals'])}", ""]
    return "\n".join(lines)


def summarize_seeds(tables: list[str | Path], out: str | Path) -> dict:
    """Mean and spread over seeds of the rows that every table (a `run_table` output) holds; the
    goals are judged on the means. Writes seeds.json and seeds.md to `out`."""
    if len(tables) < 2:
        raise ValueError("need the tables of at least two seeds")
    runs = [json.loads((Path(t) / "results.json").read_text()) for t in tables]
    seeds = [r["base_config"]["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"tables {list(map(str, tables))} repeat a seed: {seeds}")
    rows = [name for name in runs[0]["models"] if all(name in r["models"] for r in runs)]
    if not rows:
        raise ValueError("the tables share no model")
    per_run = [table_errors(r) for r in runs]
    errors = {name: [e[name] for e in per_run] for name in ["hold-last", *rows]}
    summary = {
        "tables": [str(t) for t in tables],
        "seeds": seeds,
        "errors": errors,
        "mean": {k: round(float(np.mean(v)), 5) for k, v in errors.items()},
        "std": {k: round(float(np.std(v)), 5) for k, v in errors.items()},
    }
    summary["goals"] = goals(summary["mean"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(summary, indent=1))
    header = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"Relative autoregressive error over {len(seeds)} seeds, each run scored as in its table; "
        "lower is better.",
        "",
        f"| model | {header} | mean | std |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    for name in errors:
        cells = [f"{e:.4f}" for e in errors[name]] + [
            f"{summary['mean'][name]:.4f}",
            f"{summary['std'][name]:.4f}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Goals on the means: {json.dumps(summary['goals'])}", ""]
    (out / "seeds.md").write_text("\n".join(lines))
    return summary
