"""Policy adaptation from bags (MOPO-PPO): the uncertainty penalty acts on the imagined reward, and a
fine-tuned policy becomes a version only after its simulated validation, atomically."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from rwm.data.collect import collect_bag
from rwm.models.factory import build_world_model, save_checkpoint
from rwm.rl.imagination_env import ImaginationConfig, ImaginationEnv
from rwm.runners.adaptation import AdaptConfig, adapt_policy, freeze_observation_normalization
from rwm.storage.replay_buffer import ReplayBuffer

TINY = {"hidden_size": 32, "head_hidden": 16, "ensemble_size": 3}


@pytest.fixture(scope="module")
def bags_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    bags = []
    for i in range(2):
        collect_bag(root / f"bag_{i}", controller="perturb", duration_s=3.0, seed=i)
        bags.append(root / f"bag_{i}")
    from rwm.data.bag_loader import load_bags

    trajectories, _ = load_bags(bags)
    torch.manual_seed(0)
    model = build_world_model("rwm", TINY)
    model.normalizer.fit(
        np.concatenate([t.state for t in trajectories]), np.concatenate([t.action for t in trajectories])
    )
    save_checkpoint(model, root / "ensemble.pt")
    return bags, root / "ensemble.pt", model, trajectories


def _bag_buffer(trajectories) -> ReplayBuffer:
    buffer = ReplayBuffer(seed=0)
    for t in trajectories:
        buffer.add(t.state, t.action, t.contacts)
    return buffer


def test_the_penalty_lowers_each_imagined_reward_by_the_members_disagreement(bags_and_model):
    _, _, model, trajectories = bags_and_model
    rewards, logs = [], []
    for penalty in (0.0, 2.0):
        buffer = _bag_buffer(trajectories)
        cfg = ImaginationConfig(
            num_envs=8, history=8, seed=3, sample_temperature=0.0, uncertainty_penalty=penalty
        )
        env = ImaginationEnv(model, buffer, cfg)
        _, reward, _, extras = env.step(torch.zeros(8, 12))
        rewards.append(reward)
        logs.append(extras["log"]["/imagined/uncertainty"])
    assert logs[0] == logs[1] > 0, "an untrained ensemble disagrees"
    assert float((rewards[0] - rewards[1]).mean()) == pytest.approx(2.0 * logs[0], rel=1e-4)


def test_a_version_appears_only_after_validation(bags_and_model, tmp_path):
    bags, checkpoint, _, _ = bags_and_model
    imagination = ImaginationConfig(num_envs=16, history=8, episode_steps=20, online_fraction=1.0)
    cfg = AdaptConfig(
        critic_warmup=1,
        iterations=2,
        imagination=imagination,
        validation_episodes=4,
        validation_episode_s=3.0,
        threads=1,
    )
    rejected = adapt_policy(
        "models/anymal_d_ppo.onnx", checkpoint, bags, tmp_path, replace(cfg, tracking_tolerance=-1.0)
    )
    assert not rejected.accepted and "tracking" in rejected.reason
    assert not list(tmp_path.glob("policy_v*")) and not list(tmp_path.glob(".adapt-*")), "nothing left behind"
    accepted = adapt_policy(
        "models/anymal_d_ppo.onnx", checkpoint, bags, tmp_path, replace(cfg, tracking_tolerance=1.0)
    )
    assert accepted.accepted, accepted.reason
    assert (
        accepted.version == 1
        and (tmp_path / "policy_v1.onnx").is_file()
        and (tmp_path / "policy_v1.json").is_file()
    )
    assert accepted.deployed["nominal"]["episodes"] == 4 and accepted.bag_rows > 200
    from rwm.export.runtime import OnnxPolicy

    assert OnnxPolicy(tmp_path / "policy_v1.onnx").metadata["version"] == 1
    deployed_mean = _input_mean("models/anymal_d_ppo.onnx")
    assert np.array_equal(_input_mean(tmp_path / "policy_v1.onnx"), deployed_mean), "normalization kept"


def _input_mean(path) -> np.ndarray:
    """The observation mean an exported policy subtracts first."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return weights[graph.node[0].input[1]]


def test_critic_warm_up_leaves_the_actor_and_the_learning_rate_as_they_were(bags_and_model, tmp_path):
    """The warm-up trains the critic alone: the deployed actor is untouched, and the learning rate that
    rsl-rl's adaptive schedule raised while the actor stood still is put back."""
    from rsl_rl.runners import OnPolicyRunner

    from rwm.export.policy_onnx import load_actor_from_onnx
    from rwm.runners.ppo import PPOConfig, TrainConfig, runner_config, warm_up_critic

    _, _, model, trajectories = bags_and_model
    buffer = _bag_buffer(trajectories)
    env = ImaginationEnv(model, buffer, ImaginationConfig(num_envs=16, history=8, episode_steps=20))
    ppo = PPOConfig(learning_rate=3e-4)
    runner = OnPolicyRunner(env, runner_config(TrainConfig(ppo=ppo)), log_dir=str(tmp_path), device="cpu")
    load_actor_from_onnx(runner.alg.actor, "models/anymal_d_ppo.onnx")
    actor = {k: v.clone() for k, v in runner.alg.actor.state_dict().items()}
    critic = {k: v.clone() for k, v in runner.alg.critic.state_dict().items()}
    warm_up_critic(runner, iterations=3)
    after = runner.alg.actor.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in actor.items()), "the actor did not move"
    assert any(not torch.equal(v, runner.alg.critic.state_dict()[k]) for k, v in critic.items())
    assert runner.alg.learning_rate == 3e-4
    assert all(g["lr"] == 3e-4 for g in runner.alg.optimizer.param_groups)
    assert all(p.requires_grad for p in runner.alg.actor.parameters()), "the actor trains again after"


@pytest.mark.parametrize("frozen", [True, False])
def test_a_frozen_normalization_keeps_the_deployed_statistics(bags_and_model, tmp_path, frozen):
    """Adaptation keeps the deployed actor's input normalization (refitted, the imagined data of one
    robot moves it)."""
    from rsl_rl.runners import OnPolicyRunner

    from rwm.export.policy_onnx import load_actor_from_onnx
    from rwm.runners.ppo import TrainConfig, runner_config

    _, _, model, trajectories = bags_and_model
    buffer = _bag_buffer(trajectories)
    env = ImaginationEnv(model, buffer, ImaginationConfig(num_envs=16, history=8, episode_steps=20))
    runner = OnPolicyRunner(env, runner_config(TrainConfig()), log_dir=str(tmp_path), device="cpu")
    load_actor_from_onnx(runner.alg.actor, "models/anymal_d_ppo.onnx", transitions=100)
    if frozen:
        freeze_observation_normalization(runner.alg.actor)
    before = runner.alg.actor.obs_normalizer.mean.clone()
    runner.learn(num_learning_iterations=2)
    unchanged = torch.equal(before, runner.alg.actor.obs_normalizer.mean)
    assert unchanged == frozen
