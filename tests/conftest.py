"""Shared fixtures. (ROS 2 helpers for the node tests live in ros_helpers.py.)"""

from __future__ import annotations

import pytest

from rwm.robot.mjcf import RobotModel, build_robot


@pytest.fixture(scope="session")
def anymal_d() -> RobotModel:
    """ANYmal D compiled once per session (building the MuJoCo model takes about a second)."""
    return build_robot("anymal_d")
