"""Velocity commands: sampled per episode and resampled within it (Isaac Lab's uniform sampler)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CommandConfig:
    """Uniform ranges of the velocity command and how often it changes."""

    lin_vel_x: tuple[float, float] = (-1.0, 1.0)
    lin_vel_y: tuple[float, float] = (-0.5, 0.5)
    yaw_rate: tuple[float, float] = (-1.0, 1.0)
    resample_time_s: float = 10.0
    """A new command every this many seconds (and at every reset)."""
    standing_fraction: float = 0.0
    """Share of samples that are the zero command."""


class CommandSampler:
    """Draws commands for a batch of robots from one seeded generator."""

    def __init__(self, cfg: CommandConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self._low = np.array([cfg.lin_vel_x[0], cfg.lin_vel_y[0], cfg.yaw_rate[0]])
        self._high = np.array([cfg.lin_vel_x[1], cfg.lin_vel_y[1], cfg.yaw_rate[1]])

    def sample(self, n: int) -> np.ndarray:
        """(n, 3) commands."""
        cmd = self.rng.uniform(self._low, self._high, size=(n, 3))
        if self.cfg.standing_fraction > 0:
            cmd[self.rng.random(n) < self.cfg.standing_fraction] = 0.0
        return cmd
