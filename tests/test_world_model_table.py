"""The results table's protocol on a tiny collected set: runs are scored with averaged checkpoints,
and tables of several seeds are combined with the goals judged on the means."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from rwm.evaluation.world_model_suite import SuiteConfig
from rwm.experiments.world_model_table import run_table, scored_checkpoints, summarize_seeds
from rwm.models.factory import load_checkpoint
from rwm.runners.world_model import WorldModelTrainConfig

VARIANTS = ["RWM-TF", "RWM-AR"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    from rwm.data.collect import collect_dataset

    root = tmp_path_factory.mktemp("wm_table")
    collect_dataset(root / "train", steps=60, num_envs=4, controller="perturb", seed=1, num_threads=1)
    collect_dataset(root / "held", steps=40, num_envs=2, controller="perturb", seed=2, num_threads=1)
    base = WorldModelTrainConfig(
        history=8,
        horizon=3,
        batch_size=16,
        iterations=6,
        eval_interval=2,
        model={"hidden_size": 32, "head_hidden": 16},
        threads=1,
    )
    suite = SuiteConfig(noise_levels=(0.1,), drift_levels=(0.05,))
    out = {}
    for seed in (0, 1):
        out[seed] = root / f"seed_{seed}"
        cfg = replace(base, seed=seed)
        run_table(
            root / "train",
            root / "held",
            out[seed],
            cfg,
            1e-3,
            VARIANTS,
            suite,
            average_last=2,
            heldout_length=30,
        )
    return root, out


def test_each_run_is_scored_with_its_last_checkpoints_averaged(tables):
    _, out = tables
    results = json.loads((out[0] / "results.json").read_text())
    assert list(results["models"]) == VARIANTS
    assert results["scored_checkpoints"]["RWM-AR"] == ["model_4.pt", "model_6.pt"]
    run = out[0] / "rwm-ar"
    scored, extra = load_checkpoint(run / "scored.pt")
    a, b = (load_checkpoint(run / name)[0].state_dict() for name in ("model_4.pt", "model_6.pt"))
    for key, value in scored.state_dict().items():
        assert torch.allclose(value, (a[key] + b[key]) / 2, atol=1e-7), key
    assert [p.rsplit("/", 1)[-1] for p in extra["averaged_from"]] == ["model_4.pt", "model_6.pt"]
    assert "| 4 / 6 |" in (out[0] / "table.md").read_text()
    assert results["goals"]["rwm_ar_over_rwm_tf"] == pytest.approx(
        results["models"]["RWM-AR"]["mean"] / results["models"]["RWM-TF"]["mean"], abs=1e-3
    )
    assert [p.name for p in scored_checkpoints(run, 5)] == ["model_2.pt", "model_4.pt", "model_6.pt"]
    with pytest.raises(ValueError, match="at least 1"):
        scored_checkpoints(run, 0)


def test_seed_summary_is_the_mean_of_the_tables_and_judges_goals_on_it(tables):
    root, out = tables
    summary = summarize_seeds([out[0], out[1]], root / "seeds")
    per_seed = [json.loads((out[s] / "results.json").read_text()) for s in (0, 1)]
    assert summary["seeds"] == [0, 1]
    for name in VARIANTS:
        errors = [r["models"][name]["mean"] for r in per_seed]
        assert summary["errors"][name] == errors
        assert summary["mean"][name] == pytest.approx(np.mean(errors), abs=1e-5)
    assert summary["goals"]["rwm_ar_lowest"] == (
        summary["mean"]["RWM-AR"] < min(summary["mean"]["RWM-TF"], summary["mean"]["hold-last"])
    )
    assert "| RWM-AR |" in (root / "seeds" / "seeds.md").read_text()
    with pytest.raises(ValueError, match="repeat a seed"):
        summarize_seeds([out[0], out[0]], root / "again")
    with pytest.raises(ValueError, match="at least two"):
        summarize_seeds([out[0]], root / "again")


def test_train_wm_init_continues_a_checkpoint_with_its_architecture_and_normalization(tables):
    from rwm.cli import main

    root, out = tables
    init = out[0] / "rwm-ar" / "model.pt"
    args = ["train-wm", "--data", str(root / "train"), "--init", str(init), "--out", str(root / "cont")]
    args += ["--history", "8", "--horizon", "3", "--batch-size", "8", "--iterations", "2", "--threads", "1"]
    assert main(args) == 0
    before, _ = load_checkpoint(init)
    after, extra = load_checkpoint(root / "cont" / "model.pt")
    assert extra["train_config"]["model"] == {"hidden_size": 32, "head_hidden": 16}
    old, new = before.state_dict(), after.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith("normalizer."))
    assert any(not torch.equal(old[k], new[k]) for k in old if not k.startswith("normalizer."))
