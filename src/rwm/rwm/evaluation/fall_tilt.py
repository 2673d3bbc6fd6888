"""Base tilt in normal walking against tilt just before falls, from a collected dataset.

MBPO-PPO can only learn to avoid a fall that imagination shows, and the 45-d state has no base
height: a predicted tilt beyond a threshold is the fall the model can express. This measures how
well a threshold separates the two on real (simulated) data: the share of falls whose last
recorded step tilts beyond it, and the share of normal walking steps that would be cut short. It
also gives the share of walking steps with a knee contact, imagination's other fall sign: none on
the nominal robot, 21-27 % on the randomized robots of `data/family_*`.

A trajectory of a dataset written by `rwm collect --dataset` ended in a fall when it stopped before
both its episode's time limit and the end of the collection.
"""

from __future__ import annotations

import numpy as np

from rwm.data.array_dataset import ArrayDataset
from rwm.robot import contract as C


def tilt_deg(states: np.ndarray) -> np.ndarray:
    """Base tilt from the vertical, degrees, of (..., 45) states."""
    return np.degrees(np.arccos(np.clip(-states[..., C.GRAVITY_Z], -1.0, 1.0)))


def ends_in_fall(dataset: ArrayDataset, i: int) -> bool:
    """Whether trajectory i stopped before its time limit and before the collection ended."""
    extra, dt = dataset.meta.extra, dataset.meta.dt
    if "steps" not in extra or "episode_length_s" not in extra:
        raise ValueError(f"{dataset.path}: meta.json lacks steps/episode_length_s (not from rwm collect)")
    rows = int(dataset.offsets[i + 1] - dataset.offsets[i])
    end = dataset.start_time[i] + rows * dt
    return rows * dt < extra["episode_length_s"] - dt / 2 and end < extra["steps"] * dt - dt / 2


def fall_tilt_statistics(dataset: ArrayDataset, thresholds_deg=(15.0, 20.0, 25.0, 30.0, 60.0)) -> dict:
    """Tilt percentiles of walking and of the last steps before falls; what each threshold catches."""
    walking, last, walking_knee = [], [], []
    for i in range(dataset.num_trajectories):
        a, b = int(dataset.offsets[i]), int(dataset.offsets[i + 1])
        tilt = tilt_deg(np.asarray(dataset.state[a:b]))
        if ends_in_fall(dataset, i):
            last.append(tilt[-1])
        else:
            walking.append(tilt)
            walking_knee.append(np.asarray(dataset.contacts[a:b, C.KNEE_CONTACTS]).any(-1))
    if not walking:
        raise ValueError(f"{dataset.path}: no trajectory without a fall")
    walk = np.concatenate(walking)
    last_tilt = np.asarray(last)
    return {
        "dataset": str(dataset.path),
        "falls": len(last),
        "trajectories": dataset.num_trajectories,
        "walking_steps": len(walk),
        "walking_tilt_deg": {f"p{q}": round(float(np.percentile(walk, q)), 2) for q in (50, 99, 99.9)},
        # imagination counts a sure knee contact as a fall; that holds only where walking has none
        "walking_steps_with_knee_contact": round(float(np.concatenate(walking_knee).mean()), 4),
        "last_step_before_fall_tilt_deg": (
            {f"p{q}": round(float(np.percentile(last_tilt, q)), 2) for q in (10, 50, 90)} if last else {}
        ),
        "thresholds": {
            f"{t:g}": {
                "falls_caught": round(float((last_tilt > t).mean()), 4) if last else None,
                "walking_steps_flagged": round(float((walk > t).mean()), 6),
                "gravity_z": round(-float(np.cos(np.radians(t))), 4),
            }
            for t in thresholds_deg
        },
    }
