"""The batched environment: shapes, observation layout, resets on falls, commands, pushes, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from rwm.robot import contract as C
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig, PushConfig
from rwm.sim.commands import CommandConfig


@pytest.fixture()
def make_env(anymal_d):
    envs = []

    def make(**kw):
        env = BatchedAnymalEnv(EnvConfig(**kw), robot=anymal_d)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


def _stand(env):
    return np.tile(C.DEFAULT_JOINT_POS, (env.num_envs, 1))


def test_shapes_and_observation_layout(make_env):
    env = make_env(num_envs=4, num_threads=2)
    out = env.step(_stand(env))
    assert out.state.shape == (4, 45) and out.contacts.shape == (4, 8) and out.obs.shape == (4, 48)
    assert out.reward.shape == (4,) and out.terminated.shape == (4,)
    o = out.obs
    assert np.allclose(o[:, 0:9], out.state[:, 0:9])
    assert np.allclose(o[:, 9:12], env.command)
    assert np.allclose(o[:, 12:24], out.state[:, C.JOINT_POS] - C.DEFAULT_JOINT_POS, atol=1e-6)
    assert np.allclose(o[:, 36:48], 0.0)  # last raw action of the standing pose
    assert make_env(num_envs=2, include_last_action=False).obs_dim == 36


def test_standing_robots_stay_up_and_feet_touch(make_env):
    env = make_env(num_envs=4, num_threads=2)
    for _ in range(100):
        out = env.step(_stand(env))
        assert not out.terminated.any()
    assert np.allclose(out.state[:, C.GRAVITY], [0, 0, -1], atol=0.1)  # reset pose noise tilts a little
    assert (out.contacts[:, 4:8] == 1).all() and (out.contacts[:, 0:4] == 0).all()
    assert np.isfinite(out.reward).all()


def test_fall_terminates_and_resets(make_env):
    env = make_env(num_envs=2, num_threads=1)
    d = env.datas[1]
    d.qpos[3:7] = [0.0, 1.0, 0.0, 0.0]  # upside down, 0.6 m up: lands on its back
    for _ in range(50):
        out = env.step(_stand(env))
        if out.terminated[1]:
            break
    assert out.terminated[1] and not out.terminated[0]
    assert out.final_state[1, 8] > -0.5  # the state that ended the episode is upside down
    assert out.state[1, 8] < -0.9  # the returned state is the reset one
    assert env.episode_step[1] == 0


def test_time_limit_truncates(make_env):
    env = make_env(num_envs=2, episode_length_s=0.2)
    outs = [env.step(_stand(env)) for _ in range(10)]
    assert outs[-1].truncated.all() and not outs[-2].truncated.any()
    assert not any(o.terminated.any() for o in outs)


def test_commands_resampled_within_episode(make_env):
    env = make_env(num_envs=8, commands=CommandConfig(resample_time_s=0.1))
    first = env.command.copy()
    for _ in range(5):
        env.step(_stand(env))
    assert not np.allclose(first, env.command)
    cfg = CommandConfig()
    assert (np.abs(env.command[:, 0]) <= cfg.lin_vel_x[1]).all()
    assert (np.abs(env.command[:, 1]) <= cfg.lin_vel_y[1]).all()


def test_pushes_kick_the_base(make_env):
    env = make_env(num_envs=2, pushes=PushConfig(enabled=True, interval_s=(0.1, 0.1), max_velocity=1.0))
    speeds = []
    for _ in range(8):
        out = env.step(_stand(env))
        speeds.append(np.linalg.norm(out.state[:, 0:2], axis=1).max())
    assert max(speeds) > 0.3


def test_same_seed_same_rollout(make_env):
    a, b = make_env(num_envs=3, seed=7), make_env(num_envs=3, seed=7)
    rng = np.random.default_rng(0)
    for _ in range(20):
        act = _stand(a) + rng.normal(0, 0.1, (3, 12))
        oa, ob = a.step(act), b.step(act)
        assert np.array_equal(oa.state, ob.state)


def test_rejects_bad_targets(make_env):
    env = make_env(num_envs=2)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full((2, 12), np.nan))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((3, 12)))
