"""Each reward term against a hand computation, NumPy/torch parity, and the air-time carry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rwm.robot import contract as C
from rwm.sim.reward import RewardConfig, reward_terms, total_reward, tracking_reward

CFG = RewardConfig()


def _standing_state() -> np.ndarray:
    s = np.zeros(C.STATE_DIM)
    s[C.GRAVITY] = [0.0, 0.0, -1.0]
    s[C.JOINT_POS] = C.DEFAULT_JOINT_POS
    return s


def _terms(
    state=None, next_state=None, action=None, prev_action=None, command=None, contacts=None, air_time=None
):
    s = _standing_state() if state is None else state
    ns = s.copy() if next_state is None else next_state
    a = C.DEFAULT_JOINT_POS.copy() if action is None else action
    pa = a.copy() if prev_action is None else prev_action
    cmd = np.zeros(3) if command is None else command
    c = np.array([0, 0, 0, 0, 1, 1, 1, 1.0]) if contacts is None else contacts
    at = np.zeros(4) if air_time is None else air_time
    return reward_terms(s, ns, a, pa, cmd, c, at, CFG)


def test_perfect_standing_scores_only_tracking():
    terms, _ = _terms()
    assert terms["lin_vel_tracking"] == pytest.approx(1.0)
    assert terms["yaw_rate_tracking"] == pytest.approx(1.0)
    for name in (
        "vertical_velocity",
        "roll_pitch_rate",
        "joint_torque",
        "joint_acceleration",
        "action_rate",
        "feet_air_time",
        "undesired_contacts",
        "flat_orientation",
        "stand_still",
    ):
        assert terms[name] == pytest.approx(0.0), name
    assert total_reward(terms, CFG) == pytest.approx(CFG.dt * 1.5)
    assert tracking_reward(terms, CFG) == pytest.approx(1.0)


def test_tracking_kernels():
    ns = _standing_state()
    ns[C.LIN_VEL] = [0.5, 0.1, 0.0]
    ns[C.ANG_VEL] = [0.0, 0.0, 0.3]
    terms, _ = _terms(next_state=ns, command=np.array([1.0, -0.1, -0.2]))
    assert terms["lin_vel_tracking"] == pytest.approx(np.exp(-(0.5**2 + 0.2**2) / 0.25))
    assert terms["yaw_rate_tracking"] == pytest.approx(np.exp(-(0.5**2) / 0.25))


def test_penalty_terms():
    s = _standing_state()
    ns = s.copy()
    ns[C.LIN_VEL] = [0.0, 0.0, 0.3]
    ns[C.ANG_VEL] = [0.2, -0.1, 0.0]
    ns[C.GRAVITY] = [0.1, -0.2, -0.97]
    ns[C.JOINT_VEL] = 0.5
    ns[C.JOINT_TORQUE] = np.arange(12.0)
    a = C.DEFAULT_JOINT_POS + 0.1
    terms, _ = _terms(
        state=s,
        next_state=ns,
        action=a,
        prev_action=C.DEFAULT_JOINT_POS,
        contacts=np.array([1, 0, 1, 0, 1, 1, 1, 1.0]),
    )
    assert terms["vertical_velocity"] == pytest.approx(0.09)
    assert terms["roll_pitch_rate"] == pytest.approx(0.05)
    assert terms["flat_orientation"] == pytest.approx(0.05)
    assert terms["joint_torque"] == pytest.approx(float((np.arange(12.0) ** 2).sum()))
    assert terms["joint_acceleration"] == pytest.approx(12 * (0.5 / 0.02) ** 2)
    assert terms["action_rate"] == pytest.approx(12 * 0.01)
    assert terms["undesired_contacts"] == pytest.approx(2.0)
    weights = CFG.weights()
    assert total_reward(terms, CFG) == pytest.approx(CFG.dt * sum(weights[k] * v for k, v in terms.items()))


def test_feet_air_time_rewards_touchdown_after_long_swing():
    cmd = np.array([0.5, 0.0, 0.0])
    air = np.array([0.7, 0.3, 0.0, 0.0])
    contacts = np.array([0, 0, 0, 0, 1, 1, 1, 0.0])  # LF and RF touch down, RH stays in the air
    terms, new_air = _terms(command=cmd, contacts=contacts, air_time=air)
    assert terms["feet_air_time"] == pytest.approx((0.72 - 0.5) + (0.32 - 0.5))
    assert np.allclose(new_air, [0.0, 0.0, 0.0, 0.02])
    standing, _ = _terms(command=np.zeros(3), contacts=contacts, air_time=air)
    assert standing["feet_air_time"] == 0.0


def test_stand_still_measures_the_pose_only_while_told_to_stand():
    ns = _standing_state()
    ns[C.JOINT_POS] += np.linspace(-0.3, 0.3, 12)
    expected = np.abs(np.linspace(-0.3, 0.3, 12)).sum()
    standing, _ = _terms(next_state=ns, command=np.zeros(3))
    assert standing["stand_still"] == pytest.approx(expected)
    for command in ([0.3, 0.0, 0.0], [0.0, 0.0, 0.5]):
        walking, _ = _terms(next_state=ns, command=np.array(command))
        assert walking["stand_still"] == 0.0, command
    assert CFG.weights()["stand_still"] == 0.0  # Table S5's reward is unchanged by default
    batch = torch.tensor(np.stack([ns, ns]), dtype=torch.float32)
    terms, _ = reward_terms(
        batch,
        batch,
        torch.zeros(2, 12),
        torch.zeros(2, 12),
        torch.zeros(2, 3),
        torch.zeros(2, 8),
        torch.zeros(2, 4),
        RewardConfig(stand_still=-0.5),
    )
    assert terms["stand_still"].dtype == torch.float32
    assert terms["stand_still"][0].item() == pytest.approx(expected, rel=1e-5)


def test_numpy_and_torch_agree_batched():
    rng = np.random.default_rng(0)
    n = 16
    s, ns = rng.normal(size=(n, 45)), rng.normal(size=(n, 45))
    a, pa, cmd = rng.normal(size=(n, 12)), rng.normal(size=(n, 12)), rng.normal(size=(n, 3))
    c = (rng.random((n, 8)) > 0.5).astype(float)
    air = rng.random((n, 4))
    t_np, air_np = reward_terms(s, ns, a, pa, cmd, c, air, CFG)
    args = [torch.tensor(x) for x in (s, ns, a, pa, cmd, c, air)]
    t_th, air_th = reward_terms(*args, CFG)
    for k in t_np:
        assert np.allclose(t_np[k], t_th[k].numpy()), k
    assert np.allclose(air_np, air_th.numpy())
    assert np.allclose(total_reward(t_np, CFG), total_reward(t_th, CFG).numpy())
