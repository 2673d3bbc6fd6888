"""Exploratory controllers for data collection before any policy exists.

They map (time, state) to joint targets: `stand` holds the standing pose, `perturb` adds a smooth
random walk (Ornstein-Uhlenbeck) to it, `gait` is an open-loop trot (diagonal pairs in
anti-phase) with a perturbation on top. Trained policies replace them later.
"""

from __future__ import annotations

import numpy as np

from rwm.robot import contract as C

CONTROLLERS = ("stand", "perturb", "gait")


class StandController:
    """Hold the standing pose."""

    def reset(self, rng: np.random.Generator) -> None:
        del rng

    def __call__(self, t: float, state: np.ndarray) -> np.ndarray:
        return C.DEFAULT_JOINT_POS.copy()


class PerturbController:
    """Standing pose plus an Ornstein-Uhlenbeck perturbation of the joint targets."""

    def __init__(self, sigma: float = 0.15, tau_s: float = 0.3) -> None:
        self.sigma, self.tau_s = sigma, tau_s
        self._x = np.zeros(C.NUM_JOINTS)
        self._t = 0.0
        self._rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        self._rng, self._x[:], self._t = rng, 0.0, 0.0

    def perturbation(self, t: float) -> np.ndarray:
        dt = max(t - self._t, 0.0)
        self._t = t
        decay = np.exp(-dt / self.tau_s)
        self._x = self._x * decay + self.sigma * np.sqrt(1 - decay**2) * self._rng.standard_normal(
            C.NUM_JOINTS
        )
        return self._x

    def __call__(self, t: float, state: np.ndarray) -> np.ndarray:
        return C.DEFAULT_JOINT_POS + self.perturbation(t)


class GaitController(PerturbController):
    """Open-loop trot: HFE swings and KFE lifts, diagonal legs (LF+RH, RF+LH) in anti-phase."""

    def __init__(
        self,
        frequency_hz: float = 1.8,
        hfe_amplitude: float = 0.15,
        kfe_amplitude: float = 0.35,
        sigma: float = 0.05,
    ) -> None:
        super().__init__(sigma=sigma)
        self.frequency_hz, self.hfe_amplitude, self.kfe_amplitude = frequency_hz, hfe_amplitude, kfe_amplitude
        # Phase per leg in contract order LF, RF, LH, RH; knees bend the opposite way front/hind.
        self._phase = np.array([0.0, np.pi, np.pi, 0.0])
        self._knee_sign = np.array([-1.0, -1.0, 1.0, 1.0])
        self._hip_sign = np.array([1.0, 1.0, -1.0, -1.0])

    def __call__(self, t: float, state: np.ndarray) -> np.ndarray:
        phase = 2 * np.pi * self.frequency_hz * t + self._phase
        targets = C.DEFAULT_JOINT_POS.copy()
        lift = np.maximum(np.sin(phase), 0.0)
        targets[1::3] += self._hip_sign * self.hfe_amplitude * np.cos(phase)
        targets[2::3] += self._knee_sign * self.kfe_amplitude * lift
        return targets + self.perturbation(t)


def make_controller(name: str):
    """A fresh controller by name: one of CONTROLLERS."""
    if name == "stand":
        return StandController()
    if name == "perturb":
        return PerturbController()
    if name == "gait":
        return GaitController()
    raise ValueError(f"unknown controller {name!r}; choose one of {CONTROLLERS}")
