"""The constants in rwm.robot.contract agree with the contract document itself (../shared/CONTRACT.md)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rwm.robot import contract as C


def _contract_text() -> str:
    here = Path(__file__).resolve()
    for parent in here.parents:
        for cand in (parent / "shared" / "CONTRACT.md", parent.parent / "shared" / "CONTRACT.md"):
            if cand.is_file():
                return cand.read_text()
    pytest.skip("CONTRACT.md not found beside the checkout (../shared)")


def test_joint_order_matches_document():
    text = _contract_text()
    order = re.search(r"## Joint order.*?\n`([A-Z_ ]+)`", text, re.S).group(1).split()
    assert tuple(order) == C.JOINT_NAMES


def test_default_pose_and_gains_match_document():
    text = _contract_text()
    assert "HAA 0.0; front HFE +0.4, KFE -0.8; hind HFE -0.4, KFE +0.8" in text
    front, hind = [0.0, 0.4, -0.8], [0.0, -0.4, 0.8]
    assert np.allclose(C.DEFAULT_JOINT_POS, front * 2 + hind * 2)
    assert f"kp {C.KP:g} Nm/rad" in text and f"kd {C.KD:g} Nms/rad" in text
    assert f"torque limit {C.TORQUE_LIMIT:g} Nm" in text and f"a = q_default + {C.ACTION_SCALE} * u" in text


def test_state_layout_and_topics_match_document():
    text = _contract_text()
    for rows, name in (
        (C.LIN_VEL, "base linear velocity"),
        (C.ANG_VEL, "base angular velocity"),
        (C.GRAVITY, "projected gravity"),
        (C.JOINT_POS, "joint positions"),
        (C.JOINT_VEL, "joint velocities"),
        (C.JOINT_TORQUE, "joint torques"),
    ):
        assert f"| {rows.start}:{rows.stop} | {name} |" in text
    for topic in (
        C.TOPIC_JOINT_STATES,
        C.TOPIC_IMU,
        C.TOPIC_ODOM,
        C.TOPIC_CONTACTS,
        C.TOPIC_JOINT_COMMAND,
        C.TOPIC_CMD_VEL,
        C.TOPIC_ESTOP,
    ):
        assert f"`{topic}`" in text
