"""`rwm render`: a bag's motion replayed in MuJoCo offscreen. The robot is drawn where its pose says,
and a short bag becomes an MP4 with one frame per sample."""

from __future__ import annotations

import numpy as np
import pytest

from rwm.data.collect import collect_bag
from rwm.data.motion import motion_from_bag
from rwm.evaluation.render import MotionRenderer, RenderConfig, render_video
from rwm.robot import contract as C

UPRIGHT = np.array([1.0, 0.0, 0.0, 0.0])


def _centroid(renderer: MotionRenderer, background: np.ndarray, x: float, y: float) -> np.ndarray:
    image = renderer.pose(np.array([x, y, 0.6]), UPRIGHT, C.DEFAULT_JOINT_POS)
    mask = np.abs(image.astype(int) - background).sum(-1) > 30
    assert mask.sum() > 200, "the robot is in view"
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


def test_the_robot_is_drawn_where_its_pose_says():
    """A fixed camera looking straight down: moving the base 0.8 m along x and along y moves the robot's
    image by the same distance, in perpendicular directions; moving it back brings it back."""
    cfg = RenderConfig(width=320, height=240, follow=False, elevation=-90.0, azimuth=90.0, distance=4.0,
                       lookat=(0.0, 0.0, 0.0))  # fmt: skip
    renderer = MotionRenderer("anymal_d", cfg)
    try:
        background = renderer.pose(np.array([100.0, 100.0, 0.6]), UPRIGHT, C.DEFAULT_JOINT_POS).astype(int)
        origin = _centroid(renderer, background, 0.0, 0.0)
        along_x = _centroid(renderer, background, 0.8, 0.0) - origin
        along_y = _centroid(renderer, background, 0.0, 0.8) - origin
        back = _centroid(renderer, background, 0.0, 0.0)
    finally:
        renderer.close()
    assert np.linalg.norm(along_x) > 30
    assert np.linalg.norm(along_y) == pytest.approx(np.linalg.norm(along_x), rel=0.15)
    assert abs(along_x @ along_y) / (np.linalg.norm(along_x) * np.linalg.norm(along_y)) < 0.15
    np.testing.assert_allclose(back, origin, atol=0.5)


def test_a_bag_renders_to_an_mp4_frame_per_sample(tmp_path):
    import imageio_ffmpeg

    bag = tmp_path / "bag"
    collect_bag(bag, controller="gait", duration_s=2.0, seed=1)
    motion = motion_from_bag(bag, fps=10.0)
    assert len(motion) == 20 or len(motion) == 21
    assert np.isfinite(motion.base_position).all() and np.abs(motion.base_orientation).max() <= 1.0
    out = tmp_path / "run.mp4"
    result = render_video(motion, out, cfg=RenderConfig(width=320, height=240, fps=10.0))
    assert result["frames"] == len(motion) and out.stat().st_size > 1000
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    frames = sum(1 for _ in reader)
    assert meta["size"] == (320, 240) and frames == len(motion)
