"""Data-parallel training under `torchrun --nproc_per_node 2` (gloo, on the CPU): the world model takes
the steps one process takes on the same global batch, up to the order of floating-point sums (teacher
forcing: the loss draws no noise, which each process would draw for itself); PPO and the MBPO loop,
through rsl-rl's multi-GPU support, keep their replicas one model while each process simulates its
own robots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rwm.training.distributed import start

TRAIN = ["--iterations", "6", "--eval-interval", "2", "--batch-size", "16", "--history", "8"]
TRAIN += ["--horizon", "1", "--lr", "1e-3", "--threads", "1", "--seed", "3"]


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_train_as_one_on_the_same_batch(tmp_path: Path) -> None:
    from rwm.data.collect import collect_dataset

    collect_dataset(tmp_path / "data", steps=60, num_envs=4, controller="perturb", seed=1, num_threads=1)
    args = ["-m", "rwm.cli", "train-wm", "--data", str(tmp_path / "data"), *TRAIN]
    one = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=300
    )
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run(
        [*torchrun, *args, "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count('"iteration": 6') == 2, "the first process alone reports (log line and summary)"
    for a, b in zip(_log(tmp_path / "one"), _log(tmp_path / "two"), strict=True):
        assert a["iteration"] == b["iteration"]
        assert b["total"] == pytest.approx(a["total"], rel=1e-4, abs=1e-4), (a, b)
    first = _log(tmp_path / "one")[0]["total"]
    assert _log(tmp_path / "one")[-1]["total"] < first, "it trained"
    w1 = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["model"]
    w2 = torch.load(tmp_path / "two" / "model.pt", weights_only=True)["model"]
    for name, value in w1.items():
        np.testing.assert_allclose(w2[name].numpy(), value.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_ppo_replicas_stay_one_model_while_each_process_simulates_its_own_robots(tmp_path: Path) -> None:
    """rsl-rl averages the gradients over the processes, so the replicas end bitwise equal though each
    learned from other robots; the first process alone saves and reports, counting both processes'
    transitions."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = [
        "-m",
        "rwm.cli",
        "train-ppo",
        "--num-envs",
        "8",
        "--iterations",
        "3",
        "--seed",
        "5",
        "--threads",
        "1",
    ]
    two = subprocess.run(
        [*torchrun, *args, "--log-dir", str(tmp_path / "two")], capture_output=True, text=True, timeout=300
    )
    assert two.returncode == 0, two.stderr[-3000:]
    # the other process may print after the summary: read the one JSON object where it starts
    summary, _ = json.JSONDecoder().raw_decode(two.stdout, two.stdout.index("{\n"))
    assert summary["processes"] == 2 and summary["transitions"] == 2 * 3 * 8 * 24
    assert summary["replica_max_abs_diff"] == 0.0
    assert sorted(p.name for p in (tmp_path / "two").glob("model_*.pt")) == ["model_0.pt", "model_2.pt"]


MBPO_LOOP = """
import json
import sys

sys.path.insert(0, {tests!r})
from test_mbpo import _small_loop

from rwm.runners.mbpo import train_mbpo

loop = _small_loop(iterations={iterations})
summary = train_mbpo(loop, {world_model!r}, {pretrain!r}, {out!r}, resume={resume})
if summary is not None:
    print("SUMMARY " + json.dumps(summary))
"""


@pytest.mark.slow
def test_mbpo_runs_data_parallel_each_process_with_its_own_robots(tmp_path: Path) -> None:
    """Two processes each collect with their own robots into their own buffer; DDP and rsl-rl keep one
    world model and one policy (bitwise), the first process reports what both collected, and each
    keeps its own resume state; states of different iterations (a process killed before it saved)
    stop every process instead of resuming them apart."""
    from test_mbpo import _small_world_model

    data = _small_world_model(tmp_path)
    script = tmp_path / "loop.py"
    out = tmp_path / "out"
    values = {"world_model": str(tmp_path / "wm.pt"), "pretrain": str(tmp_path / "pre"), "out": str(out)}
    script.write_text(
        MBPO_LOOP.format(tests=str(Path(__file__).parent), iterations=2, resume=False, **values)
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run([*torchrun, str(script)], capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    (line,) = [x for x in two.stdout.splitlines() if x.startswith("SUMMARY ")]
    summary = json.loads(line.removeprefix("SUMMARY "))
    per_process = 4 * 11 + 4 * 20  # the stand-in start, then one collection (as in one process)
    assert summary["processes"] == 2 and summary["collected_transitions"] == 2 * per_process
    assert summary["real_transitions"] == len(data) + 2 * per_process
    assert summary["replica_max_abs_diff"] == 0.0
    assert (out / "loop_state.pt").is_file() and (out / "loop_state_rank1.pt").is_file()

    (out / "loop_state_rank1.pt").unlink()
    script.write_text(MBPO_LOOP.format(tests=str(Path(__file__).parent), iterations=3, resume=True, **values))
    apart = subprocess.run([*torchrun, str(script)], capture_output=True, text=True, timeout=600)
    assert apart.returncode != 0 and "the processes disagree on the iteration" in apart.stderr, apart.stderr[
        -3000:
    ]


def test_torchrun_starts_only_the_commands_that_train_data_parallel(monkeypatch, tmp_path: Path) -> None:
    from rwm.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit, match="rwm select-policy runs in one process"):
        main(["select-policy", "--log-dir", str(tmp_path), "--out", str(tmp_path / "x.onnx")])


def test_unknown_device_or_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="one of"):
        start("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            start("cuda")
