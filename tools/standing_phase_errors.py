"""The world-model monitor's error around each stand hold in a soak's bags: when the policy node's hold
took the stopped robot, and how high the monitor's windowed error rose after it.

The hold is read from the bags: the policy node publishes /rwm/policy/action only while the policy
drives, so a gap of more than 0.1 s in it (or its end, 0.1 s before the recording's) is a hold, or a
watchdog hold or e-stop, which a soak does not have. The stop is the last non-zero /cmd_vel before a
gap of 5 s. Per standing phase: the hold's start after the stop, and the largest 1 s mean and 0.5 s
median of the live error (/rwm/world_model/error, 50 Hz) within 60 s of the stop; then the median over
phases of the error in 0.25 s bins from the hold's start (a rocking robot shows as a bump).

    python tools/standing_phase_errors.py /tmp/soak-*/bags [--json OUT]   (in the dev environment)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

import numpy as np  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.typesys import get_typestore  # noqa: E402

from rwm.data.bag_loader import load_float_topic  # noqa: E402
from rwm.data.bag_writer import TYPESTORE  # noqa: E402
from rwm.export.anomaly import ERROR_TOPIC  # noqa: E402
from rwm.robot import contract as C  # noqa: E402
from rwm_ros.topics import TOPIC_ACTION  # noqa: E402

BINS_S = np.arange(-1.0, 6.0, 0.25)


def read(bags: Path) -> dict[str, np.ndarray]:
    """When the policy acted, the commands (log time s, moving or not), and the monitor's errors."""
    dirs = sorted(p for p in bags.iterdir() if (p / "metadata.yaml").is_file())
    out: dict[str, list] = {"action_t": [], "cmd_t": [], "cmd_moving": []}
    for bag in dirs:
        with AnyReader([bag], default_typestore=get_typestore(TYPESTORE)) as reader:
            conns = [c for c in reader.connections if c.topic in (TOPIC_ACTION, C.TOPIC_CMD_VEL)]
            for c, t, raw in reader.messages(conns):
                if c.topic == TOPIC_ACTION:
                    out["action_t"].append(t * 1e-9)
                    continue
                msg = reader.deserialize(raw, c.msgtype)
                out["cmd_t"].append(t * 1e-9)
                out["cmd_moving"].append(any((msg.linear.x, msg.linear.y, msg.angular.z)))
    error_t, error = load_float_topic(dirs, ERROR_TOPIC)
    return {**{k: np.asarray(v) for k, v in out.items()}, "error_t": error_t, "error": error}


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
