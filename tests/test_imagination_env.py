"""The imagination environment: shapes, resets from real histories, reward parity with the simulator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from rwm.data.array_dataset import ArrayDataset, ArrayDatasetWriter
from rwm.data.trajectory import Trajectory
from rwm.models.factory import build_world_model
from rwm.rl.imagination_env import ImaginationConfig, ImaginationEnv
from rwm.robot import contract as C
from rwm.robot.frames import gravity_z_at_tilt
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig
from rwm.sim.reward import reward_terms, total_reward
from rwm.storage.replay_buffer import ReplayBuffer, windows_before_falls


def _replay(steps=60, n=4, seed=0):
    env = BatchedAnymalEnv(EnvConfig(num_envs=n, seed=seed, num_threads=1))
    rng = np.random.default_rng(seed)
    states, actions, rewards, contacts, commands, prev = [], [], [], [], [], []
    for _ in range(steps):
        s = env.state.copy()
        a = C.DEFAULT_JOINT_POS + rng.normal(0, 0.05, (n, 12))
        prev.append(env.action.copy())
        commands.append(env.command.copy())
        out = env.step(a)
        states.append(s)
        actions.append(a)
        rewards.append(out.reward.copy())
        contacts.append(out.final_contacts.copy())
    env.close()
    return [np.stack(x, 1) for x in (states, actions, rewards, contacts, commands, prev)]


def _buffer(states, actions, contacts, seed=0) -> ReplayBuffer:
    """A replay buffer holding each recorded robot's trajectory as collected data."""
    buffer = ReplayBuffer(seed=seed)
    for i in range(len(states)):
        buffer.add(states[i], actions[i], contacts[i])
    return buffer


def test_shapes_resets_and_timeouts():
    states, actions, _, contacts, _, _ = _replay()
    flat_s, flat_a = states.reshape(-1, 45), actions.reshape(-1, 12)
    buffer = _buffer(states, actions, contacts)
    assert buffer.rows == buffer.collected_rows == 240
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(flat_s, flat_a)
    # An untrained model predicts knee contacts at random: no falls here, this checks the time-outs.
    cfg = ImaginationConfig(num_envs=6, history=8, episode_steps=5, knee_contact_terminates=False)
    env = ImaginationEnv(model, buffer, cfg)
    obs = env.get_observations()["policy"]
    assert obs.shape == (6, 48)
    gap = np.abs(env.state.numpy()[:, None, :] - flat_s[None]).max(-1).min(1)
    assert (gap < 1e-4).all(), "starts from real states"
    assert (env.command[:, 0].abs() <= 1).all() and (env.command[:, 1].abs() <= 0.5).all()
    for _ in range(5):
        o, r, d, extras = env.step(torch.zeros(6, 12))
        assert o["policy"].shape == (6, 48) and r.shape == (6,) and torch.isfinite(r).all()
    assert extras["time_outs"].all() or d.all(), "every rollout ends after episode_steps"
    assert (env.episode_length_buf == 0).all()


def test_reward_on_real_transitions_matches_the_simulator():
    """The reward imagination applies to a predicted transition is the simulator's, on real transitions."""
    states, actions, rewards, contacts, commands, prev = _replay(steps=30)
    i, t = 1, 10
    air = torch.zeros(1, 4)
    # replay the air-time carry of robot i up to step t with the same function
    for k in range(t + 1):
        terms, air_next = reward_terms(
            torch.from_numpy(states[i : i + 1, k]),
            torch.from_numpy(states[i : i + 1, k + 1]),
            torch.from_numpy(actions[i : i + 1, k]),
            torch.from_numpy(prev[i : i + 1, k]),
            torch.from_numpy(commands[i : i + 1, k]),
            torch.from_numpy(contacts[i : i + 1, k]),
            air,
        )
        if k < t:
            air = air_next
    r = total_reward(terms)
    assert np.isclose(float(r[0]), rewards[i, t], rtol=1e-6, atol=1e-9)


def test_a_predicted_knee_contact_ends_the_episode_with_the_penalty() -> None:
    """Falls the state cannot show (no base height) are read off knee contacts the model is sure of."""
    states, actions, _, contacts, _, _ = _replay()
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12))
    step = model.step_members

    def knee_down(state, action, hidden, params_n):
        means, stds, logits, hidden = step(state, action, hidden, params_n)
        logits = logits.clone()
        logits[:, C.KNEE_CONTACTS] = -30.0
        logits[0, 0] = 30.0  # robot 0: left-front knee surely on the ground
        logits[1, 0] = -1.4  # robot 1: a 20 % chance only, not a fall
        return means, stds * 0.0, logits, hidden

    model.step_members = knee_down

    def first_step(penalty: float):
        buffer = _buffer(states, actions, contacts)  # the same start windows for both runs
        cfg = ImaginationConfig(  # no tilt falls (gravity z never exceeds 1): knees alone decide
            num_envs=3, history=8, episode_steps=50, termination_penalty=penalty, max_tilt_gravity_z=2.0
        )
        env = ImaginationEnv(model, buffer, cfg)
        start = env.state.clone()
        _, r, done, extras = env.step(torch.zeros(3, 12))
        return start, r, done, extras

    start, r, done, extras = first_step(2.0)
    start_ref, r_ref, done_ref, _ = first_step(0.0)
    assert torch.equal(start, start_ref)
    assert done[0] == 1 and not extras["time_outs"][0], "robot 0 fell: terminated, not timed out"
    assert done[1:].tolist() == [0, 0], "an unsure knee contact (robot 1) or none (robot 2) is no fall"
    assert torch.equal(done, done_ref)
    assert float(r[0]) == pytest.approx(float(r_ref[0]) - 2.0, abs=1e-5), "the penalty on the fall"
    assert torch.allclose(r[1:], r_ref[1:]), "no penalty without a fall"


def test_imagined_policy_is_compared_with_standing_from_the_same_starts() -> None:
    from rwm.evaluation.imagined_policy import compare_with_standing, imagined_rollout

    states, actions, _, contacts, _, _ = _replay()
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12))

    def buffer() -> ReplayBuffer:
        return _buffer(states, actions, contacts)

    cfg = ImaginationConfig(num_envs=5, history=8, knee_contact_terminates=False, max_tilt_gravity_z=2.0)
    stand = lambda o: np.zeros((len(o), 12), np.float32)  # noqa: E731
    kick = lambda o: np.full((len(o), 12), 2.0, np.float32)  # noqa: E731
    out = compare_with_standing(model, buffer, stand, cfg, steps=6)
    assert out["policy"] == out["standing"], "standing as the policy: identical starts and draws"
    assert out["policy"]["falls"] == 0 and out["policy"]["robots"] == 5
    torch.manual_seed(cfg.seed)
    kicked = imagined_rollout(model, buffer(), kick, cfg, steps=6)
    assert kicked["reward_per_step"] != out["standing"]["reward_per_step"]


def test_commands_change_within_a_rollout_every_resample_steps() -> None:
    """Mid-rollout switches meet the robot in the policy's own imagined gait, as deployment does."""
    states, actions, _, contacts, _, _ = _replay()
    buffer = _buffer(states, actions, contacts)
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12))
    cfg = ImaginationConfig(
        num_envs=8,
        history=8,
        episode_steps=50,
        command_resample_steps=3,
        knee_contact_terminates=False,
        max_tilt_gravity_z=2.0,  # no falls: only the schedule changes commands here
    )
    env = ImaginationEnv(model, buffer, cfg)
    first = env.command.clone()
    for step in range(1, 7):
        env.step(torch.zeros(8, 12))
        changed = (env.command != first).any(-1)
        assert changed.all() if step % 3 == 0 else not changed.any(), f"step {step}"
        first = env.command.clone()
    assert (env.episode_length_buf == 6).all(), "a new command is not a new episode"


def test_fall_tilt_statistics_separate_falls_from_walking(tmp_path) -> None:
    """A trajectory that stops before its time limit and the collection's end is a fall."""
    from rwm.data.array_dataset import ArrayDataset, ArrayDatasetWriter, DatasetMeta
    from rwm.data.trajectory import Trajectory
    from rwm.evaluation.fall_tilt import fall_tilt_statistics

    def traj(start_s: float, tilts_deg: list[float]) -> Trajectory:
        n = len(tilts_deg)
        state = np.zeros((n, C.STATE_DIM), np.float32)
        state[:, 8] = -np.cos(np.radians(tilts_deg))
        return Trajectory(
            time=start_s + 0.02 * np.arange(n),
            state=state,
            action=np.zeros((n, 12), np.float32),
            contacts=np.zeros((n, 8), np.float32),
            command=np.zeros((n, 3), np.float32),
        )

    meta = DatasetMeta(extra={"steps": 10, "episode_length_s": 0.1})
    with ArrayDatasetWriter(tmp_path / "d", meta) as w:
        w.add_trajectory(traj(0.0, [2, 3, 2, 4, 3]))  # time limit (5 rows = 0.1 s): walking
        w.add_trajectory(traj(0.1, [2, 5, 12, 24]))  # stopped at 0.18 s, before both limits: a fall
        knee = traj(0.14, [3, 2, 30])  # cut by the collection's end (0.2 s): no fall
        knee.contacts[1, C.KNEE_CONTACTS.start] = 1.0  # one walking step of 8 with a knee down
        w.add_trajectory(knee)
    stats = fall_tilt_statistics(ArrayDataset(tmp_path / "d"), thresholds_deg=(20.0, 25.0))
    assert stats["falls"] == 1 and stats["walking_steps"] == 8
    assert stats["walking_steps_with_knee_contact"] == 0.125
    assert stats["thresholds"]["20"] == {
        "falls_caught": 1.0,
        "walking_steps_flagged": 0.125,
        "gravity_z": -0.9397,
    }
    assert stats["thresholds"]["25"]["falls_caught"] == 0.0


def test_sensor_noise_acts_on_the_observation_only_within_the_simulators_widths():
    """obs_noise: the policy sees the imagined state through the simulator's sensor noise (uniform, per
    channel, none on the command and the last action); the state the model steps on stays exact."""
    from rwm.sim.variants import OBS_NOISE_STD

    states, actions, _, contacts, _, _ = _replay(steps=30, n=2)

    def buffer():
        return _buffer(states, actions, contacts)

    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12))
    envs = [
        ImaginationEnv(model, buffer(), ImaginationConfig(num_envs=64, history=8, seed=1, obs_noise=noise))
        for noise in (0.0, 1.0)
    ]
    assert torch.equal(envs[0].state, envs[1].state)
    exact = envs[0].get_observations()["policy"]
    diff = (envs[1].get_observations()["policy"] - exact).abs()
    width = torch.from_numpy(OBS_NOISE_STD).float()
    assert (diff <= width + 1e-6).all(), "within the widths"
    noisy = width > 0
    assert (diff[:, ~noisy] == 0).all(), "command and last action exact"
    assert (diff.amax(0)[noisy] > 0.8 * width[noisy]).all(), "every noisy channel spans its width"
    first = envs[1].get_observations()["policy"]
    assert not torch.equal(first, envs[1].get_observations()["policy"]), "drawn anew at every look"


def test_imagined_robots_start_only_from_upright_histories_when_asked() -> None:
    """`start_max_tilt_deg` keeps histories whose base stays within the tilt at every step; a buffer
    with none is a clear error, not an endless resampling."""
    states, actions, _, contacts, _, _ = _replay(steps=40, n=4)
    tilted = states.copy()
    tilted[:2, :, C.GRAVITY] = [0.0, -np.sin(np.radians(30)), -np.cos(np.radians(30))]  # 30 deg, robots 0-1
    buffer = _buffer(tilted, actions, contacts, seed=3)
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12))
    cfg = ImaginationConfig(num_envs=16, history=8, knee_contact_terminates=False, start_max_tilt_deg=10.0)
    env = ImaginationEnv(model, buffer, cfg)
    assert (env.state[:, C.GRAVITY_Z] < -np.cos(np.radians(10.0))).all(), "every start is upright"
    anywhere = ImaginationEnv(model, buffer, replace(cfg, start_max_tilt_deg=0.0))
    assert (anywhere.state[:, C.GRAVITY_Z] > -0.9).any(), "without the bound, tilted histories are drawn"
    only_tilted = ReplayBuffer(seed=3)
    only_tilted.add(tilted[0], actions[0], contacts[0])
    with pytest.raises(ValueError, match="within 10 deg of upright"):
        ImaginationEnv(model, only_tilted, cfg)


def test_windows_before_falls_are_those_the_robot_fell_after() -> None:
    """A window counts when, within the lookahead after it and in its own trajectory, the robot tilts past
    the fall tilt; with an upright bound, the window itself must not tilt."""
    gz = np.full(40, -1.0)
    gz[15:20] = -0.5  # trajectory 0 (rows 0-19) falls at its row 15; trajectory 1 (rows 20-39) walks
    offsets = np.array([0, 20, 40])
    anywhere = windows_before_falls(gz, offsets, length=4, lookahead=3, fallen_gravity_z=-0.8)
    assert anywhere.tolist() == list(range(9, 16)), "ends 13-19: the fall lies in the 3 rows after"
    upright = windows_before_falls(gz, offsets, 4, 3, -0.8, upright_gravity_z=-0.9)
    assert upright.tolist() == [9, 10, 11], "and, upright, they end before the fall"
    gz[20:] = gz[:20]
    assert windows_before_falls(gz, offsets, 4, 3, -0.8, -0.9).tolist() == [9, 10, 11, 29, 30, 31]
    assert len(windows_before_falls(gz, offsets, 4, 3, fallen_gravity_z=-0.4)) == 0


def test_imagined_robots_start_before_real_falls_when_asked(tmp_path) -> None:
    """With `fall_start_fraction` 1, every imagined robot starts from the last upright history before a
    robot of the data tilted past the fall tilt, from collected and pretraining data alike, in the
    buffer's mix; with no fall in the data, robots start from any history."""
    states, actions, _, contacts, _, _ = _replay(steps=40, n=4)
    fell = states.copy()
    fell[0, 30:, C.GRAVITY] = [0.0, -np.sin(np.radians(30)), -np.cos(np.radians(30))]  # robot 0 falls
    fell[1, 25:, C.GRAVITY] = [0.0, -np.sin(np.radians(40)), -np.cos(np.radians(40))]  # robot 1 too
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12))
    cfg = ImaginationConfig(
        num_envs=32,
        history=8,
        knee_contact_terminates=False,
        max_tilt_gravity_z=gravity_z_at_tilt(20.0),
        start_max_tilt_deg=10.0,
        fall_start_fraction=1.0,
        fall_start_lookahead=5,
    )
    # robot 0 collected, robot 1 the pretraining dataset, robots 2-3 walking in both
    with ArrayDatasetWriter(tmp_path / "pretrain") as writer:
        t, command = np.arange(40) * C.POLICY_DT, np.zeros((40, 3), np.float32)
        for i in (1, 2):
            writer.add_trajectory(Trajectory(t, fell[i], actions[i], contacts[i], command))
    buffer = ReplayBuffer(ArrayDataset(tmp_path / "pretrain"), seed=5)
    for i in (0, 3):
        buffer.add(fell[i], actions[i], contacts[i])
    env = ImaginationEnv(model, buffer, replace(cfg, online_fraction=0.5))
    assert env.fall_starts == 32
    last = env.state.numpy()
    before_0 = fell[0, 24:30]  # histories of 8 ending 1-5 steps before row 30, all upright
    before_1 = fell[1, 19:25]
    from_0 = (np.abs(last[:, None] - before_0[None]).max(-1).min(1) < 1e-5).sum()
    from_1 = (np.abs(last[:, None] - before_1[None]).max(-1).min(1) < 1e-5).sum()
    assert from_0 + from_1 == 32 and from_0 == 16, "half from collected data, half from pretraining data"
    walking = _buffer(states, actions, contacts, seed=5)
    env = ImaginationEnv(model, walking, cfg)
    assert env.fall_starts == 0, "no fall in the data: every robot starts from any history"


def test_each_imagined_robot_steps_on_its_own_member_when_asked() -> None:
    """With `member_per_robot`, a robot's next state is the mean of the member drawn at its reset, not
    the members' mean."""
    states, actions, _, contacts, _, _ = _replay()
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16, "ensemble_size": 3})
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12))
    step = model.step_members

    def members_apart(state, action, hidden, params_n):
        means, stds, logits, hidden = step(state, action, hidden, params_n)
        offsets = torch.tensor([-0.3, 0.0, 0.6])[:, None, None]  # member k: its own step, in std units
        return state[None] + offsets, stds * 0.0, logits, hidden

    model.step_members = members_apart

    def first_move(member_per_robot: bool):
        buffer = _buffer(states, actions, contacts)
        cfg = ImaginationConfig(
            num_envs=12,
            history=8,
            episode_steps=50,
            max_tilt_gravity_z=2.0,
            knee_contact_terminates=False,
            member_per_robot=member_per_robot,
            sample_temperature=0.0,
        )
        env = ImaginationEnv(model, buffer, cfg)
        start = model.normalizer.state(env.state.clone())
        members = env.member.clone()
        env.step(torch.zeros(12, 12))
        moved = model.normalizer.state(env.state) - start
        env.step(torch.zeros(12, 12))
        assert torch.equal(env.member, members), "a robot keeps its member until it is reset"
        return moved.mean(-1), members

    moved, members = first_move(True)
    assert set(members.tolist()) == {0, 1, 2}, "every member drives some robots"
    expected = torch.tensor([-0.3, 0.0, 0.6])[members]
    assert torch.allclose(moved, expected, atol=1e-4)
    mean_moved, _ = first_move(False)
    assert torch.allclose(mean_moved, torch.full((12,), 0.1), atol=1e-4), "off: the members' mean"


def test_an_ensemble_of_rwms_trained_apart_imagines_with_its_disagreement() -> None:
    """Each member reads the starting history with its own GRU; the penalty is their disagreement."""
    from rwm.models.ensemble import RWMEnsemble, RWMEnsembleConfig
    from rwm.models.rwm import RWMConfig

    states, actions, _, contacts, _, _ = _replay()
    torch.manual_seed(0)
    model = RWMEnsemble(RWMEnsembleConfig(members=3, member=RWMConfig(hidden_size=32, head_hidden=16)))
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12))
    cfg = ImaginationConfig(
        num_envs=6, history=8, episode_steps=20, knee_contact_terminates=False, member_per_robot=True
    )
    plain = ImaginationEnv(model, _buffer(states, actions, contacts), cfg)
    penalized = ImaginationEnv(
        model, _buffer(states, actions, contacts), replace(cfg, uncertainty_penalty=5.0)
    )
    assert plain.hidden.shape == (2, 6, 96) and len(set(plain.member.tolist())) > 1
    _, r_plain, _, extras = plain.step(torch.zeros(6, 12))
    _, r_penalized, _, _ = penalized.step(torch.zeros(6, 12))
    assert extras["log"]["/imagined/uncertainty"] > 0, "untrained members disagree"
    assert (r_penalized < r_plain).all(), "the disagreement lowers every robot's reward"


def test_each_imagined_robot_is_told_the_parameters_of_the_robot_it_started_from() -> None:
    """For a model given the robots' parameters, an imagined robot steps with those of the real robot
    whose history it read (upright starts drawn by rejection included) and keeps them until its
    reset, which gives it the next history's; a buffer without them is refused."""
    states, actions, _, contacts, _, _ = _replay(n=4)
    n, steps = states.shape[:2]
    params = np.stack([np.full((steps, 8), 1.0 + i, np.float32) for i in range(n)])
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16, "robot_param_dim": 8})
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12), params.reshape(-1, 8))
    buffer = ReplayBuffer(with_robot_params=True)
    for i in range(n):
        buffer.add(states[i], actions[i], contacts[i], params[i])
    cfg = ImaginationConfig(
        num_envs=16,
        history=8,
        episode_steps=50,
        max_tilt_gravity_z=2.0,
        knee_contact_terminates=False,
        start_max_tilt_deg=30.0,
    )
    env = ImaginationEnv(model, buffer, cfg)
    stored = states.astype(np.float32)

    def told(last_states: torch.Tensor) -> torch.Tensor:
        """The normalized parameters of the trajectories these start states were read from."""
        source = [int(np.flatnonzero((stored == s.numpy()).all(-1).any(-1))[0]) for s in last_states]
        return model.normalizer.robot_params(torch.from_numpy(params[source, 0]))

    assert torch.allclose(env.params_n, told(env.state)) and len(env.params_n.unique(dim=0)) > 1
    before = env.params_n.clone()
    env.episode_length_buf[:8] = cfg.episode_steps - 1  # these eight time out on the next step
    env.step(torch.zeros(16, 12))
    assert torch.equal(env.params_n[8:], before[8:]), "the others keep theirs"
    assert torch.allclose(env.params_n[:8], told(env.state[:8])), "a reset robot gets its new history's"
    with pytest.raises(ValueError, match="keeps none"):
        ImaginationEnv(model, _buffer(states, actions, contacts), cfg)


def test_real_robots_beside_imagined_ones_get_their_own_actions_and_record_them():
    """MBPO's real ratio: one rollout of imagined robots and real ones; the real robots act on the
    actions after the imagined robots', every transition of theirs is recorded with its robot and
    reaches the buffer at the round's end, and the episode counters split as the robots do."""
    from rwm.rl.mixed_env import ImaginedAndRealEnv
    from rwm.rl.vec_env import AnymalVecEnv
    from rwm.robot.policy_io import raw_to_targets
    from rwm.storage.replay_buffer import TrajectoryRecorder

    states, actions, _, contacts, _, _ = _replay()
    buffer = _buffer(states, actions, contacts)
    model = build_world_model("rwm", {"hidden_size": 32, "head_hidden": 16})
    model.normalizer.fit(states.reshape(-1, 45), actions.reshape(-1, 12))
    cfg = ImaginationConfig(num_envs=5, history=8, episode_steps=50, knee_contact_terminates=False)
    imagined = ImaginationEnv(model, buffer, cfg)
    robots = BatchedAnymalEnv(EnvConfig(num_envs=3, seed=2, num_threads=1))
    real = AnymalVecEnv(robots.cfg, robots, TrajectoryRecorder(buffer, 3))
    env = ImaginedAndRealEnv(imagined, real)
    assert env.num_envs == 8 and env.get_observations()["policy"].shape == (8, 48)
    env.episode_length_buf = torch.arange(8)
    assert imagined.episode_length_buf.tolist() == [0, 1, 2, 3, 4]
    assert robots.episode_step.tolist() == [5, 6, 7]
    rows_before = buffer.collected_rows
    rng = np.random.default_rng(0)
    sent = []
    for _ in range(4):
        u = torch.as_tensor(rng.normal(0, 0.3, (8, 12)), dtype=torch.float32)
        sent.append(u[5:].numpy().astype(np.float64))
        obs, reward, done, extras = env.step(u)
        assert obs["policy"].shape == (8, 48) and reward.shape == done.shape == (8,)
        assert extras["time_outs"].shape == (8,) and "/real/episode/falls_per_step" in extras["log"]
    assert (done[5:] == 0).all(), "no real robot fell or timed out in 4 steps"
    assert buffer.collected_rows == rows_before, "a running episode reaches the buffer at the round's end"
    real.recorder.flush_all()
    pieces = real.recorder.pop_pieces()
    assert buffer.collected_rows == rows_before + 12 and len(pieces) == 3
    for i, piece in enumerate(pieces):
        expected = np.stack([raw_to_targets(u)[i] for u in sent])
        np.testing.assert_allclose(piece["action"], expected, atol=1e-6)
    steps, falls, tracking = real.pop_figures()
    assert steps == 12 and 0 <= falls <= 12 and 0.0 <= tracking <= 1.0
    assert real.pop_figures() == (0, 0, 0.0)
    env.close()
