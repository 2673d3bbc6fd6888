"""Simulated robots that differ from their model: each variant changes what it should and nothing else,
a seed gives the same robot, delay and noise act where stated, the drives' velocity limit holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rwm.robot import contract as C
from rwm.robot.policy_io import OBS_BASE, OBS_COMMAND, OBS_JOINT_POS, OBS_JOINT_VEL, OBS_LAST_ACTION
from rwm.sim.anymal_sim import AnymalSim
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig
from rwm.sim.dynamics import VariedRobot
from rwm.sim.variants import NOMINAL, OBS_NOISE_STD, RobotVariant, VariantRanges, load_variants

PARAMS = (
    "body_mass",
    "body_ipos",
    "body_inertia",
    "geom_friction",
    "actuator_gainprm",
    "actuator_biasprm",
    "actuator_forcerange",
    "dof_frictionloss",
    "dof_damping",
    "opt.gravity",
    "body_pos",
    "geom_size",
    "jnt_range",
)


def _params(robot: VariedRobot) -> dict[str, np.ndarray]:
    m = robot.model
    return {p: np.array(m.opt.gravity if p == "opt.gravity" else getattr(m, p)) for p in PARAMS}


def _changed(anymal_d, variant: RobotVariant) -> set[str]:
    nominal, varied = _params(VariedRobot(anymal_d)), _params(VariedRobot(anymal_d, variant))
    return {p for p in PARAMS if not np.array_equal(nominal[p], varied[p])}


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            RobotVariant(payload_kg=15.0, payload_com_m=(0.1, 0.0, 0.05)),
            {"body_mass", "body_ipos", "body_inertia"},
        ),
        (RobotVariant(ground_friction=0.4), {"geom_friction"}),
        (RobotVariant(motor_strength=0.75), {"actuator_gainprm", "actuator_biasprm", "actuator_forcerange"}),
        (RobotVariant(joint_friction_nm=1.0, joint_damping=0.5), {"dof_frictionloss", "dof_damping"}),
        (RobotVariant(delay_ticks=8), set()),
        (RobotVariant(obs_noise=1.0), set()),
    ],
)
def test_each_variant_changes_what_it_should_and_nothing_else(anymal_d, variant, expected) -> None:
    assert _changed(anymal_d, variant) == expected


def test_variants_apply_from_nominal_and_never_accumulate(anymal_d) -> None:
    robot = VariedRobot(anymal_d, RobotVariant(payload_kg=10.0, motor_strength=0.5))
    base = robot.model.body("base").id
    mass = robot.model.body_mass[base]
    robot.apply(RobotVariant(payload_kg=10.0, motor_strength=0.5))
    assert robot.model.body_mass[base] == mass
    robot.apply(NOMINAL)
    assert _params(robot).keys() == _params(VariedRobot(anymal_d)).keys()
    for p, v in _params(robot).items():
        np.testing.assert_array_equal(v, _params(VariedRobot(anymal_d))[p], err_msg=p)
    np.testing.assert_array_equal(anymal_d.model.body_mass, VariedRobot(anymal_d).model.body_mass)
    assert robot.model is not anymal_d.model, "every robot has a model of its own"


def test_a_seed_gives_the_same_robots() -> None:
    ranges = VariantRanges(
        payload_kg=(0.0, 10.0), ground_friction=(0.4, 1.2), delay_ticks=(0, 4), payload_com_xy_m=0.1
    )
    draw = lambda seed: [ranges.sample(np.random.default_rng(seed)) for _ in range(1)]  # noqa: E731
    assert draw(3) == draw(3) and draw(3) != draw(4)
    envs = [
        BatchedAnymalEnv(EnvConfig(num_envs=4, num_threads=1, seed=5, randomization=ranges)) for _ in range(2)
    ]
    assert [r.variant for r in envs[0].robots] == [r.variant for r in envs[1].robots]
    assert len({r.variant for r in envs[0].robots}) == 4, "each robot of a batch is its own"


def test_delay_holds_the_previous_targets_for_its_ticks() -> None:
    sim = AnymalSim(variant=RobotVariant(delay_ticks=3))
    new = C.DEFAULT_JOINT_POS + 0.2
    sim.set_targets(new)
    applied = []
    for _ in range(5):
        sim.step(1)
        applied.append(np.array_equal(sim.data.ctrl, new))
    assert applied == [False, False, False, True, True]
    batch = BatchedAnymalEnv(EnvConfig(num_envs=2, num_threads=1, variant=RobotVariant(delay_ticks=8)))
    before = batch.datas[0].ctrl.copy()
    batch.step(np.tile(new, (2, 1)))
    np.testing.assert_array_equal(batch.datas[0].ctrl, before)  # a whole policy step late
    batch.step(np.tile(new, (2, 1)))
    np.testing.assert_array_equal(batch.datas[0].ctrl, new)


def test_noise_reaches_the_policy_observation_only_where_stated() -> None:
    env = BatchedAnymalEnv(EnvConfig(num_envs=32, num_threads=1, variant=RobotVariant(obs_noise=1.0)))
    clean = BatchedAnymalEnv(EnvConfig(num_envs=32, num_threads=1))
    clean.state[:], clean.command[:], clean.action[:] = env.state, env.command, env.action
    diff = env.observation() - clean.observation()
    assert not diff[:, OBS_COMMAND].any() and not diff[:, OBS_LAST_ACTION].any()
    noisy = OBS_NOISE_STD[: env.obs_dim] > 0
    assert (np.abs(diff[:, noisy]) <= OBS_NOISE_STD[: env.obs_dim][noisy] + 1e-6).all()
    assert (np.abs(diff[:, noisy]).max(0) > 0.5 * OBS_NOISE_STD[: env.obs_dim][noisy]).all()
    np.testing.assert_array_equal(env.state, clean.state), "the state (and so the datasets) stays exact"


def test_the_measured_state_carries_the_sensor_noise_the_simulation_node_publishes() -> None:
    """What the deployed loop reads in the suite: noise on joint positions and velocities, angular and
    linear velocity, within the widths; the orientation, torques and the state itself exact."""
    env = BatchedAnymalEnv(EnvConfig(num_envs=32, num_threads=1, variant=RobotVariant(obs_noise=1.0)))
    exact = env.state.copy()
    diff = env.measured_state() - exact
    np.testing.assert_array_equal(env.state, exact)
    for part, width in (
        (C.JOINT_POS, OBS_NOISE_STD[OBS_JOINT_POS.start]),
        (C.JOINT_VEL, OBS_NOISE_STD[OBS_JOINT_VEL.start]),
        (C.ANG_VEL, OBS_NOISE_STD[OBS_BASE.start + 3]),
        (C.LIN_VEL, OBS_NOISE_STD[OBS_BASE.start]),
    ):
        assert (np.abs(diff[:, part]) <= width + 1e-9).all() and np.abs(diff[:, part]).max() > 0.5 * width
    noisy = np.zeros(C.STATE_DIM, dtype=bool)
    for part in (C.JOINT_POS, C.JOINT_VEL, C.ANG_VEL, C.LIN_VEL):
        noisy[part] = True
    assert not diff[:, ~noisy].any(), "gravity and torques are published exact"
    clean = BatchedAnymalEnv(EnvConfig(num_envs=2, num_threads=1))
    np.testing.assert_array_equal(clean.measured_state(), clean.state)


def test_drives_never_push_beyond_the_velocity_limit() -> None:
    """Floating, no gravity, targets flipping: at or above 8.5 rad/s a drive only brakes."""
    for limited in (True, False):
        sim = AnymalSim(variant=RobotVariant(velocity_limit=limited))
        sim.model.opt.gravity[:] = 0.0
        sim.reset(height=2.0)
        pushing, fastest = 0, 0.0
        for k in range(400):
            sim.set_targets(C.DEFAULT_JOINT_POS + (1.0 if (k // 20) % 2 == 0 else -1.0))
            w = sim.joint_velocities.copy()  # the speed the drive sees when it sets its torque
            sim.step(1)
            tau = sim.data.actuator_force
            fast = np.abs(w) >= C.VELOCITY_LIMIT
            pushing += int(((tau * w)[fast] > 1e-9).sum())
            fastest = max(fastest, float(np.abs(w).max()))
        if limited:
            assert pushing == 0, "a drive added torque in the direction of motion above its limit"
        else:
            assert pushing > 0 and fastest > 3 * C.VELOCITY_LIMIT, "without the model, nothing stops it"


def test_named_variants_load_and_bad_ones_are_refused(tmp_path: Path) -> None:
    variants = load_variants()
    assert variants["nominal"] == NOMINAL
    assert {"payload_15kg", "friction_0.4", "motors_75", "delay_20ms", "sensor_noise"} <= set(variants)
    assert (
        len(
            [
                v
                for v in variants.values()
                if sum(1 for f in dataclasses.fields(v) if getattr(v, f.name) != getattr(NOMINAL, f.name)) > 1
            ]
        )
        >= 2
    )
    bad = tmp_path / "v.yaml"
    bad.write_text("variants:\n  nominal: {}\n  heavy: {payload: 3}\n")
    with pytest.raises(ValueError, match="heavy.*unknown fields \\['payload'\\]"):
        load_variants(bad)
    bad.write_text("variants:\n  nominal: {}\n  slow: {delay_ticks: 40}\n")
    with pytest.raises(ValueError, match="slow.*delay_ticks 40"):
        load_variants(bad)


def test_payload_inertia_is_the_reduced_mass_term_about_the_new_centre(anymal_d) -> None:
    nominal = VariedRobot(anymal_d)
    loaded = VariedRobot(anymal_d, RobotVariant(payload_kg=20.0, payload_com_m=(0.3, 0.0, 0.0)))
    m, base = nominal.model, nominal.model.body("base").id
    mb = m.body_mass[base]
    added = loaded.model.body_inertia[base] - m.body_inertia[base]
    reduced = mb * 20.0 / (mb + 20.0)
    assert added.sum() == pytest.approx(2 * reduced * 0.09, rel=1e-9), "the trace grows by 2 mu r^2"
    assert loaded.model.body_ipos[base][0] - m.body_ipos[base][0] == pytest.approx(0.3 * 20.0 / (mb + 20.0))


def test_the_randomization_curriculum_widens_from_the_nominal_robot() -> None:
    from rwm.sim.variants import TRAINING_RANGES

    start = TRAINING_RANGES.scaled(0.0)
    rng = np.random.default_rng(0)
    assert all(start.sample(rng) == dataclasses.replace(NOMINAL, velocity_limit=True) for _ in range(5))
    assert TRAINING_RANGES.scaled(1.0) == TRAINING_RANGES == TRAINING_RANGES.scaled(3.0)
    half = TRAINING_RANGES.scaled(0.5)
    assert half.payload_kg == (0.0, 10.0) and half.ground_friction == pytest.approx((0.65, 1.1))
    assert half.delay_ticks == (0, 4) and half.obs_noise == 0.5
    env = BatchedAnymalEnv(
        EnvConfig(num_envs=4, num_threads=1, randomization=TRAINING_RANGES, randomization_ramp_steps=100)
    )
    assert all(r.variant.payload_kg == 0.0 for r in env.robots), "the first robots are nominal"
    for _ in range(100):
        env.step(np.tile(C.DEFAULT_JOINT_POS, (4, 1)))
    env._reset(np.arange(4))
    assert any(r.variant.payload_kg > 0.0 for r in env.robots), "full ranges after the ramp"
    env.close()


def test_robots_beyond_the_training_family_are_named_apart_from_the_suite() -> None:
    from rwm.sim.variants import TRAINING_RANGES, variant_named

    suite = load_variants(beyond_training=False)
    everything = load_variants()
    beyond = sorted(set(everything) - set(suite))
    assert "payload_25kg" in beyond and "payload_15kg" in suite
    assert variant_named("payload_25kg").payload_kg > TRAINING_RANGES.payload_kg[1], "outside the family"


def test_the_stance_targets_hold_the_robot_up_where_the_bare_pose_lets_it_sit_down() -> None:
    """Drives holding the standing pose itself give no torque until the robot sags; on a floor of
    friction 0.4 its feet slide apart and the base sinks to half its height. The stance targets
    (pose + standing torques / kp) hold it near its standing height on either floor."""
    slippery = RobotVariant(ground_friction=0.4)
    heights = {}
    for name, variant in (("nominal", NOMINAL), ("slippery", slippery)):
        sim = AnymalSim(variant=variant)
        for held in ("pose", "stance"):
            sim.reset()  # the drives hold the stance targets, as a robot standing under its own controller
            if held == "pose":
                sim.set_targets(C.DEFAULT_JOINT_POS)
            sim.step(400)  # 1 s
            heights[name, held] = float(sim.data.qpos[2])
    assert heights["slippery", "pose"] < 0.35 and heights["nominal", "pose"] < 0.56
    assert heights["slippery", "stance"] > 0.55 and heights["nominal", "stance"] > 0.55
