"""World models of a randomized family compared on the windows the MBPO loop scores them on: the
relative AR error over 8 steps after 32 true ones (`model_error_new_data` of `rwm train-mbpo`), on
every 40-step window (stride 20) of a held-out family dataset, overall and for the robots the suite's
variants stand for. `rwm eval` scores whole 400-step trajectories instead, which a robot that falls
early in a window dominates. A model given the robots' parameters (`train-wm --robot-params`)
reads them from the dataset; the others ignore them.

    python tools/family_window_error.py data/family_heldout_params \\
        plain=runs/wm_family_plain/model.pt params=runs/wm_family_params/model.pt [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rwm.data.array_dataset import ArrayDataset  # noqa: E402
from rwm.evaluation.heldout import heldout_error  # noqa: E402
from rwm.models.factory import load_checkpoint  # noqa: E402
from rwm.robot import contract as C  # noqa: E402
from rwm.sim.variants import ROBOT_PARAM_FIELDS  # noqa: E402

HISTORY, WINDOW, STRIDE = 32, 40, 20
UPRIGHT_GRAVITY_Z = -0.9
"""A window whose last state is tilted beyond 26 degrees counts as a fall in progress."""
GROUPS = {
    "payload_over_12kg": ("payload_kg", lambda x: x > 12),
    "friction_under_0.5": ("ground_friction", lambda x: x < 0.5),
    "motors_under_0.8": ("motor_strength", lambda x: x < 0.8),
}
"""Windows of robots like the suite's payload_15kg, friction_0.4 and motors_75 variants."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "heldout", help="a family dataset with the robots' parameters (collect --domain-randomization)"
    )
    p.add_argument("models", nargs="+", help="NAME=checkpoint.pt")
    p.add_argument("--out", help="also write the figures to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(2)
    data = ArrayDataset(args.heldout)
    if data.robot_params is None:
        raise SystemExit(f"{data.path} has no robot parameters: collect it with --domain-randomization")
    starts = data.windows(WINDOW)[::STRIDE]
    arrays = data.gather(starts, WINDOW)
    windows = {k: torch.from_numpy(np.asarray(arrays[k], np.float32)) for k in ("state", "action")}
    windows["robot_params"] = torch.from_numpy(np.asarray(arrays["robot_params"][:, 0], np.float32))
    masks = {"all": np.ones(len(starts), bool)}
    masks["upright_at_end"] = np.asarray(data.state[starts + WINDOW - 1, C.GRAVITY_Z]) < UPRIGHT_GRAVITY_Z
    for name, (field, select) in GROUPS.items():
        masks[name] = select(windows["robot_params"][:, ROBOT_PARAM_FIELDS.index(field)].numpy())
    out: dict = {"heldout": str(data.path), "windows": {k: int(m.sum()) for k, m in masks.items()}}
    for spec in args.models:
        name, _, path = spec.rpartition("=")
        model = load_checkpoint(path)[0]
        out[name or path] = {
            k: round(
                heldout_error(model, {n: v[torch.from_numpy(m)] for n, v in windows.items()}, HISTORY)[
                    "mean"
                ],
                4,
            )
            for k, m in masks.items()
        }
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
