"""One short MBPO-PPO iteration end to end: real collection, model refinement, PPO in imagination,
true evaluation, logs, PNG, ONNX export of the result."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

from rwm.data.array_dataset import ArrayDataset
from rwm.data.collect import collect_dataset
from rwm.export.policy_onnx import OnnxPolicy
from rwm.models.factory import build_world_model, save_checkpoint
from rwm.rl.imagination_env import ImaginationConfig
from rwm.runners.mbpo import MBPOConfig, train_mbpo
from rwm.runners.ppo import PPOConfig

MBPO_POLICY = "models/anymal_d_mbpo.onnx"


def _small_world_model(tmp_path) -> ArrayDataset:
    collect_dataset(tmp_path / "pre", steps=60, num_envs=4, controller="perturb", seed=1, num_threads=1)
    data = ArrayDataset(tmp_path / "pre")
    torch.manual_seed(0)
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(data.state, data.action)
    save_checkpoint(model, tmp_path / "wm.pt")
    return data


def _small_loop(**changes) -> MBPOConfig:
    return replace(
        MBPOConfig(
            iterations=2,
            real_envs=4,
            real_steps=20,
            wm_iterations=2,
            wm_batch=8,
            history=8,
            horizon=3,
            ppo_iterations=1,
            imagination=ImaginationConfig(num_envs=16, history=8, episode_steps=10),
            ppo=PPOConfig(num_steps_per_env=4, num_mini_batches=2),
            eval_episodes=2,
            threads=1,
        ),
        **changes,
    )


def test_one_loop_iteration_end_to_end(tmp_path):
    data = _small_world_model(tmp_path)
    cfg = _small_loop(eval_variants=("payload_15kg",))
    summary = train_mbpo(cfg, tmp_path / "wm.pt", tmp_path / "pre", tmp_path / "out", tmp_path / "mbpo.onnx")
    rows = list(csv.DictReader((tmp_path / "out" / "mbpo_log.csv").open()))
    assert len(rows) == 2 and (tmp_path / "out" / "mbpo.png").is_file()
    assert 0 <= int(rows[-1]["true_falls_payload_15kg"]) <= cfg.eval_episodes
    assert 0.0 <= float(rows[-1]["true_tracking_payload_15kg"]) <= 1.0
    assert summary["collected_transitions"] == 4 * 11 + 4 * 20, "stand-in start, then one collection"
    assert summary["real_transitions"] == len(data) + summary["collected_transitions"]
    assert np.isfinite(float(rows[-1]["imagined_reward_per_step"]))
    assert 0.0 <= float(rows[-1]["true_tracking_reward"]) <= 1.0
    policy = OnnxPolicy(tmp_path / "mbpo.onnx")
    assert (
        policy.metadata["source"] == "mbpo"
        and policy.metadata["real_transitions"] == summary["real_transitions"]
    )
    assert summary["onnx_parity_max_abs_err"] <= 1e-5
    from rwm.cli import main

    exported = ["export-policy", str(tmp_path / "out" / "policy_1.pt"), "--out", str(tmp_path / "it1.onnx")]
    assert main(exported) == 0
    obs = np.random.default_rng(0).standard_normal((5, policy.obs_dim)).astype(np.float32)
    np.testing.assert_allclose(OnnxPolicy(tmp_path / "it1.onnx")(obs), policy(obs), atol=1e-6)


def test_a_loop_started_from_a_policy_begins_as_that_policy_and_counts_its_data(tmp_path):
    """With no PPO update the exported actor is the starting policy (the critic warm-up leaves the
    actor and its normalization alone), and the policy's real transitions are counted."""
    data = _small_world_model(tmp_path)
    start = OnnxPolicy(MBPO_POLICY)
    cfg = _small_loop(iterations=1, ppo_iterations=0, critic_warmup=2)
    summary = train_mbpo(
        cfg,
        tmp_path / "wm.pt",
        tmp_path / "pre",
        tmp_path / "out",
        tmp_path / "mbpo.onnx",
        init_from=MBPO_POLICY,
    )
    assert summary["real_transitions"] == (
        start.metadata["real_transitions"] + len(data) + summary["collected_transitions"]
    )
    obs = np.random.default_rng(0).normal(0, 1, (64, 48)).astype(np.float32)
    assert np.abs(OnnxPolicy(tmp_path / "mbpo.onnx")(obs) - start(obs)).max() < 1e-4


def test_a_resumed_loop_continues_where_it_stopped(tmp_path):
    """A loop resumed after its last iteration exports the policy it had; resumed with more iterations
    it keeps its log and collected data and adds to them."""
    _small_world_model(tmp_path)
    out = tmp_path / "out"
    first = train_mbpo(_small_loop(), tmp_path / "wm.pt", tmp_path / "pre", out, tmp_path / "a.onnx")
    rows = list(csv.DictReader((out / "mbpo_log.csv").open()))
    again = train_mbpo(
        _small_loop(), tmp_path / "wm.pt", tmp_path / "pre", out, tmp_path / "b.onnx", resume=True
    )
    assert again["collected_transitions"] == first["collected_transitions"]
    obs = np.random.default_rng(0).normal(0, 1, (64, 48)).astype(np.float32)
    assert np.array_equal(OnnxPolicy(tmp_path / "a.onnx")(obs), OnnxPolicy(tmp_path / "b.onnx")(obs))
    more = train_mbpo(_small_loop(iterations=3), tmp_path / "wm.pt", tmp_path / "pre", out, resume=True)
    rows_after = list(csv.DictReader((out / "mbpo_log.csv").open()))
    assert [r["iteration"] for r in rows_after] == ["0", "1", "2"] and rows_after[:2] == rows
    assert more["collected_transitions"] == first["collected_transitions"] + 4 * 20


def test_real_robots_inside_the_ppo_rollouts_feed_the_model_in_place_of_the_collection(tmp_path):
    """With `real_ppo_envs`, the real robots run inside PPO's rollouts (no separate collection): the
    loop counts and logs exactly their transitions (the critic's warm-up too), and they reach the
    buffer every round."""
    data = _small_world_model(tmp_path)
    cfg = _small_loop(real_ppo_envs=3, ppo_iterations=3, critic_warmup=1)
    summary = train_mbpo(cfg, tmp_path / "wm.pt", tmp_path / "pre", tmp_path / "out", init_from=MBPO_POLICY)
    # the stand-in start (window 11) on those robots, the warm-up's 4 steps, then per iteration 3 PPO
    # updates x 4 steps each
    assert summary["collected_transitions"] == 3 * 11 + 3 * 4 + 2 * (3 * 3 * 4)
    prior = OnnxPolicy(MBPO_POLICY).metadata["real_transitions"]
    assert summary["real_transitions"] == prior + len(data) + summary["collected_transitions"]
    rows = list(csv.DictReader((tmp_path / "out" / "mbpo_log.csv").open()))
    assert 0.0 < float(rows[1]["collecting_tracking"]) <= 1.0
    assert rows[1]["model_error_new_data"] != "", "the model is judged on the robots' last round"


def test_the_real_gate_keeps_a_policy_only_if_its_robots_fall_no_more_and_track_as_well():
    from rwm.runners.mbpo import RealCollection, RealGate

    gate = RealGate(z=2.0, tracking_drop=0.02)
    assert gate.judge(RealCollection([], 10_000, 20, 0.80)), "the first collection is the reference"
    assert gate.judge(RealCollection([], 10_000, 29, 0.79)), "20 expected: 29 is within 2 std + 1"
    assert not gate.judge(RealCollection([], 10_000, 31, 0.80)), "31 is beyond 20 + 2 sqrt(20) + 1"
    assert not gate.judge(RealCollection([], 10_000, 5, 0.77)), "fewer falls, but tracks worse"
    assert not gate.judge(RealCollection([], 10_000, 5, float("nan"))), "a broken run is never kept"
    assert gate.falls_per_step == 20 / 10_000 and gate.tracking == 0.80, "the best kept falls and tracking"
    assert gate.judge(RealCollection([], 20_000, 10, 0.82))
    assert gate.falls_per_step == 10 / 20_000 and gate.tracking == 0.82, "the best accepted of each"
    assert not gate.judge(RealCollection([], 10_000, 29, 0.82)), "a slightly worse run cannot ratchet"


@pytest.mark.parametrize("passes", [True, False])
def test_a_gated_loop_exports_the_kept_policy_that_fell_least_on_its_real_robots(tmp_path, passes):
    """A gate every update passes keeps the update tried on the gate's robots (iteration 0's; the
    last one was never tried) and exports whichever of it and the starting policy fell less there; one
    that none passes (tracking must rise by 1) exports the starting policy; a resumed loop keeps what
    it had kept. The gate's robots are the same for every policy."""
    _small_world_model(tmp_path)
    cfg = _small_loop(
        critic_warmup=2,
        real_gate_z=2.0,
        real_gate_tracking_drop=1.0 if passes else -1.0,
        real_gate_robots=2,
        real_gate_steps=15,
    )
    out = tmp_path / "out"
    summary = train_mbpo(
        cfg, tmp_path / "wm.pt", tmp_path / "pre", out, tmp_path / "a.onnx", init_from=MBPO_POLICY
    )
    rows = list(csv.DictReader((out / "mbpo_log.csv").open()))
    assert [r["previous_update_kept"] for r in rows] == ["", str(passes)]
    assert summary["collected_transitions"] == 4 * 11 + 4 * 20 + 2 * (2 * 15), (
        "start, collection, two gate runs"
    )
    assert summary["kept_policy"]["made_by_iteration"] == (0 if passes else -1)
    made_by = summary["exported_policy"]["made_by_iteration"]
    state = torch.load(out / "loop_state.pt", weights_only=True)
    safest, kept = state["safest_runner"], state["kept_runner"]
    assert safest["made_by_iteration"] == made_by
    if passes and made_by == -1:  # iteration 0's update was kept, but fell more (or as often, tracking
        assert kept["made_by_iteration"] == 0  # no better) than the starting policy: exact figures
        assert kept["gate_falls_per_step"] > safest["gate_falls_per_step"] or (
            kept["gate_falls_per_step"] == safest["gate_falls_per_step"]
            and kept["gate_tracking"] < safest["gate_tracking"]
        )
    elif passes:  # iteration 0's update fell no more than the starting policy (its row, rounded)
        start_falls = float(rows[0]["gate_falls_per_1000_steps"])
        assert kept["made_by_iteration"] == 0
        assert 1000 * safest["gate_falls_per_step"] <= start_falls + 5e-4
    else:
        assert made_by == -1
    obs = np.random.default_rng(0).normal(0, 1, (64, 48)).astype(np.float32)
    exported = OnnxPolicy(tmp_path / "a.onnx")(obs)
    if made_by == 0:
        from rwm.cli import main

        assert main(["export-policy", str(out / "policy_0.pt"), "--out", str(tmp_path / "it0.onnx")]) == 0
        np.testing.assert_allclose(exported, OnnxPolicy(tmp_path / "it0.onnx")(obs), atol=1e-6)
    else:
        np.testing.assert_allclose(exported, OnnxPolicy(MBPO_POLICY)(obs), atol=1e-4)
    train_mbpo(cfg, tmp_path / "wm.pt", tmp_path / "pre", out, tmp_path / "b.onnx", resume=True)
    assert np.array_equal(exported, OnnxPolicy(tmp_path / "b.onnx")(obs))
    assert OnnxPolicy(tmp_path / "b.onnx").metadata["kept_iteration"] == made_by
    with pytest.raises(ValueError, match="with the real-data gate"):
        train_mbpo(_small_loop(), tmp_path / "wm.pt", tmp_path / "pre", out, resume=True)
    plain = out.parent / "plain"
    train_mbpo(_small_loop(iterations=1), tmp_path / "wm.pt", tmp_path / "pre", plain)
    with pytest.raises(ValueError, match="without the real-data gate"):
        train_mbpo(cfg, tmp_path / "wm.pt", tmp_path / "pre", plain, resume=True)


def test_a_rejected_update_goes_back_to_the_kept_policy_and_its_optimizer():
    """What is kept is a copy: later updates do not write into it, and a rejection loads it back."""
    from rwm.runners.mbpo import RealCollection, RealGate, keep_or_go_back

    class Alg:  # rsl-rl's PPO save/load on one layer and its Adam
        def __init__(self):
            self.net = torch.nn.Linear(3, 2)
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=0.1)

        def save(self):
            return {
                "actor_state_dict": self.net.state_dict(),
                "optimizer_state_dict": self.optimizer.state_dict(),
            }

        def load(self, saved, load_cfg, strict):
            self.net.load_state_dict(saved["actor_state_dict"], strict=strict)
            self.optimizer.load_state_dict(saved["optimizer_state_dict"])

        def update(self):
            self.optimizer.zero_grad()
            self.net(torch.ones(4, 3)).sum().backward()
            self.optimizer.step()

    alg, gate = Alg(), RealGate(z=2.0, tracking_drop=0.02)
    alg.update()
    kept_now, kept = keep_or_go_back(gate, RealCollection([], 10_000, 20, 0.8), alg, {}, iteration=3)
    assert kept_now and kept["made_by_iteration"] == 2
    weights = {k: v.clone() for k, v in alg.net.state_dict().items()}
    moments = alg.optimizer.state_dict()["state"][0]["exp_avg"].clone()
    for _ in range(3):
        alg.update()
    assert not torch.equal(alg.net.weight, weights["weight"])
    torch.testing.assert_close(kept["actor_state_dict"]["weight"], weights["weight"])
    kept_now, still = keep_or_go_back(gate, RealCollection([], 10_000, 60, 0.8), alg, kept, iteration=4)
    assert not kept_now and still is kept
    torch.testing.assert_close(alg.net.state_dict(), weights)
    torch.testing.assert_close(alg.optimizer.state_dict()["state"][0]["exp_avg"], moments)
    alg.update()
    torch.testing.assert_close(kept["actor_state_dict"]["weight"], weights["weight"])
    torch.testing.assert_close(kept["optimizer_state_dict"]["state"][0]["exp_avg"], moments)


def test_the_loop_exports_of_its_kept_policies_the_one_that_fell_least_on_the_gate_robots():
    """Fewer falls first, then better tracking, then the newer: a gate within noise keeps updates a
    little worse than the best, and the last of them need not be the safest."""
    from rwm.runners.mbpo import RealCollection, gate_figures, safer

    start = {"made_by_iteration": -1, **gate_figures(RealCollection([], 9600, 27, 0.66))}
    best = {"made_by_iteration": 3, **gate_figures(RealCollection([], 9600, 19, 0.68))}
    last = {"made_by_iteration": 5, **gate_figures(RealCollection([], 9600, 26, 0.66))}
    assert safer(best, start) is best and safer(last, best) is best
    same_falls = {"made_by_iteration": 6, **gate_figures(RealCollection([], 9600, 19, 0.69))}
    assert safer(same_falls, best) is same_falls
    assert safer({**best, "made_by_iteration": 7}, best)["made_by_iteration"] == 7


def test_the_gate_judges_every_policy_on_the_same_robots():
    """One policy run twice on the gate's robots falls and tracks exactly alike: a difference the
    gate sees comes from the policy, not from a new draw of the family."""
    from rwm.runners.mbpo import run_gate_robots
    from rwm.storage.replay_buffer import ReplayBuffer

    cfg = _small_loop(domain_randomization=True, real_gate_robots=3, real_gate_steps=40)
    policy = OnnxPolicy(MBPO_POLICY)
    runs = [run_gate_robots(cfg, policy, ReplayBuffer(with_robot_params=True)) for _ in range(2)]
    assert runs[0].steps == runs[1].steps == 120
    assert (runs[0].falls, runs[0].tracking) == (runs[1].falls, runs[1].tracking)
    for a, b in zip(runs[0].pieces, runs[1].pieces, strict=True):
        np.testing.assert_array_equal(a["state"], b["state"])
        np.testing.assert_array_equal(a["robot_params"], b["robot_params"])


def test_the_buffer_keeps_each_rows_robot_parameters_through_sampling_and_resume():
    from rwm.storage.replay_buffer import ReplayBuffer

    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(seed=1, with_robot_params=True)
    for i in range(3):
        states = rng.normal(size=(20, 45)).astype(np.float32)
        states[:, 0] = i
        buffer.add(states, np.zeros((20, 12)), np.zeros((20, 8)), np.full((20, 8), i))
    with pytest.raises(ValueError, match="none were given"):
        buffer.add(states, np.zeros((20, 12)), np.zeros((20, 8)))
    batch = buffer.sample(32, 5)
    assert torch.equal(batch["robot_params"][:, :, 0], batch["state"][:, :, 0]), "a row's own robot"
    again = ReplayBuffer(seed=1, with_robot_params=True)
    again.add_collected(buffer.collected_tensors())
    saved, restored = buffer.collected_tensors(), again.collected_tensors()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    plain = ReplayBuffer()
    plain.add(states, np.zeros((20, 12)), np.zeros((20, 8)))
    with pytest.raises(ValueError, match="lack"):
        ReplayBuffer(with_robot_params=True).add_collected(plain.collected_tensors())


def test_real_collection_labels_every_row_with_its_own_robot():
    """Robots reset every 0.2 s: each collected piece holds one robot's parameters, read before the
    step that may reset it, and a reset brings a new robot."""
    from rwm.runners.mbpo import collect_real
    from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig
    from rwm.sim.variants import TRAINING_RANGES
    from rwm.storage.replay_buffer import ReplayBuffer

    env = BatchedAnymalEnv(
        EnvConfig(num_envs=3, seed=5, num_threads=1, episode_length_s=0.2, randomization=TRAINING_RANGES)
    )
    drawn = [env.robot_params.copy()]
    step = env.step

    def step_and_remember(targets):
        out = step(targets)
        drawn.append(env.robot_params.copy())
        return out

    env.step = step_and_remember
    buffer = ReplayBuffer(with_robot_params=True)
    collection = collect_real(env, lambda obs: np.zeros((len(obs), 12)), 25, buffer)
    env.close()
    pieces = collection.pieces
    assert collection.steps == 75 and collection.falls == 0, "standing robots reset by time, not falls"
    assert 0.0 <= collection.tracking <= 1.0
    firsts = np.array([p["robot_params"][0] for p in pieces])
    assert len(pieces) == 9 and len(np.unique(firsts, axis=0)) == 9, "three robots each, reset every 10 steps"
    assert all((p["robot_params"] == p["robot_params"][0]).all() for p in pieces)
    for j in range(3):  # flushed at steps 10 and 20 (the resets) and at the end
        for i in range(3):
            np.testing.assert_array_equal(pieces[3 * j + i]["robot_params"][0], drawn[10 * j][i])
    assert buffer.collected_rows == 3 * 25


def test_a_loop_on_a_model_given_the_robots_parameters_runs_and_resumes(tmp_path):
    """On a family's data, with each collecting robot's parameters recorded for the model."""
    from rwm.sim.variants import TRAINING_RANGES

    collect_dataset(
        tmp_path / "pre",
        steps=60,
        num_envs=4,
        controller="perturb",
        seed=1,
        num_threads=1,
        episode_length_s=0.6,
        randomization=TRAINING_RANGES,
    )
    data = ArrayDataset(tmp_path / "pre")
    torch.manual_seed(0)
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16, "robot_param_dim": 8})
    model.normalizer.fit(data.state, data.action, data.robot_params)
    save_checkpoint(model, tmp_path / "wm.pt")
    cfg = _small_loop(domain_randomization=True)
    first = train_mbpo(cfg, tmp_path / "wm.pt", tmp_path / "pre", tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "mbpo_log.csv").open()))
    assert len(rows) == 2 and np.isfinite(float(rows[-1]["model_error_new_data"]))
    more = train_mbpo(
        replace(cfg, iterations=3), tmp_path / "wm.pt", tmp_path / "pre", tmp_path / "out", resume=True
    )
    assert more["collected_transitions"] == first["collected_transitions"] + 4 * 20
