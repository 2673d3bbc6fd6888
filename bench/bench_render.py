"""Benchmark of `rwm render`: frames per second at 640 x 480 on this CPU (goal: at least 10).

Records a bag of the simulated ANYmal D walking (`rwm collect`, the gait controller, --duration s),
then renders it to MP4 at 25 frames per second of motion and prints JSON: frames, wall time, frames
rendered per second (MuJoCo offscreen + overlay + H.264 encoding), and the rasterizer in use.

    python bench/bench_render.py [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm")]

from rwm.data.collect import collect_bag  # noqa: E402
from rwm.data.motion import motion_from_bag  # noqa: E402
from rwm.evaluation.render import RenderConfig, render_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of walking rendered")
    parser.add_argument("--fps", type=float, default=25.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "bag"
        collect_bag(bag, controller="gait", duration_s=args.duration, seed=7)
        motion = motion_from_bag(bag, args.fps)
        result = render_video(motion, Path(tmp) / "run.mp4", cfg=RenderConfig(fps=args.fps))
    result.pop("out")
    print(
        json.dumps(
            {"resolution": "640x480", "backend": os.environ["MUJOCO_GL"], **result, "goal_frames_per_s": 10}
        )
    )


if __name__ == "__main__":
    main()
