"""System identification from bags: a logged state is put back into the simulator as it was, the
replays of a simulated robot's own bag find that robot, and adaptation on the identified robot writes
a version only after validation."""

from __future__ import annotations

from dataclasses import fields, replace

import mujoco
import numpy as np
import pytest

from rwm.data.bag_loader import load_bags
from rwm.data.collect import collect_bag
from rwm.export.runtime import OnnxPolicy
from rwm.rl.policy_controller import PolicyController
from rwm.robot import contract as C
from rwm.robot.mjcf import build_robot
from rwm.runners.adaptation import AdaptConfig, adapt_policy, identified_simulation
from rwm.sim.dynamics import VariedRobot
from rwm.sim.identification import (
    SEARCH_GRID,
    IdentificationConfig,
    identify_robot,
    replay_error,
    replay_windows,
    set_logged_state,
)
from rwm.sim.state import read_contacts, read_state
from rwm.sim.variants import NOMINAL, TRAINING_RANGES, RobotMixture, RobotVariant

SHIFTED = RobotVariant(ground_friction=0.25, payload_kg=20.0)
"""A robot off the nominal one in two ways: ice-like floor and a heavy payload."""


@pytest.fixture(scope="module")
def shifted_bag(tmp_path_factory):
    """10 s of the deployed policy walking the shifted robot, as the logger would record it."""
    bag = tmp_path_factory.mktemp("identify") / "shifted"
    policy = OnnxPolicy("models/anymal_d_ppo.onnx")
    walker = PolicyController(policy, policy.obs_dim, 0.0)
    collect_bag(bag, controller=walker, duration_s=10.0, seed=5, variant=SHIFTED)
    trajectories, report = load_bags([bag])
    assert report.ok and trajectories
    return bag, trajectories


def test_a_logged_state_is_put_back_as_it_was() -> None:
    robot = build_robot()
    sim = VariedRobot(robot, NOMINAL)
    data = mujoco.MjData(sim.model)
    data.qpos[2] = robot.standing_height
    data.qpos[3:7] = [0.96, 0.05, -0.2, 0.1]
    mujoco.mju_normalize4(data.qpos[3:7])
    data.qpos[robot.qpos_adr] = C.DEFAULT_JOINT_POS
    sim.reset(robot.stance_targets)
    data.qvel[0:3] = [0.4, -0.2, 0.05]
    data.qvel[3:6] = [0.1, 0.3, -0.2]
    sim.step(data, 40 * C.DECIMATION)  # settle on the floor, then read what a log would hold
    logged, contacts = np.empty(C.STATE_DIM), np.empty(C.CONTACT_DIM)
    read_state(robot, data, logged)
    read_contacts(robot, data, contacts)
    assert contacts[C.FOOT_CONTACTS].sum() >= 2, "standing on its feet"
    again = mujoco.MjData(sim.model)
    set_logged_state(robot, sim.model, again, logged, contacts)
    restored = np.empty(C.STATE_DIM)
    read_state(robot, again, restored)
    kinematic = slice(0, C.JOINT_TORQUE.start)  # the torque is the drives', not the state's
    np.testing.assert_allclose(restored[kinematic], logged[kinematic], atol=1e-9)
    assert abs(again.qpos[2] - data.qpos[2]) < 0.01, "the feet in contact touch the floor"


def _walked_log(tmp_path, variant: RobotVariant, seconds: float) -> list:
    bag = tmp_path / "walked"
    policy = OnnxPolicy("models/anymal_d_ppo.onnx")
    collect_bag(
        bag,
        controller=PolicyController(policy, policy.obs_dim, 0.0),
        duration_s=seconds,
        seed=7,
        variant=variant,
    )
    trajectories, _ = load_bags([bag])
    return [(t.state, t.action, t.contacts) for t in trajectories]


def test_a_delayed_robot_replays_best_with_its_own_delay(tmp_path) -> None:
    """The replay starts with the previous target in flight: with the wrong delay, or the ring
    filled with the wrong target, the robot's own variant would not replay its log best."""
    delayed = RobotVariant(delay_ticks=4, payload_kg=10.0)
    logs = _walked_log(tmp_path, delayed, 6.0)
    windows = replay_windows(logs, IdentificationConfig(windows=48))
    robot = build_robot()
    errors = {d: replay_error(robot, replace(delayed, delay_ticks=d), windows, 2) for d in (0, 3, 4, 5, 8)}
    assert min(errors, key=errors.get) == 4, errors
    assert errors[4] < 0.05, "its own variant replays its log closely"


def test_the_search_grid_names_robot_parameters() -> None:
    names = {f.name for f in fields(RobotVariant)}
    assert set(SEARCH_GRID) <= names
    assert all(list(grid) == sorted(grid) for grid in SEARCH_GRID.values()), "grid steps move one way"


@pytest.mark.slow
def test_replays_of_a_robots_bag_find_that_robot(shifted_bag) -> None:
    _, trajectories = shifted_bag
    logs = [(t.state, t.action, t.contacts) for t in trajectories]
    found = identify_robot(build_robot(), logs, IdentificationConfig(windows=64))
    assert found.variant.ground_friction == pytest.approx(SHIFTED.ground_friction)
    assert abs(found.variant.payload_kg - SHIFTED.payload_kg) <= 5.0
    assert found.error < 0.5 * found.nominal_error
    friction_curve = dict(found.curves["ground_friction"])
    assert friction_curve[1.0] > 2 * min(friction_curve.values()), "a nominal floor replays the log badly"


def test_a_mixture_draws_its_robot_at_its_share() -> None:
    mixture = RobotMixture(SHIFTED, 0.25)
    rng = np.random.default_rng(0)
    drawn = [mixture.sample(rng) for _ in range(4000)]
    share = sum(d is SHIFTED for d in drawn) / len(drawn)
    assert share == pytest.approx(0.25, abs=0.03)
    others = [d for d in drawn if d is not SHIFTED]
    lo, hi = TRAINING_RANGES.ground_friction
    assert all(lo <= d.ground_friction <= hi for d in others), "the rest come from the family"
    with pytest.raises(ValueError, match="fraction"):
        RobotMixture(SHIFTED, 1.5)


@pytest.mark.slow
def test_adaptation_on_the_identified_robot_writes_a_validated_version(shifted_bag, tmp_path) -> None:
    bag, _ = shifted_bag
    cfg = AdaptConfig(
        dynamics="identified",
        critic_warmup=1,
        iterations=1,
        imagination=replace(AdaptConfig().imagination, num_envs=8, history=8),
        identification=IdentificationConfig(windows=16, horizon=4, sweeps=1, pair_rounds=0, threads=1),
        validation_episodes=2,
        validation_episode_s=2.0,
        tracking_tolerance=1.0,
        threads=1,
    )
    result = adapt_policy("models/anymal_d_ppo.onnx", None, [bag], tmp_path, cfg)
    assert result.accepted, result.reason
    assert result.identified["variant"]["ground_friction"] < 1.0, "the bag's floor is slippery"
    assert OnnxPolicy(tmp_path / "policy_v1.onnx").metadata["source"].endswith("identified robot)")
    _, trajectories = shifted_bag
    env = identified_simulation(trajectories, cfg, result)
    mixture = env.env.cfg.randomization
    env.close()
    found = result.identified["variant"]
    assert mixture.fraction == cfg.identified_fraction
    assert (
        mixture.robot.ground_friction == found["ground_friction"]
        and mixture.robot.payload_kg == found["payload_kg"]
    )
    assert mixture.robot.obs_noise == TRAINING_RANGES.obs_noise, (
        "trained with the deployed policy's sensor noise"
    )
    with pytest.raises(ValueError, match="dynamics"):
        AdaptConfig(dynamics="dreams")
