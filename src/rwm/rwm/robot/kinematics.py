"""Leg kinematics with pinocchio from the URDF: joint limits and foot positions in contract order, and
a foot-contact estimate for hardware, where /anymal/contacts does not exist.

Pinocchio orders the legs LF, LH, RF, RH; the contract orders them LF, RF, LH, RH: everything here
is mapped by joint and frame name. The base is fixed in the model (the base frame is the origin), so
foot positions come out in the base frame directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pinocchio as pin

from rwm.robot import contract as C
from rwm.robot.description import find_urdf

LEGS = ("LF", "RF", "LH", "RH")


@dataclass(frozen=True)
class ContactEstimateConfig:
    """A foot is in stance when it is among the lowest along gravity and slow."""

    height_band: float = 0.03
    """Stance if the foot is within this of the lowest foot along gravity, m."""
    max_speed: float = 0.6
    """...and moves slower than this relative to the base, m/s."""


class AnymalKinematics:
    """Forward kinematics of the four legs (fixed base)."""

    def __init__(self, robot: str = "anymal_d", urdf: str | Path | None = None) -> None:
        path = find_urdf(robot, urdf)
        full = pin.buildModelFromUrdf(str(path))
        keep = set(C.JOINT_NAMES)
        lock = [j for j in range(1, full.njoints) if full.names[j] not in keep]
        self.model = pin.buildReducedModel(full, lock, pin.neutral(full)) if lock else full
        self.data = self.model.createData()
        names = list(self.model.names)
        missing = [n for n in C.JOINT_NAMES if n not in names]
        if missing:
            raise ValueError(f"{path}: joints {missing} not found; is this an ANYmal URDF?")
        # contract index -> pinocchio configuration index (each leg joint is 1-dof revolute)
        self._q_index = np.array([self.model.idx_qs[names.index(n)] for n in C.JOINT_NAMES])
        self._feet = [self.model.getFrameId(f"{leg}_FOOT") for leg in LEGS]
        lower = self.model.lowerPositionLimit[self._q_index]
        upper = self.model.upperPositionLimit[self._q_index]
        self.joint_lower, self.joint_upper = lower.copy(), upper.copy()
        """URDF position limits in contract order, rad."""
        self._q = pin.neutral(self.model)

    def foot_positions(self, q: np.ndarray) -> np.ndarray:
        """(4, 3) foot positions in the base frame for contract-order joint positions q (12,)."""
        self._q[self._q_index] = q
        pin.framesForwardKinematics(self.model, self.data, self._q)
        return np.stack([self.data.oMf[f].translation for f in self._feet])

    def foot_velocities(self, q: np.ndarray, dq: np.ndarray) -> np.ndarray:
        """(4, 3) foot velocities relative to the base, base frame."""
        v = np.zeros(self.model.nv)
        v[self._q_index] = dq  # revolute joints: idx_v equals idx_q here
        self._q[self._q_index] = q
        pin.forwardKinematics(self.model, self.data, self._q, v)
        pin.updateFramePlacements(self.model, self.data)
        ref = pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
        return np.stack([pin.getFrameVelocity(self.model, self.data, f, ref).linear for f in self._feet])

    def estimate_foot_contacts(
        self,
        q: np.ndarray,
        dq: np.ndarray,
        gravity: np.ndarray,
        cfg: ContactEstimateConfig = ContactEstimateConfig(),
    ) -> np.ndarray:
        """(4,) stance flags, contract leg order, from joints and the projected gravity (base frame)."""
        depth = self.foot_positions(q) @ gravity  # distance below the base along gravity
        speed = np.linalg.norm(self.foot_velocities(q, dq), axis=1)
        return ((depth >= depth.max() - cfg.height_band) & (speed < cfg.max_speed)).astype(np.float64)
