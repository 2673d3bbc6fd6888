"""Leg kinematics with pinocchio from the URDF: joint limits and foot positions in contract order, a
foot-contact estimate for hardware, where /anymal/contacts does not exist, and the torques that hold
the robot up in its standing pose.

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
        self._v_index = np.array([self.model.idx_vs[names.index(n)] for n in C.JOINT_NAMES])
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
        v[self._v_index] = dq
        self._q[self._q_index] = q
        pin.forwardKinematics(self.model, self.data, self._q, v)
        pin.updateFramePlacements(self.model, self.data)
        ref = pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
        return np.stack([pin.getFrameVelocity(self.model, self.data, f, ref).linear for f in self._feet])

    def standing_torques(self, q: np.ndarray = C.DEFAULT_JOINT_POS) -> np.ndarray:
        """(12,) joint torques that hold the whole robot, base level, on its four feet at joint positions
        `q`: the legs' own weight plus each foot's share of the robot's (vertical forces balanced about
        the centre of mass, the least-norm share). Why: drives that hold the standing pose as their
        position target (kp 80) give no torque until the robot sags, and with nothing else to hold it
        the simulated ANYmal D sinks from 0.60 to 0.54 m, and on a floor of friction 0.4 its feet slide
        apart until the base is at 0.30 m."""
        m, d = self.model, self.data
        self._q[self._q_index] = q
        pin.computeJointJacobians(m, d, self._q)
        pin.framesForwardKinematics(m, d, self._q)
        base = m.inertias[0]  # the fixed base's own inertia sits on the universe joint
        legs_mass = pin.computeTotalMass(m)
        legs_com = pin.centerOfMass(m, d, self._q)
        mass = legs_mass + base.mass
        com = (legs_mass * legs_com + base.mass * base.lever) / mass
        feet = np.stack([d.oMf[f].translation for f in self._feet])
        balance = np.vstack([np.ones(4), feet[:, 0] - com[0], feet[:, 1] - com[1]])
        weight = mass * -m.gravity.linear[2]
        forces = np.linalg.lstsq(balance, np.array([weight, 0.0, 0.0]), rcond=None)[0]
        tau = pin.computeGeneralizedGravity(m, d, self._q).copy()
        for f, fz in zip(self._feet, forces, strict=True):
            jacobian = pin.getFrameJacobian(m, d, f, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED)[:3]
            tau -= jacobian.T @ np.array([0.0, 0.0, fz])
        return tau[self._v_index]

    def standing_targets(self) -> np.ndarray:
        """(12,) position targets at which the contract's drives (kp `C.KP`) hold the robot in its
        standing pose: the pose plus `standing_torques` / kp."""
        return C.DEFAULT_JOINT_POS + self.standing_torques() / C.KP

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
