"""The world-model monitor's error around each stand hold in a soak's bags: when the policy node's hold
took the stopped robot, and how high the monitor's windowed error rose after it.

The hold is read from the bags: the policy node publishes /rwm/policy/action only while the policy
drives, so a gap of more than 0.1 s in it (or its end, 0.1 s before the recording's) is a hold, or a
watchdog hold or e-stop, which a soak does not have. The stop is the last non-zero /cmd_vel before a
gap of 5 s. Per standing phase: the hold's start after the stop, and the largest 1 s mean and 0.5 s
median of the live error (/rwm/world_model/error, 50 Hz) within 60 s of the stop; then the median over
phases of the error in 0.25 s bins from the hold's start (a rocking robot shows as a bump).

    python tools/standing_phase_errors.py /tmp/soak-*/bags [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

ACTION, CMD_VEL, ERROR = "/rwm/policy/action", "/cmd_vel", "/rwm/world_model/error"
BINS_S = np.arange(-1.0, 6.0, 0.25)


def read(bags: Path) -> dict[str, np.ndarray]:
    typestore = get_typestore(Stores.ROS2_JAZZY)
    out: dict[str, list] = {"action_t": [], "cmd_t": [], "cmd_moving": [], "error_t": [], "error": []}
    for bag in sorted(p for p in bags.iterdir() if (p / "metadata.yaml").is_file()):
        with AnyReader([bag], default_typestore=typestore) as reader:
            conns = [c for c in reader.connections if c.topic in (ACTION, CMD_VEL, ERROR)]
            for c, t, raw in reader.messages(conns):
                if c.topic == ACTION:
                    out["action_t"].append(t * 1e-9)
                    continue
                msg = reader.deserialize(raw, c.msgtype)
                if c.topic == CMD_VEL:
                    out["cmd_t"].append(t * 1e-9)
                    out["cmd_moving"].append(any((msg.linear.x, msg.linear.y, msg.angular.z)))
                else:
                    out["error_t"].append(t * 1e-9)
                    out["error"].append(msg.data)
    return {k: np.asarray(v) for k, v in out.items()}


def phases(d: dict[str, np.ndarray]) -> dict:
    if not (len(d["cmd_t"]) and len(d["error_t"]) and len(d["action_t"])):
        raise SystemExit("the bags hold no /cmd_vel, /rwm/world_model/error or /rwm/policy/action")
    moving = d["cmd_t"][d["cmd_moving"].astype(bool)]
    stops = moving[np.r_[np.diff(moving) > 5.0, True]] if len(moving) else moving
    holds = d["action_t"][np.flatnonzero(np.diff(d["action_t"]) > 0.1)]
    if d["action_t"][-1] < max(d["cmd_t"][-1], d["error_t"][-1]) - 0.1:  # held until the end
        holds = np.r_[holds, d["action_t"][-1]]
    t0 = min(d["cmd_t"][0], d["error_t"][0])
    rows, profile = [], []
    for stop in stops:
        k = np.searchsorted(holds, stop)
        hold = holds[k] if k < len(holds) and holds[k] < stop + 60.0 else np.nan
        e = d["error"][(d["error_t"] > stop) & (d["error_t"] < stop + 60.0)]
        if len(e) < 50:
            continue
        mean_1s = np.convolve(e, np.ones(50) / 50, "valid").max()
        median_05s = np.median(np.lib.stride_tricks.sliding_window_view(e, 25), axis=1).max()
        rows.append(
            {
                "stop_s": round(stop - t0, 2),
                "hold_after_stop_s": None if np.isnan(hold) else round(hold - stop, 2),
                "max_mean_1s": round(float(mean_1s), 3),
                "max_median_05s": round(float(median_05s), 3),
            }
        )
        if not np.isnan(hold):
            bins = [d["error"][(d["error_t"] >= hold + b) & (d["error_t"] < hold + b + 0.25)] for b in BINS_S]
            profile.append([b.mean() if len(b) else np.nan for b in bins])
    profile = np.array(profile) if profile else np.full((1, len(BINS_S)), np.nan)
    seen = np.isfinite(profile).any(axis=0)
    columns = zip(profile.T, seen, strict=True)
    median_profile = [round(float(np.nanmedian(col)), 3) if ok else None for col, ok in columns]
    return {
        "phases": rows,
        "error_after_hold_s": [round(float(b), 2) for b in BINS_S],
        "error_after_hold_median": median_profile,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bags", type=Path, help="a directory of bag directories (a soak's bags)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = phases(read(args.bags))
    for row in result["phases"]:
        print(json.dumps(row))
    print("error from the hold's start (s):", *result["error_after_hold_s"])
    print("median over phases:             ", *result["error_after_hold_median"])
    worst = max((r["max_median_05s"] for r in result["phases"]), default=float("nan"))
    print(f"phases {len(result['phases'])}, largest 0.5 s median {worst:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
