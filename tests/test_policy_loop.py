"""The 50 Hz control path without ROS: modes, safety filter, watchdog, e-stop, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from rwm.control.policy_loop import Mode, PolicyLoop
from rwm.control.safety import SafetyConfig
from rwm.robot import contract as C

DT = C.POLICY_DT
LOWER = np.full(12, -3.0)
UPPER = np.full(12, 3.0)
LOWER[0], UPPER[0] = -0.5, 0.5  # LF_HAA
STANCE = C.DEFAULT_JOINT_POS + np.linspace(-0.3, 0.3, 12)  # the standing pose held against the weight


class FakePolicy:
    def __init__(self, raw=None):
        self.calls = 0
        self.raw = np.zeros((1, 12)) if raw is None else np.asarray(raw, dtype=np.float64)[None]

    def __call__(self, obs):
        assert obs.shape == (1, 48) and np.isfinite(obs).all()
        self.calls += 1
        return self.raw


def _loop(policy=None, **safety):
    cfg = SafetyConfig(**{"soft_start_s": 0.1, **safety})
    return PolicyLoop(policy or FakePolicy(), 48, LOWER, UPPER, STANCE, cfg)


def _feed(loop, t, q=None, dq=None, lin_vel=None, torque=None, ang_vel=None):
    q = C.DEFAULT_JOINT_POS + 0.1 if q is None else q
    torque = np.zeros(12) if torque is None else torque
    assert loop.update_joints(q, np.zeros(12) if dq is None else dq, torque, t)
    assert loop.update_imu(np.array([0.0, 0.0, -1.0]), np.zeros(3) if ang_vel is None else ang_vel, t)
    assert loop.update_odom(np.zeros(3) if lin_vel is None else lin_vel, t)


def _run(loop, t0, seconds, feed=True):
    t, out = t0, None
    for _ in range(round(seconds / DT)):
        if feed:
            _feed(loop, t)
        out = loop.tick(t)
        t += DT
    return t, out


def test_waits_for_a_complete_state_then_soft_starts_from_the_measured_pose():
    loop = _loop()
    assert loop.tick(0.0) is None and loop.mode is Mode.WAITING
    loop.update_joints(C.DEFAULT_JOINT_POS + 0.1, np.zeros(12), np.zeros(12), 0.0)
    assert loop.tick(0.0) is None, "IMU and odometry still missing"
    _feed(loop, 0.0)
    first = loop.tick(0.0).copy()
    assert loop.mode is Mode.SOFT_START
    assert np.allclose(first, np.clip(C.DEFAULT_JOINT_POS + 0.1, LOWER, UPPER))
    t, out = _run(loop, DT, 0.12)
    assert loop.mode is Mode.POLICY
    assert np.allclose(out, C.DEFAULT_JOINT_POS), "zero raw action = the standing pose"


def test_rate_bound_and_joint_limits_hold_whatever_the_policy_says():
    policy = FakePolicy(np.full(12, 10.0))  # +5 rad on every joint
    loop = _loop(policy, max_target_step=0.2)
    t, _ = _run(loop, 0.0, 0.2)
    prev = loop.targets.copy()
    for _ in range(30):
        _feed(loop, t)
        out = loop.tick(t)
        assert np.abs(out - prev).max() <= 0.2 + 1e-12
        assert (out >= LOWER).all() and (out <= UPPER).all()
        prev, t = out.copy(), t + DT
    assert out[0] == pytest.approx(0.5) and loop.safety.clamped_limit > 0 and loop.safety.clamped_rate > 0


def test_non_finite_policy_output_is_never_sent():
    policy = FakePolicy(np.full(12, np.nan))
    loop = _loop(policy)
    t, out = _run(loop, 0.0, 0.3)
    assert np.isfinite(out).all() and np.allclose(out, np.clip(STANCE, LOWER, UPPER)), "the soft start's end"
    assert loop.rejected["policy_nan"] > 0


def test_bad_inputs_are_rejected_and_change_nothing():
    loop = _loop()
    _run(loop, 0.0, 0.2)
    q_before = loop.state[C.JOINT_POS].copy()
    bad = C.DEFAULT_JOINT_POS.copy()
    bad[3] = np.nan
    assert not loop.update_joints(bad, np.zeros(12), np.zeros(12), 1.0)
    assert not loop.update_imu(np.array([0.0, np.inf, -1.0]), np.zeros(3), 1.0)
    assert not loop.set_command(np.nan, 0.0, 0.0)
    assert np.array_equal(loop.state[C.JOINT_POS], q_before)
    assert loop.rejected == {"joints_nan": 1, "imu_nan": 1, "cmd_vel_nan": 1}
    assert loop.set_command(5.0, -5.0, 0.3) and np.allclose(loop.command_target, [1.0, -0.5, 0.3])


def test_command_reaches_the_policy_ramped_at_the_acceleration_limits():
    loop = _loop()
    t, _ = _run(loop, 0.0, 0.2)  # soft start over: the policy runs
    assert loop.mode is Mode.POLICY
    loop.set_command(1.0, -0.5, 1.0)
    seen = []
    for _ in range(40):
        _feed(loop, t)
        loop.tick(t)
        seen.append(loop.command.copy())
        t += DT
    seen = np.array(seen)
    np.testing.assert_allclose(seen[0], [0.04, -0.04, 0.08])  # 2 m/s^2 and 4 rad/s^2 over 20 ms
    assert np.abs(np.diff(seen, axis=0)).max(0) == pytest.approx([0.04, 0.04, 0.08])
    np.testing.assert_allclose(seen[-1], [1.0, -0.5, 1.0]), "it arrives"
    np.testing.assert_allclose(loop.observation[0, 9:12], seen[-1], rtol=1e-6), "the policy sees it"
    loop.set_estop(True)  # walking fast, then stopped: it restarts from standing, not at 1 m/s
    _feed(loop, t)
    loop.tick(t)
    loop.set_command(0.0, 0.0, 0.0)
    loop.set_estop(False)
    _feed(loop, t + DT)
    loop.tick(t + DT)
    assert loop.mode is Mode.SOFT_START and not loop.command.any()
    instant = _loop(max_lin_accel=0.0, max_yaw_accel=0.0)
    t, _ = _run(instant, 0.0, 0.2)
    instant.set_command(1.0, -0.5, 1.0)
    _feed(instant, t)
    instant.tick(t)
    np.testing.assert_array_equal(instant.command, [1.0, -0.5, 1.0])


class StanceThenSway(FakePolicy):
    """A different target every call: a policy that never stands still by itself."""

    def __call__(self, obs):
        super().__call__(obs)
        return self.raw + 0.1 * np.sin(self.calls)


def test_a_still_robot_at_zero_command_holds_its_stance_until_a_command_or_a_push():
    policy = StanceThenSway()
    loop = _loop(policy, stand_hold_after_s=0.5, stand_still_s=0.1)
    t, _ = _run(loop, 0.0, 0.12)  # soft start over
    moving = np.full(12, 0.5)  # rad/s: a foot in swing
    for _ in range(50):  # 1 s at zero command, joints moving: the policy keeps control
        _feed(loop, t, dq=moving)
        loop.tick(t)
        t += DT
    assert loop.mode is Mode.POLICY
    t, _ = _run(loop, t, 0.1)  # still for 0.1 s: the hold starts
    assert loop.mode is Mode.STAND
    held, calls = loop.targets.copy(), policy.calls
    t, out = _run(loop, t, 2.0)
    assert np.array_equal(out, held) and policy.calls == calls, "the last targets sent, no policy call"

    _feed(loop, t, lin_vel=np.array([0.4, 0.0, 0.0]))  # pushed: the policy catches the robot
    loop.tick(t)
    assert loop.mode is Mode.POLICY and policy.calls == calls + 1
    t, _ = _run(loop, t + DT, 0.7)  # still again at zero command: back to the hold
    assert loop.mode is Mode.STAND
    loop.set_command(0.3, 0.0, 0.0)  # a command: the policy walks from the held pose at once
    t, out = _run(loop, t, DT)
    assert loop.mode is Mode.POLICY and loop.command[0] > 0 and np.abs(out - held).max() <= 0.5
    t, _ = _run(loop, t, 2.0)
    assert loop.mode is Mode.POLICY, "moving commanded: no hold however still the robot is"

    never = _loop(StanceThenSway(), stand_hold_after_s=0.0)
    _run(never, 0.0, 3.0)
    assert never.mode is Mode.POLICY


class Alternating(FakePolicy):
    """Targets 0.1 either side of its stance, by turns: their mean is the stance, the last one is not."""

    def __call__(self, obs):
        super().__call__(obs)
        return self.raw + (0.2 if self.calls % 2 else -0.2)


def _until_held(loop, t, sent):
    """Tick a still robot until the hold takes it; the policy's targets sent meanwhile go to `sent`."""
    while loop.mode is not Mode.STAND:
        _feed(loop, t)
        out = loop.tick(t)
        t += DT
        if loop.mode is Mode.POLICY:
            sent.append(out.copy())
    return t


def test_the_hold_keeps_the_mean_of_the_policys_recent_targets_not_its_last():
    loop = _loop(Alternating(), stand_hold_after_s=0.5, stand_still_s=0.1, stand_hold_average_s=0.2)
    t, _ = _run(loop, 0.0, 0.12)  # soft start over
    sent = []
    t = _until_held(loop, t, sent)
    assert len(sent) > 10
    np.testing.assert_allclose(loop.targets, np.mean(sent[-10:], axis=0))
    assert np.abs(loop.targets - sent[-1]).max() > 0.05, "the last targets alone differ from the mean"
    held = loop.targets.copy()
    t, out = _run(loop, t, 1.0)
    np.testing.assert_array_equal(out, held)

    loop.policy.raw = loop.policy.raw + 0.2  # a new stance after the push: the old targets must not count
    _feed(loop, t, lin_vel=np.array([0.4, 0.0, 0.0]))  # pushed: the policy again, then a second hold
    sent = [loop.tick(t).copy()]
    _until_held(loop, t + DT, sent)
    assert len(sent) < 10, "held again before the window refilled"
    np.testing.assert_allclose(loop.targets, np.mean(sent, axis=0))  # only what it sent since the push


def test_a_held_robot_that_starts_to_tip_goes_back_to_the_policy():
    loop = _loop(StanceThenSway(), stand_hold_after_s=0.5, stand_still_s=0.1)
    t = _until_held(loop, _run(loop, 0.0, 0.12)[0], [])
    for speed in (0.03, 0.06, 0.09):  # creeping, still below the release speed: held
        _feed(loop, t, lin_vel=np.array([0.0, speed, 0.0]))
        loop.tick(t)
        t += DT
        assert loop.mode is Mode.STAND
    _feed(loop, t, lin_vel=np.array([0.0, 0.12, 0.0]))  # rolling on its held stance: caught by the policy
    loop.tick(t)
    assert loop.mode is Mode.POLICY
    t = _until_held(loop, t + DT, [])
    _feed(loop, t, ang_vel=np.array([0.25, 0.0, 0.0]))  # the same as a turn of the base
    loop.tick(t)
    assert loop.mode is Mode.POLICY


def test_watchdog_holds_the_last_measured_posture_then_soft_starts_again():
    policy = FakePolicy(np.full(12, 0.4))
    loop = _loop(policy)
    t, _ = _run(loop, 0.0, 0.3)
    measured = loop.state[C.JOINT_POS].copy()
    calls = policy.calls
    t, out = _run(loop, t, 3 * DT, feed=False)  # third stale period: still within the limit
    assert loop.mode is Mode.POLICY
    t, out = _run(loop, t, 2 * DT, feed=False)
    assert loop.mode is Mode.WATCHDOG and np.allclose(out, np.clip(measured, LOWER, UPPER))
    assert policy.calls == calls + 3
    ages = loop.input_ages(t)
    assert set(ages) == {"joints", "imu", "odom"} and min(ages.values()) > 3 * DT, "what went stale"
    _feed(loop, t)
    loop.tick(t)
    assert loop.mode is Mode.SOFT_START


def test_estop_holds_sends_no_policy_action_and_rearms_through_soft_start():
    policy = FakePolicy(np.full(12, 0.4))
    loop = _loop(policy)
    t, _ = _run(loop, 0.0, 0.3)
    loop.set_estop(True)
    hold = loop.state[C.JOINT_POS].copy()
    calls = policy.calls
    t, out = _run(loop, t, 0.5)
    assert loop.mode is Mode.ESTOP and policy.calls == calls and np.allclose(out, np.clip(hold, LOWER, UPPER))
    loop.set_estop(False)
    _run(loop, t, DT)
    assert loop.mode is Mode.SOFT_START


def test_estop_before_any_state_sends_nothing_then_holds_the_first_measured_pose():
    """Engaged before the robot reported: no pose is known, so no command at all (not the standing
    pose, which would pull a lying robot up at full gain); then the first measured pose is held."""
    loop = _loop()
    loop.set_estop(True)
    assert loop.tick(0.0) is None and loop.mode is Mode.ESTOP
    lying = C.DEFAULT_JOINT_POS + 0.3
    _feed(loop, DT, lying)
    out = loop.tick(DT)
    assert loop.mode is Mode.ESTOP and np.allclose(out, np.clip(lying, LOWER, UPPER))
    _feed(loop, 2 * DT, lying + 0.1)
    assert np.allclose(loop.tick(2 * DT), np.clip(lying, LOWER, UPPER)), "held, not following"


def test_foot_kinematics_and_contact_estimate_against_the_simulator():
    from rwm.robot.kinematics import AnymalKinematics
    from rwm.sim.anymal_sim import AnymalSim

    kin = AnymalKinematics()
    feet = kin.foot_positions(C.DEFAULT_JOINT_POS)
    assert np.allclose(feet[0, [0, 2]], feet[1, [0, 2]]) and feet[0, 1] == pytest.approx(-feet[1, 1])
    assert (feet[:, 2] < -0.5).all(), "feet below the base when standing"
    assert (kin.joint_lower[[0, 3]] < 0).all() and kin.joint_upper[0] == pytest.approx(0.6108655)
    sim = AnymalSim()
    sim.reset()
    sim.step(400)  # settle standing
    s = sim.state()
    est = kin.estimate_foot_contacts(s[C.JOINT_POS], s[C.JOINT_VEL], s[C.GRAVITY])
    assert np.array_equal(est, sim.contacts[C.FOOT_CONTACTS])


def _walking(loop):
    t, _ = _run(loop, 0.0, 0.2)  # past the soft start: the policy drives
    assert loop.mode is Mode.POLICY
    return t


def test_a_swapped_policy_is_blended_in_then_final():
    old, new = FakePolicy(), FakePolicy()
    old.raw[:], new.raw[:] = 0.0, 0.4
    loop = _loop(old, swap_blend_s=0.1, rollback_window_s=0.2, max_target_step=10.0)
    t = _walking(loop)
    loop.swap_policy(new, t)
    raws = []
    for _ in range(15):
        _feed(loop, t)
        loop.tick(t)
        raws.append(loop.last_raw_action[0])
        assert loop.rollback_reason(t, anomaly=False) is None
        t += DT
    assert (
        raws[0] == pytest.approx(0.0)
        and raws[2] == pytest.approx(0.4 * 0.4)
        and raws[-1] == pytest.approx(0.4)
    )
    assert loop.fallback is None and not loop.rollback(), "past the window the swap is final"


@pytest.mark.parametrize("trouble", ["anomaly", "fall", "watchdog"])
def test_trouble_within_the_window_brings_the_previous_policy_back(trouble):
    old, new = FakePolicy(), FakePolicy()
    loop = _loop(old)
    t = _walking(loop)
    loop.swap_policy(new, t)
    _feed(loop, t)
    loop.tick(t)
    assert loop.rollback_reason(t, anomaly=False) is None
    if trouble == "watchdog":  # the robot's state stops coming
        loop.tick(t + 10 * DT)
    else:
        _feed(loop, t + DT)
        if trouble == "fall":
            loop.update_imu(np.array([0.0, -0.9, -0.1]), np.zeros(3), t + DT)  # tilted beyond 60 degrees
        loop.tick(t + DT)
    reason = loop.rollback_reason(t + DT, anomaly=trouble == "anomaly")
    assert reason is not None and trouble in reason, reason
    assert loop.rollback() and loop.policy is old and loop.fallback is None
    assert not loop.rollback(), "only once"


def test_measured_postures_are_held_with_their_torque_and_the_soft_start_ends_at_the_stance():
    """A hold or a soft start that aimed at the measured pose alone would let the robot sag (the PD
    gives no torque at its target); the stance targets hold it up at the end of the soft start."""
    loop = _loop()
    q, torque = C.DEFAULT_JOINT_POS + 0.1, 1.5 * C.KP * (STANCE - C.DEFAULT_JOINT_POS)  # within the bound
    _feed(loop, 0.0, q=q, torque=torque)
    held = np.clip(q + torque / C.KP, LOWER, UPPER)
    assert np.allclose(loop.tick(0.0), held) and loop.mode is Mode.SOFT_START
    t, last_soft = DT, None
    while loop.mode is Mode.SOFT_START:
        _feed(loop, t, q=q, torque=torque)
        last_soft = loop.tick(t).copy()
        t += DT
    assert np.allclose(last_soft, np.clip(STANCE, LOWER, UPPER))
    loop.set_estop(True)
    _feed(loop, t, q=q + 0.05, torque=torque)
    assert np.allclose(loop.tick(t), np.clip(q + 0.05 + torque / C.KP, LOWER, UPPER))
    assert loop.mode is Mode.ESTOP
    # a torque spike (80 Nm: 1 rad at kp 80) is not locked into a hold: twice the stance's offset at most
    loop.set_estop(False)
    _run(loop, t + DT, 0.2)
    loop.set_estop(True)
    _feed(loop, t + 0.3, q=q, torque=np.full(12, 80.0))
    bound = np.maximum(2.0 * np.abs(STANCE - C.DEFAULT_JOINT_POS), 0.05)
    assert np.allclose(loop.tick(t + 0.3), np.clip(q + bound, LOWER, UPPER))


def test_the_soft_start_moves_targets_no_faster_than_its_speed_and_hands_a_standing_robot_over_early():
    def ticks_in_soft_start(q):
        loop = _loop(soft_start_s=2.0, soft_start_speed=0.5)
        t, ticks, prev, fastest = 0.0, 0, None, 0.0
        while True:
            _feed(loop, t, q=q)
            out = loop.tick(t).copy()
            if loop.mode is not Mode.SOFT_START:
                return ticks, fastest
            fastest = fastest if prev is None else max(fastest, float(np.abs(out - prev).max()) / DT)
            prev, ticks, t = out, ticks + 1, t + DT

    near, near_speed = ticks_in_soft_start(STANCE + 0.1)  # standing: 0.1 rad from its stance
    far, far_speed = ticks_in_soft_start(STANCE + 1.5)  # far from it (the clamp keeps LF_HAA closer)
    # 0.2 s at 0.5 rad/s (one tick more where the float time falls short); smoothstep peaks at 1.5x
    assert near in (10, 11) and near_speed <= 0.5 * 1.5 + 1e-9
    assert far in (100, 101), "never longer than soft_start_s"
    assert far_speed > 0.5 * 1.5, "then faster, to be there in soft_start_s"
