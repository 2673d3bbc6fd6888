"""Render a run to video: the robot's motion (`rwm.data.motion`) replayed in MuJoCo offscreen on the
CPU (EGL with Mesa's software rasterizer, or OSMesa), the camera following the base, the commanded
and measured velocity written on each frame, encoded to MP4 by the ffmpeg of imageio-ffmpeg.

Only kinematics are replayed (poses set, no physics stepped), so any bag renders, the real robot's
included. The floor is the simulator's flat plane: a real robot's terrain is not drawn.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Offscreen without a display: MuJoCo picks its OpenGL backend when it is first imported.
_BACKEND_FIXED = "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from rwm.data.motion import Motion  # noqa: E402
from rwm.robot.mjcf import build_robot  # noqa: E402


@dataclass(frozen=True)
class RenderConfig:
    width: int = 640
    height: int = 480
    fps: float = 25.0
    distance: float = 2.6
    """Camera distance from the base, m."""
    azimuth: float = 135.0
    elevation: float = -20.0
    follow: bool = True
    """Camera follows the base (False: fixed at `lookat`)."""
    lookat: tuple[float, float, float] = (0.0, 0.0, 0.4)


class MotionRenderer:
    """Frames of a robot's motion: `frames(motion)` yields (H, W, 3) uint8 images."""

    def __init__(self, robot: str = "anymal_d", cfg: RenderConfig = RenderConfig()) -> None:
        if _BACKEND_FIXED and not os.environ.get("DISPLAY"):
            raise RuntimeError(
                "offscreen rendering needs MUJOCO_GL=egl (or osmesa) set before mujoco is first imported "
                "in this process (the rwm command does it); no display to fall back on"
            )
        self.cfg = cfg
        self.robot = build_robot(robot)
        self.model = self.robot.model
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, cfg.height, cfg.width)
        self.camera = mujoco.MjvCamera()
        self.camera.distance, self.camera.azimuth, self.camera.elevation = (
            cfg.distance,
            cfg.azimuth,
            cfg.elevation,
        )
        self.camera.lookat[:] = cfg.lookat

    def pose(self, base_position: np.ndarray, base_orientation: np.ndarray, joints: np.ndarray) -> np.ndarray:
        """One frame of the robot in this pose."""
        d = self.data
        d.qpos[0:3], d.qpos[3:7] = base_position, base_orientation
        d.qpos[self.robot.qpos_adr] = joints
        mujoco.mj_kinematics(self.model, d)
        if self.cfg.follow:
            self.camera.lookat[:] = (base_position[0], base_position[1], self.cfg.lookat[2])
        self.renderer.update_scene(d, self.camera)
        return self.renderer.render()

    def frames(self, motion: Motion) -> Iterator[np.ndarray]:
        for k in range(len(motion)):
            image = self.pose(motion.base_position[k], motion.base_orientation[k], motion.joint_positions[k])
            yield _overlay(image, motion, k)

    def close(self) -> None:
        self.renderer.close()


def _overlay(image: np.ndarray, motion: Motion, k: int) -> np.ndarray:
    """Time, commanded and measured velocity in the top-left corner."""
    cmd, meas = motion.command[k], motion.measured[k]
    lines = [f"t {motion.time_s[k]:6.2f} s"]
    if np.isfinite(cmd).all():
        lines.append(f"cmd   vx {cmd[0]:+.2f}  vy {cmd[1]:+.2f}  wz {cmd[2]:+.2f}")
    lines.append(f"meas  vx {meas[0]:+.2f}  vy {meas[1]:+.2f}  wz {meas[2]:+.2f}")
    frame = Image.fromarray(image)
    draw = ImageDraw.Draw(frame)
    draw.rectangle((4, 4, 250, 8 + 14 * len(lines)), fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((8, 6 + 14 * i), line, fill=(255, 255, 255))
    return np.asarray(frame)


def render_video(
    motion: Motion, out: str | Path, robot: str = "anymal_d", cfg: RenderConfig = RenderConfig()
) -> dict:
    """Write `motion` to an MP4 (H.264) played in real time (at the rate its frames were sampled);
    returns frames, seconds and frames per second of the rendering. The file appears only when
    complete (written to a temporary name first)."""
    import time  # noqa: PLC0415

    import imageio_ffmpeg  # noqa: PLC0415

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp.mp4")
    renderer = MotionRenderer(robot, cfg)
    # played at the rate the motion was sampled at (a dataset's 50 Hz rows give whole strides only)
    fps = 1.0 / float(np.median(np.diff(motion.time_s))) if len(motion) > 1 else cfg.fps
    writer = imageio_ffmpeg.write_frames(
        str(tmp), (cfg.width, cfg.height), fps=fps, codec="libx264", quality=7, macro_block_size=8
    )
    writer.send(None)
    start, count = time.perf_counter(), 0
    try:
        for frame in renderer.frames(motion):
            writer.send(np.ascontiguousarray(frame))
            count += 1
    finally:
        writer.close()
        renderer.close()
    wall = time.perf_counter() - start
    os.replace(tmp, out)
    return {
        "out": str(out),
        "frames": count,
        "wall_s": round(wall, 2),
        "frames_per_s": round(count / wall, 1),
    }
