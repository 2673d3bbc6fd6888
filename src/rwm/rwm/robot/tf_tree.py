"""The robot's TF tree from its URDF, as robot_state_publisher makes it: one transform per URDF joint,
parent link -> child link. The 12 leg joints move with the joint states (/tf); every other joint is
fixed here (/tf_static): the URDF's fixed joints, and its movable joints that the contract does not
command (ANYmal D's sensor mounts), held at zero.

Placements come from pinocchio's forward kinematics of the full URDF (fixed base): the transform of
a joint is the parent link's placement inverted times the child link's.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pinocchio as pin

from rwm.robot import contract as C


@dataclass(frozen=True)
class LinkTransform:
    parent: str
    child: str


class TransformTree:
    """Static transforms once, leg transforms for any joint positions (contract order)."""

    def __init__(self, urdf: str | Path) -> None:
        self.urdf_text = Path(urdf).read_text()
        self.model = pin.buildModelFromUrdf(str(urdf))
        self.data = self.model.createData()
        names = list(self.model.names)
        missing = [n for n in C.JOINT_NAMES if n not in names]
        if missing:
            raise ValueError(f"{urdf}: joints {missing} not found; is this an ANYmal URDF?")
        self._q = pin.neutral(self.model)
        self._q_index = np.array([self.model.idx_qs[names.index(n)] for n in C.JOINT_NAMES])
        joints = [
            (j.get("name"), j.get("type"), j.find("parent").get("link"), j.find("child").get("link"))
            for j in ET.fromstring(self.urdf_text).findall("joint")  # not <transmission>/<gazebo> joints
        ]
        leg_joints = set(C.JOINT_NAMES)
        self.moving = [LinkTransform(p, c) for n, t, p, c in joints if n in leg_joints]
        """The 12 leg joints' transforms, in URDF order."""
        self.fixed = [LinkTransform(p, c) for n, t, p, c in joints if n not in leg_joints]
        self._frames = {
            link: self.model.getFrameId(link, pin.FrameType.BODY)
            for t in self.moving + self.fixed
            for link in (t.parent, t.child)
        }
        self.static_poses = self._poses(self.fixed, self._q)
        """(n_fixed, 7) [x, y, z, qx, qy, qz, qw] of the fixed transforms (movable non-leg joints at 0)."""
        self._moving_poses = np.zeros((len(self.moving), 7))

    def _poses(
        self, transforms: list[LinkTransform], q: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        pin.framesForwardKinematics(self.model, self.data, q)
        out = np.zeros((len(transforms), 7)) if out is None else out
        for k, t in enumerate(transforms):
            rel = self.data.oMf[self._frames[t.parent]].actInv(self.data.oMf[self._frames[t.child]])
            out[k] = pin.SE3ToXYZQUAT(rel)
        return out

    def moving_poses(self, joint_positions: np.ndarray) -> np.ndarray:
        """(12, 7) [x, y, z, qx, qy, qz, qw] of the leg transforms for contract-order positions (a view
        reused by the next call)."""
        self._q[self._q_index] = joint_positions
        return self._poses(self.moving, self._q, self._moving_poses)

    def link_position(self, link: str, joint_positions: np.ndarray) -> np.ndarray:
        """Position of `link` in the base frame (for checks against the tree)."""
        self._q[self._q_index] = joint_positions
        pin.framesForwardKinematics(self.model, self.data, self._q)
        return self.data.oMf[self.model.getFrameId(link, pin.FrameType.BODY)].translation.copy()
