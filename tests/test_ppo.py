"""PPO plumbing: the rsl-rl VecEnv wrapper, the evaluation metric and ONNX export parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from rwm.control.policy_loop import Mode
from rwm.control.safety import SafetyConfig
from rwm.control.simulated import SimulatedControlLoops
from rwm.evaluation.policy_eval import PolicyEvalConfig, evaluate_policy, evaluate_standing
from rwm.export.policy_onnx import OnnxPolicy, export_policy
from rwm.rl.vec_env import AnymalVecEnv
from rwm.robot import contract as C
from rwm.robot.policy_io import raw_to_targets
from rwm.runners.ppo import PPOConfig, TrainConfig, runner_config
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig
from rwm.sim.reward import tracking_reward


def test_vec_env_contract(anymal_d):
    cfg = EnvConfig(num_envs=4, episode_length_s=0.1)
    venv = AnymalVecEnv(cfg, BatchedAnymalEnv(cfg, robot=anymal_d))
    obs = venv.get_observations()
    assert isinstance(obs, TensorDict) and obs["policy"].shape == (4, 48)
    assert venv.num_actions == 12 and venv.max_episode_length == 5
    for _ in range(5):
        obs, rew, dones, extras = venv.step(torch.zeros(4, 12))
    assert rew.shape == (4,) and rew.dtype == torch.float32
    assert dones.tolist() == [1, 1, 1, 1] and extras["time_outs"].all()
    assert "/reward/lin_vel_tracking" in extras["log"]
    venv.episode_length_buf = torch.tensor([1, 2, 3, 4])
    assert venv.env.episode_step.tolist() == [1, 2, 3, 4]
    venv.close()


def test_raw_actions_map_to_contract_targets():
    u = np.array([[0.0] * 12, [1.0] * 12, [100.0] * 12])
    a = raw_to_targets(u)
    assert np.allclose(a[0], C.DEFAULT_JOINT_POS)
    assert np.allclose(a[1], C.DEFAULT_JOINT_POS + 0.5)
    assert np.allclose(a[2], C.DEFAULT_JOINT_POS + 5.0)  # clipped at 10 raw


def _reference_metrics(policy, cfg: PolicyEvalConfig, anymal_d) -> dict:
    """The metric computed step by step, independently of evaluate_policy's vectorized sums."""
    env = BatchedAnymalEnv(
        EnvConfig(num_envs=cfg.episodes, episode_length_s=cfg.episode_length_s, seed=cfg.seed), robot=anymal_d
    )
    track, lin, yaw, alive = [], [], [], np.ones(cfg.episodes, bool)
    obs = env.observation()
    for _ in range(env.max_episode_steps):
        cmd = env.command.copy()
        out = env.step(raw_to_targets(policy(obs)))
        for i in np.flatnonzero(alive):
            track.append(tracking_reward({k: v[i] for k, v in out.terms.items()}))
            lin.append(float(((cmd[i, :2] - out.final_state[i, :2]) ** 2).sum()))
            yaw.append(float((cmd[i, 2] - out.final_state[i, 5]) ** 2))
        alive &= ~out.terminated
        obs = out.obs
    env.close()
    return {
        "track": np.mean(track),
        "lin": np.sqrt(np.mean(lin)),
        "yaw": np.sqrt(np.mean(yaw)),
        "falls": int((~alive).sum()),
        "steps": len(track),
    }


@pytest.mark.parametrize("gain", [0.0, 4.0])
def test_policy_metric_matches_hand_computation(anymal_d, gain):
    rng = np.random.default_rng(3)
    weights = rng.normal(0, 1, (48, 12))

    def policy(obs):  # gain 0 stands; gain 4 thrashes and falls
        return gain * np.tanh(obs @ weights)

    cfg = PolicyEvalConfig(episodes=6, episode_length_s=1.0, seed=5, num_threads=1)
    got = evaluate_policy(policy, 48, cfg)
    ref = _reference_metrics(policy, cfg, anymal_d)
    assert got["tracking_reward_normalized"] == pytest.approx(ref["track"], abs=1e-4)
    assert got["lin_vel_rmse_m_s"] == pytest.approx(ref["lin"], abs=1e-4)
    assert got["yaw_rate_rmse_rad_s"] == pytest.approx(ref["yaw"], abs=1e-4)
    assert got["falls"] == ref["falls"] and got["steps_evaluated"] == ref["steps"]
    if gain == 0.0:
        assert got["falls"] == 0 and got["steps_evaluated"] == 6 * 50
    else:
        assert got["falls"] > 0 and got["steps_evaluated"] < 6 * 50  # fallen robots stop counting


def test_onnx_export_parity_and_metadata(tmp_path):
    from rsl_rl.models import MLPModel

    rcfg = runner_config(TrainConfig(ppo=PPOConfig()))
    obs = TensorDict({"policy": torch.zeros(1, 48)}, batch_size=[1])
    actor_cfg = {k: v for k, v in rcfg["actor"].items() if k != "class_name"}
    actor = MLPModel(obs, rcfg["obs_groups"], "actor", 12, **actor_cfg)
    actor.obs_normalizer._mean.uniform_(-1, 1)  # non-trivial statistics must be inside the graph
    actor.obs_normalizer._std.uniform_(0.5, 2.0)
    path = tmp_path / "policy.onnx"
    err = export_policy(actor, path, {"source": "test", "real_transitions": 123})
    assert err <= 1e-5
    policy = OnnxPolicy(path)
    assert policy.metadata["real_transitions"] == 123 and policy.metadata["joint_names"] == list(
        C.JOINT_NAMES
    )
    x = np.random.default_rng(1).normal(size=(1000, 48)).astype(np.float32)
    with torch.no_grad():
        ref = actor(TensorDict({"policy": torch.from_numpy(x)}, batch_size=[1000])).numpy()
    assert np.abs(policy(x) - ref).max() <= 1e-5
    assert policy(x[:1]).shape == (1, 12)
    with pytest.raises(ValueError, match="shape"):
        policy(x[:, :36])


def test_an_exported_policy_starts_a_training_stage(tmp_path):
    """The actor rebuilt from an ONNX file acts exactly as the file does (weights and normalization)."""
    from rsl_rl.models import MLPModel

    from rwm.export.policy_onnx import load_actor_from_onnx

    rcfg = runner_config(TrainConfig(ppo=PPOConfig()))
    obs = TensorDict({"policy": torch.zeros(1, 48)}, batch_size=[1])
    actor_cfg = {k: v for k, v in rcfg["actor"].items() if k != "class_name"}
    actor = MLPModel(obs, rcfg["obs_groups"], "actor", 12, **actor_cfg)
    load_actor_from_onnx(actor, "models/anymal_d_ppo.onnx", transitions=1000)
    assert int(actor.obs_normalizer.count) == 1000
    x = np.random.default_rng(2).normal(size=(200, 48)).astype(np.float32)
    with torch.no_grad():
        ours = actor(TensorDict({"policy": torch.from_numpy(x)}, batch_size=[200])).numpy()
    assert np.abs(OnnxPolicy("models/anymal_d_ppo.onnx")(x) - ours).max() <= 1e-5
    with pytest.raises(ValueError, match="not an rwm policy"):
        load_actor_from_onnx(actor, "models/anymal_d_rwm.onnx")


def _random_policy_onnx(path):
    from rsl_rl.models import MLPModel

    rcfg = runner_config(TrainConfig())
    obs = TensorDict({"policy": torch.zeros(1, 48)}, batch_size=[1])
    actor_cfg = {k: v for k, v in rcfg["actor"].items() if k != "class_name"}
    torch.manual_seed(0)
    export_policy(MLPModel(obs, rcfg["obs_groups"], "actor", 12, **actor_cfg), path, {"source": "test"})
    return OnnxPolicy(path)


def test_collect_with_policy_records_its_actions(tmp_path):
    from rwm.cli import main
    from rwm.data.array_dataset import ArrayDataset
    from rwm.robot.policy_io import policy_observation

    policy = _random_policy_onnx(tmp_path / "p.onnx")
    out = tmp_path / "ds"
    main(
        [
            "collect",
            "--dataset",
            "--out",
            str(out),
            "--policy",
            str(tmp_path / "p.onnx"),
            "--steps",
            "30",
            "--num-envs",
            "2",
            "--episode-length",
            "0.4",
            "--no-pushes",
        ]
    )
    ds = ArrayDataset(out)
    assert ds.num_trajectories == 4
    for i in range(ds.num_trajectories):
        t = ds.trajectory(i)
        obs = policy_observation(t.state[1:-1], t.command[1:-1], t.action[:-2])
        expected = raw_to_targets(policy(obs))
        assert np.allclose(t.action[1:-1], expected, atol=1e-4), "recorded actions are the policy's"


def test_bag_with_policy_records_its_actions(tmp_path):
    from rwm.data.bag_loader import load_bag
    from rwm.data.collect import collect_bag
    from rwm.rl.policy_controller import PolicyController
    from rwm.robot.policy_io import policy_observation

    policy = _random_policy_onnx(tmp_path / "p.onnx")
    collect_bag(tmp_path / "bag", controller=PolicyController(policy, policy.obs_dim), duration_s=1.0)
    trajectories, report = load_bag(tmp_path / "bag")
    assert report.ok and trajectories
    for t in trajectories:
        obs = policy_observation(t.state[1:], t.command[1:], t.action[:-1])
        assert np.allclose(t.action[1:], raw_to_targets(policy(obs)), atol=1e-4)


def test_train_then_select_best_checkpoint(tmp_path, capsys):
    import json

    from rwm.cli import main

    log_dir = tmp_path / "ppo"
    main(["train-ppo", "--log-dir", str(log_dir), "--iterations", "2", "--num-envs", "8"])
    assert {p.name for p in log_dir.glob("model_*.pt")} == {"model_0.pt", "model_1.pt"}
    capsys.readouterr()
    out = tmp_path / "best.onnx"
    main(
        [
            "select-policy",
            "--log-dir",
            str(log_dir),
            "--episodes",
            "2",
            "--episode-length",
            "0.5",
            "--out",
            str(out),
        ]
    )
    lines = capsys.readouterr().out
    assert lines.count('"checkpoint"') == 2
    policy = OnnxPolicy(out)
    assert policy.metadata["checkpoint"] in {"model_0.pt", "model_1.pt"}
    assert policy.metadata["real_transitions"] == (int(policy.metadata["checkpoint"][6]) + 1) * 8 * 24
    selected = json.loads(lines[lines.index('{\n  "selected"') :])
    assert selected["selected"] == policy.metadata["checkpoint"]
    # A later stage starts from a checkpoint, read without unpickling code (weights_only).
    main(
        ["train-ppo", "--log-dir", str(tmp_path / "stage2"), "--iterations", "3", "--num-envs", "8"]
        + ["--init-from", str(log_dir / "model_1.pt")]
    )
    assert "resumed from" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "stage2").glob("model_*.pt")} == {"model_2.pt"}
    # A stage started from an exported policy counts that policy's real transitions in its export.
    stage = ["train-ppo", "--log-dir", str(tmp_path / "onnx"), "--iterations", "1", "--num-envs", "8"]
    main(stage + ["--init-from", "models/anymal_d_mbpo.onnx", "--export", str(tmp_path / "s.onnx")])
    prior = OnnxPolicy("models/anymal_d_mbpo.onnx").metadata["real_transitions"]
    assert OnnxPolicy(tmp_path / "s.onnx").metadata["real_transitions"] == prior + 8 * 24
    # Domain randomization: a new robot every episode, recorded in the run's configuration.
    main(
        ["train-ppo", "--log-dir", str(tmp_path / "dr"), "--iterations", "1", "--num-envs", "8"]
        + ["--domain-randomization"]
    )
    env = json.loads((tmp_path / "dr" / "train_config.json").read_text())["env"]
    assert env["randomization"]["payload_kg"] == [0.0, 20.0] and env["randomization"]["obs_noise"] == 1.0


def test_standing_drift_measures_how_far_the_base_walks():
    """At zero command the drift is the base's distance from its start; a policy told (behind the
    evaluation's back) to walk at 0.5 m/s drifts about that speed times the time."""
    policy = OnnxPolicy("models/anymal_d_ppo_nominal.onnx")

    def walking(obs):
        obs = obs.copy()
        obs[:, 9] = 0.5  # the command's vx slot (Table S4: v, w, g, command, ...)
        return policy(obs)

    cfg = PolicyEvalConfig(episodes=4, episode_length_s=4.0, seed=9, num_threads=1)
    standing = evaluate_standing(policy, 48, cfg, interval_s=1.0)
    walked = evaluate_standing(walking, 48, cfg, interval_s=1.0)
    assert standing["falls"] == walked["falls"] == 0
    assert standing["drift_m_max"] < 0.4
    assert 1.2 < walked["drift_m_median"] < 2.2
    # per second: three whole seconds (the episode's last step is not taken), walking ~0.5 m in each
    # once under way, standing far less
    assert len(standing["moved_m_median_per_interval"]) == len(walked["moved_m_median_per_interval"]) == 3
    assert all(0.3 < m < 0.8 for m in walked["moved_m_median_per_interval"][1:])
    assert max(standing["moved_m_median_per_interval"]) < 0.2


def test_through_the_control_loop_a_robot_stopped_after_walking_is_held_where_it_stands():
    """evaluate_standing(walk_s, safety): the deployed loop walks each robot, the command drops to
    zero, and once the robot is still the loop holds its stance; the bare policy keeps shuffling."""
    policy = OnnxPolicy("models/anymal_d_ppo.onnx")
    cfg = PolicyEvalConfig(episodes=3, episode_length_s=24.0, seed=4, num_threads=1)
    loops = SimulatedControlLoops(policy, policy.obs_dim, 3, SafetyConfig(soft_start_s=0.5))
    held = evaluate_standing(policy, policy.obs_dim, cfg, interval_s=5.0, walk_s=3.0, controller=loops)
    assert held["falls"] == 0 and held["walked_first_s"] == 3.0 and held["duration_s"] == 21.0
    assert loops.count_in(Mode.STAND) == 3
    moved = held["moved_m_median_per_interval"]
    assert len(moved) == 4 and moved[0] > 0.1, "the first 5 s: stopping from a walk"
    assert moved[-1] < 0.01, "held: the last 5 s, still"
    bare = evaluate_standing(policy, policy.obs_dim, cfg, interval_s=5.0, walk_s=3.0)
    assert bare["moved_m_median_per_interval"][-1] > moved[-1]


def test_the_suite_through_the_control_loop_keeps_robots_standing_on_a_slippery_floor():
    """evaluate_policy(controller): the deployed loop drives the robots. On a floor of friction 0.4 a
    loop whose soft start held the measured pose without its torque let robots sit down in 0.4 s."""
    from rwm.sim.variants import RobotVariant

    policy = OnnxPolicy("models/anymal_d_ppo.onnx")
    cfg = PolicyEvalConfig(
        episodes=6, episode_length_s=3.0, seed=4242, num_threads=1, variant=RobotVariant(ground_friction=0.4)
    )
    loops = SimulatedControlLoops(policy, policy.obs_dim, 6, SafetyConfig())
    driven = evaluate_policy(policy, policy.obs_dim, cfg, controller=loops)
    assert driven["falls"] == 0 and loops.count_in(Mode.POLICY) == 6
