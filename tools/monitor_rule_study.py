"""Which window statistic, window and hold should the monitor's rule use? For each candidate, the
threshold is calibrated as `rwm export-wm` calibrates it (the maximum window statistic over the
calibration set x the margin) and the rule is then run over robots driven through the policy node's
control loop, standing 3 s first as the main job does: false alarms on the nominal robot (validation
seeds), and on the shifted robots how many are flagged within 2 s of their first moving command;
with `--bags`, also over a recorded soak of the nominal robot (the stack's own timing). The same
errors serve every candidate.

    python tools/monitor_rule_study.py [--statistics median mean] [--windows 50 25 15] [--holds 10 5]
        [--seeds 4343 4444] [--bags DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rwm.cli.common import bag_directories  # noqa: E402
from rwm.control.safety import SafetyConfig  # noqa: E402
from rwm.control.simulated import SimulatedControlLoops  # noqa: E402
from rwm.data.array_dataset import ArrayDataset  # noqa: E402
from rwm.data.bag_loader import load_bags  # noqa: E402
from rwm.evaluation.heldout import heldout_tensors  # noqa: E402
from rwm.evaluation.monitor_eval import (  # noqa: E402
    MonitorEvalConfig,
    alarm_times,
    first_moving_times,
    one_step_errors,
    recorded_runs,
    recorded_step_errors,
    rule_over_runs,
)
from rwm.export.anomaly import AnomalyCalibration, calibrate_threshold, windowed  # noqa: E402
from rwm.export.runtime import OnnxPolicy, OnnxWorldModel  # noqa: E402
from rwm.export.world_model_onnx import validation_errors  # noqa: E402
from rwm.models.factory import load_checkpoint  # noqa: E402
from rwm.robot import contract as C  # noqa: E402
from rwm.sim.variants import variants_named  # noqa: E402


def _judged(rule: dict, sets: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The rule over simulated (errors, moving) sets: robots alarmed, how soon after moving, and the
    largest window statistic against the threshold."""
    alarmed = within = robots = 0
    delays, peaks = [], []
    for errors, moving in sets:
        peaks.append(
            np.nanmax(windowed(errors[1 + rule["warmup_steps"] :], rule["window_steps"], rule["statistic"]))
        )
        times = alarm_times(errors, rule, C.POLICY_DT)
        since = np.maximum(times - np.nan_to_num(first_moving_times(moving, C.POLICY_DT), nan=np.inf), 0.0)
        alarmed += int(np.isfinite(times).sum())
        within += int((since <= 2.0).sum())
        robots += errors.shape[1]
        delays.extend(since[np.isfinite(since)])
    return {
        "robots": robots,
        "alarmed": alarmed,
        "within_2s_of_moving": within,
        "after_moving_s_median_max": [
            round(float(np.median(delays)), 2) if delays else None,
            round(float(np.max(delays)), 2) if delays else None,
        ],
        "windowed_error_max_over_threshold": round(float(max(peaks)) / rule["threshold"], 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="models/anymal_d_rwmu.pt")
    ap.add_argument("--onnx", default="models/anymal_d_rwmu.onnx")
    ap.add_argument("--policy", default="models/anymal_d_ppo.onnx")
    ap.add_argument("--calibration", default="data/monitor_calibration")
    ap.add_argument("--length", type=int, default=1500)
    ap.add_argument("--windows", type=int, nargs="+", default=[50, 25, 15])
    ap.add_argument("--statistics", nargs="+", default=["median", "mean"])
    ap.add_argument("--holds", type=int, nargs="+", default=[10, 5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[4343, 4444], help="nominal validation seeds")
    ap.add_argument("--shifted", nargs="+", default=["payload_15kg", "motors_75", "delay_20ms"])
    ap.add_argument("--robots", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument(
        "--bags", nargs="+", help="recorded bags of a nominal robot (a soak's): false alarms per rule"
    )
    ap.add_argument("--stand-first", type=float, default=3.0, help="s standing before the first command")
    ap.add_argument("--out", default="runs/monitor_rule_study.json")
    args = ap.parse_args()
    torch.set_num_threads(2)

    model = load_checkpoint(args.checkpoint)[0]
    data = heldout_tensors(ArrayDataset(args.calibration), args.length)
    calib_errors = [validation_errors(model, data)]
    policy, world_model = OnnxPolicy(args.policy), OnnxWorldModel(args.onnx)
    variants = variants_named(["nominal", *args.shifted])
    runs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name, seeds in [("nominal", args.seeds)] + [(n, args.seeds) for n in args.shifted]:
        for seed in seeds:
            cfg = MonitorEvalConfig(
                robots=args.robots, duration_s=args.duration, seed=seed, stand_first_s=args.stand_first
            )
            loops = SimulatedControlLoops(policy, policy.obs_dim, args.robots, SafetyConfig())
            errors, moving = one_step_errors(
                policy, policy.obs_dim, world_model, replace(cfg, variant=variants[name]), loops
            )
            runs.setdefault(name, []).append((errors, moving))
            print(f"{name} seed {seed}: simulated", flush=True)

    bag_runs = []
    if args.bags:
        bag_runs = recorded_step_errors(world_model, recorded_runs(load_bags(bag_directories(args.bags))[0]))
        print(f"bags: {len(bag_runs)} runs scored", flush=True)

    results = []
    for statistic, window, hold in itertools.product(args.statistics, args.windows, args.holds):
        cfg = AnomalyCalibration(window_steps=window, hold_steps=hold, statistic=statistic)
        rule = calibrate_threshold(calib_errors, cfg)
        row = {
            "statistic": statistic,
            "window_steps": window,
            "hold_steps": hold,
            "threshold": rule["threshold"],
        }
        for name, sets in runs.items():
            row[name] = _judged(rule, sets)
        if bag_runs:
            alarms, windows = rule_over_runs(rule, rule["warmup_steps"], bag_runs)
            row["bags"] = {
                "alarms": len(alarms),
                "windowed_error_max_over_threshold": round(float(windows.max()) / rule["threshold"], 3),
            }
        results.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rules": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
