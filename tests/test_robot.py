"""URDF to MuJoCo conversion, description lookup and the contract's joint mapping."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from rwm.robot import contract as C
from rwm.robot.description import DescriptionNotFoundError, find_urdf
from rwm.robot.mjcf import build_robot
from rwm.sim.anymal_sim import AnymalSim
from rwm.sim.state import FallRule


def test_mass_matches_urdf(anymal_d):
    root = ET.parse(anymal_d.urdf).getroot()
    urdf_mass = sum(float(m.get("value")) for m in root.iter("mass"))
    assert anymal_d.total_mass == pytest.approx(urdf_mass, rel=1e-9)
    assert 50.0 < anymal_d.total_mass < 60.0


def test_joints_mapped_by_name(anymal_d):
    m = anymal_d.model
    d = mujoco.MjData(m)
    for i, name in enumerate(C.JOINT_NAMES):
        d.qpos[m.joint(name).qposadr[0]] = 0.01 * (i + 1)
    assert np.allclose(d.qpos[anymal_d.qpos_adr], 0.01 * np.arange(1, 13))
    assert [m.actuator(i).name for i in range(m.nu)] == list(C.JOINT_NAMES)
    assert [m.joint(int(m.actuator_trnid[i, 0])).name for i in range(m.nu)] == list(C.JOINT_NAMES)


def test_contact_geoms_cover_every_leg(anymal_d):
    flags = anymal_d.geom_flag
    for leg in range(4):
        assert (flags == leg).any(), "knee/shank geoms of every leg"
        assert (flags == 4 + leg).sum() == 1, "exactly one foot sphere per leg"
    assert len(anymal_d.base_geoms) > 0


def test_stands_ten_seconds_at_contract_height(anymal_d):
    sim = AnymalSim(anymal_d)
    sim.set_targets(C.DEFAULT_JOINT_POS)  # the pose itself as the drives' target, as the contract measured
    sim.step(4000)  # 10 s at 400 Hz
    assert sim.base_position[2] == pytest.approx(0.544, abs=0.02)
    assert np.linalg.norm(sim.base_position[:2]) < 0.02
    assert list(sim.contacts) == [0, 0, 0, 0, 1, 1, 1, 1]
    # PD with kp 80 under 57 kg sags: knees settle about 0.25 rad past the target.
    assert np.allclose(sim.joint_positions, C.DEFAULT_JOINT_POS, atol=0.3)
    assert not sim.fell


def test_a_reset_robot_stands_in_its_pose_on_the_stance_targets(anymal_d):
    """After a reset the drives hold the stance targets (the pose plus the torques that carry the
    robot's weight): it stands at its standing height with its joints at the pose, not sagged."""
    sim = AnymalSim(anymal_d)
    sim.step(4000)
    assert sim.base_position[2] == pytest.approx(0.60, abs=0.01)
    assert np.allclose(sim.joint_positions, C.DEFAULT_JOINT_POS, atol=0.06)
    assert list(sim.contacts) == [0, 0, 0, 0, 1, 1, 1, 1] and not sim.fell


def test_sitting_on_its_knees_or_tilting_is_a_fall(anymal_d):
    """A deep crouch sinks the base to 0.27 m with the legs holding it off the ground: no base
    contact, yet a fall (`FallRule`, the same in every simulator); so is a 70 degree roll."""
    sim = AnymalSim(anymal_d)
    sim.set_targets(2.5 * C.DEFAULT_JOINT_POS)
    sim.step(800)
    assert sim.base_position[2] < 0.3 and sim.fell
    low_base_allowed = AnymalSim(anymal_d, falls=FallRule(min_height_fraction=0.0))
    low_base_allowed.set_targets(2.5 * C.DEFAULT_JOINT_POS)
    low_base_allowed.step(800)
    assert low_base_allowed.base_position[2] < 0.3 and not low_base_allowed.fell, "no base contact"
    rolled = np.radians(70.0) / 2
    low_base_allowed.reset()
    low_base_allowed.data.qpos[3:7] = [np.cos(rolled), np.sin(rolled), 0.0, 0.0]
    low_base_allowed.step(1)
    assert low_base_allowed.fell


def test_level_robot_gravity_and_frames(anymal_d):
    sim = AnymalSim(anymal_d)
    s = sim.state()
    assert np.allclose(s[C.GRAVITY], [0.0, 0.0, -1.0])
    # Yawed 90 degrees and moving along world x: the base sees the motion along its -y axis.
    sim.reset(yaw=np.pi / 2)
    sim.data.qvel[0:3] = [1.0, 0.0, 0.0]
    s = sim.state()
    assert np.allclose(s[C.LIN_VEL], [0.0, -1.0, 0.0], atol=1e-9)
    assert np.allclose(s[C.GRAVITY], [0.0, 0.0, -1.0], atol=1e-9)
    # Rolled 90 degrees about x: gravity lies along the base's -y... rotated: R^T (0,0,-1) = (0,-1,0).
    sim.data.qpos[3:7] = [np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0]
    assert np.allclose(sim.state()[C.GRAVITY], [0.0, -1.0, 0.0], atol=1e-9)


def test_torques_are_the_applied_pd(anymal_d):
    sim = AnymalSim(anymal_d)
    sim.step(400)
    q, dq = sim.joint_positions.copy(), sim.joint_velocities.copy()
    targets = C.DEFAULT_JOINT_POS + 0.1
    sim.set_targets(targets)
    expected = np.clip(C.KP * (targets - q) - C.KD * dq, -C.TORQUE_LIMIT, C.TORQUE_LIMIT)
    sim.step()
    assert np.allclose(sim.joint_torques, expected, atol=1e-6)
    with pytest.raises(ValueError):
        sim.set_targets(np.full(12, np.nan))


def test_missing_description_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DescriptionNotFoundError, match="not found"):
        find_urdf("anymal_d", tmp_path / "nowhere")
    monkeypatch.setenv("ANYMAL_D_DESCRIPTION", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rwm.robot.description._shared_candidates", lambda: [])
    with pytest.raises(DescriptionNotFoundError, match="ANYMAL_D_DESCRIPTION"):
        find_urdf("anymal_d")
    with pytest.raises(ValueError, match="unknown robot"):
        find_urdf("spot")


def test_anymal_c_alternative_builds_and_stands():
    robot = build_robot("anymal_c")
    sim = AnymalSim(robot)
    sim.step(2000)
    assert not sim.fell
    assert 0.4 < sim.base_position[2] < 0.65
    assert np.allclose(sim.state()[C.GRAVITY], [0, 0, -1], atol=0.05)
