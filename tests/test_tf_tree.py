"""The robot's TF tree from its URDF: connected from the base to every link, fixed joints static, and
the leg transforms agree with an independent forward-kinematics model at any joint positions."""

from __future__ import annotations

import numpy as np
import pinocchio as pin

from rwm.robot import contract as C
from rwm.robot.description import find_urdf
from rwm.robot.kinematics import AnymalKinematics
from rwm.robot.tf_tree import TransformTree


def _in_base(tree: TransformTree, q: np.ndarray) -> dict[str, pin.SE3]:
    """Every link's pose in the base frame, composed from the tree's parent -> child transforms."""
    links = {
        t.child: (t.parent, pin.XYZQUATToSE3(p)) for t, p in zip(tree.fixed, tree.static_poses, strict=True)
    }
    moving = tree.moving_poses(q)
    links.update({t.child: (t.parent, pin.XYZQUATToSE3(p)) for t, p in zip(tree.moving, moving, strict=True)})
    out = {C.BASE_FRAME: pin.SE3.Identity()}

    def pose(link: str) -> pin.SE3:
        if link not in out:
            parent, rel = links[link]
            out[link] = pose(parent) * rel
        return out[link]

    for link in links:
        pose(link)
    return out


def test_the_tree_puts_every_foot_where_forward_kinematics_does():
    tree = TransformTree(find_urdf("anymal_d"))
    assert len(tree.moving) == 12 and len(tree.fixed) > 0
    kinematics = AnymalKinematics()
    rng = np.random.default_rng(0)
    for q in (C.DEFAULT_JOINT_POS, C.DEFAULT_JOINT_POS + rng.uniform(-0.5, 0.5, 12)):
        poses = _in_base(tree, q)
        feet = np.stack([poses[f"{leg}_FOOT"].translation for leg in ("LF", "RF", "LH", "RH")])
        np.testing.assert_allclose(feet, kinematics.foot_positions(q), atol=1e-9)
        np.testing.assert_allclose(
            poses["LF_SHANK"].translation, tree.link_position("LF_SHANK", q), atol=1e-9
        )


def test_only_the_leg_joints_move():
    tree = TransformTree(find_urdf("anymal_d"))
    still = tree.moving_poses(C.DEFAULT_JOINT_POS).copy()
    bent = C.DEFAULT_JOINT_POS.copy()
    bent[C.JOINT_NAMES.index("LF_KFE")] += 0.4
    moved = tree.moving_poses(bent)
    changed = [t.child for t, a, b in zip(tree.moving, still, moved, strict=True) if not np.allclose(a, b)]
    assert changed == ["LF_SHANK"], "a knee moves its shank only: the rest follows through the tree"
