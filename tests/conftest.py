"""Shared fixtures. (ROS 2 helpers for the node tests live in ros_helpers.py.)"""

from __future__ import annotations

import ctypes.util
import os

import pytest

if ctypes.util.find_library("EGL"):  # offscreen rendering (rwm render), chosen before mujoco's import
    os.environ.setdefault("MUJOCO_GL", "egl")

from rwm.robot.mjcf import RobotModel, build_robot


@pytest.fixture(scope="session")
def anymal_d() -> RobotModel:
    """ANYmal D compiled once per session (building the MuJoCo model takes about a second)."""
    return build_robot("anymal_d")
