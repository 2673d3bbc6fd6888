"""Array datasets: round trip, windows, atomic close, validation, and recording the batched environment."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from rwm.data.array_dataset import (
    ArrayDataset,
    ArrayDatasetWriter,
    BatchedRecorder,
    DatasetMeta,
    merge_datasets,
)
from rwm.data.collect import collect_dataset
from rwm.data.trajectory import Trajectory
from rwm.robot import contract as C
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig
from rwm.sim.commands import CommandConfig

LENGTHS = (5, 1, 7)


def random_trajectory(rng: np.random.Generator, n: int, t0: float) -> Trajectory:
    return Trajectory(
        time=t0 + np.arange(n) * C.POLICY_DT,
        state=rng.normal(size=(n, C.STATE_DIM)).astype(np.float32),
        action=rng.normal(size=(n, C.ACTION_DIM)).astype(np.float32),
        contacts=rng.integers(0, 2, (n, C.CONTACT_DIM)).astype(np.float32),
        command=rng.normal(size=(n, C.COMMAND_DIM)).astype(np.float32),
    )


@pytest.fixture
def trajectories() -> list[Trajectory]:
    rng = np.random.default_rng(0)
    return [random_trajectory(rng, n, 3.0 * i) for i, n in enumerate(LENGTHS)]


def write(path: Path, trajectories: list[Trajectory], meta: DatasetMeta = DatasetMeta()) -> ArrayDataset:
    with ArrayDatasetWriter(path, meta) as writer:
        for t in trajectories:
            writer.add_trajectory(t)
    return ArrayDataset(path)


def test_round_trip(tmp_path: Path, trajectories: list[Trajectory]) -> None:
    meta = DatasetMeta(seed=7, source="test", extra={"note": "x"})
    ds = write(tmp_path / "ds", trajectories, meta)
    assert len(ds) == sum(LENGTHS) and ds.num_trajectories == len(LENGTHS)
    assert ds.meta == meta
    assert ds.contacts.dtype == np.uint8 and isinstance(ds.state, np.memmap)
    for i, t in enumerate(trajectories):
        got = ds.trajectory(i)
        np.testing.assert_allclose(got.time, t.time, atol=1e-12)
        for name in ("state", "action", "contacts", "command"):
            np.testing.assert_array_equal(getattr(got, name), getattr(t, name), err_msg=name)
            assert getattr(got, name).dtype == np.float32
    assert (tmp_path / "ds" / "state.f32").stat().st_size == sum(LENGTHS) * C.STATE_DIM * 4


def test_merge_keeps_every_trajectory_in_order_and_refuses_another_rate(
    tmp_path: Path, trajectories: list[Trajectory]
) -> None:
    write(tmp_path / "a", trajectories[:2], DatasetMeta(seed=1))
    write(tmp_path / "b", trajectories[2:], DatasetMeta(seed=2))
    summary = merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "ab")
    merged = ArrayDataset(tmp_path / "ab")
    assert summary["rows"] == sum(LENGTHS) and merged.num_trajectories == len(LENGTHS)
    for i, t in enumerate(trajectories):
        got = merged.trajectory(i)
        np.testing.assert_allclose(got.time, t.time, atol=1e-12)
        for name in ("state", "action", "contacts", "command"):
            np.testing.assert_array_equal(getattr(got, name), getattr(t, name), err_msg=name)
    assert (merged.meta.robot, merged.meta.dt) == ("anymal_d", C.POLICY_DT)
    assert [s["seed"] for s in merged.meta.extra["shards"]] == [1, 2]
    slow = dataclasses.replace(trajectories[0], time=np.arange(LENGTHS[0]) * 0.04)
    write(tmp_path / "slow", [slow], DatasetMeta(dt=0.04))
    with pytest.raises(ValueError, match="one robot and rate"):
        merge_datasets([tmp_path / "a", tmp_path / "slow"], tmp_path / "bad")


def test_windows_stay_inside_trajectories(tmp_path: Path, trajectories: list[Trajectory]) -> None:
    ds = write(tmp_path / "ds", trajectories)
    for length in (1, 2, 3, 5, 7, 8):
        starts = ds.windows(length)
        assert len(starts) == sum(max(n - length + 1, 0) for n in LENGTHS)
        owner = np.searchsorted(ds.offsets, starts, side="right") - 1
        assert (starts + length <= ds.offsets[owner + 1]).all()
        assert len(np.unique(starts)) == len(starts)
    batch = ds.gather(ds.windows(3), 3)
    assert batch["state"].shape == (8, 3, C.STATE_DIM) and batch["contacts"].dtype == np.float32
    np.testing.assert_array_equal(batch["action"][-1], trajectories[2].action[-3:])
    with pytest.raises(ValueError, match="at least 1"):
        ds.windows(0)


def test_close_is_atomic(tmp_path: Path, trajectories: list[Trajectory]) -> None:
    path = tmp_path / "ds"
    writer = ArrayDatasetWriter(path)
    writer.add_trajectory(trajectories[0])
    assert not path.exists()
    writer.close()
    assert ArrayDataset(path).num_trajectories == 1
    with pytest.raises(RuntimeError), ArrayDatasetWriter(tmp_path / "aborted") as w:
        w.add_trajectory(trajectories[0])
        raise RuntimeError("collection crashed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    with pytest.raises(FileExistsError, match="already exists"):
        ArrayDatasetWriter(path)


def test_writer_rejects_bad_trajectories(tmp_path: Path, trajectories: list[Trajectory]) -> None:
    t = trajectories[0]
    with ArrayDatasetWriter(tmp_path / "ds") as writer:
        with pytest.raises(ValueError, match="NaN"):
            nan = np.full_like(t.state, np.nan)
            writer.add_trajectory(Trajectory(t.time, nan, t.action, t.contacts, t.command))
        with pytest.raises(ValueError, match="apart"):
            writer.add_trajectory(Trajectory(t.time * 3, t.state, t.action, t.contacts, t.command))
        with pytest.raises(ValueError, match="0 or 1"):
            writer.add_trajectory(Trajectory(t.time, t.state, t.action, t.contacts * 0.5, t.command))
        assert writer.num_rows == 0


def test_open_validates_layout(tmp_path: Path, trajectories: list[Trajectory]) -> None:
    path = tmp_path / "ds"
    write(path, trajectories)
    with pytest.raises(FileNotFoundError, match="not an array dataset"):
        ArrayDataset(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    meta["arrays"]["state"]["dim"] = 48
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'state'.*dim 45"):
        ArrayDataset(path)
    meta["arrays"]["state"]["dim"] = 45
    (path / "meta.json").write_text(json.dumps(meta))
    ArrayDataset(path)
    data = (path / "action.f32").read_bytes()
    (path / "action.f32").write_bytes(data[:-4])
    with pytest.raises(ValueError, match="truncated"):
        ArrayDataset(path)


def test_batched_recorder_rows_follow_the_environment(tmp_path: Path) -> None:
    n, steps = 4, 240
    env = BatchedAnymalEnv(EnvConfig(num_envs=n, episode_length_s=1.0, num_threads=1, seed=2))
    rng = np.random.default_rng(0)
    post, targets_log, final_log, done_log = [env.state.copy()], [], [], []
    with ArrayDatasetWriter(tmp_path / "ds") as writer:
        recorder = BatchedRecorder(writer, n)
        for _ in range(steps):
            targets = C.DEFAULT_JOINT_POS + rng.normal(0.0, 0.1, (n, C.ACTION_DIM))
            targets[0] = C.DEFAULT_JOINT_POS * np.tile([1.0, 3.0, 3.0], 4)  # robot 0 keeps falling
            out = recorder.step(env, targets)
            targets_log.append(targets)
            final_log.append(out.final_state.copy())
            done_log.append(out.terminated | out.truncated)
            post.append(out.state.copy())
        recorder.finish()
    env.close()
    ds = ArrayDataset(tmp_path / "ds")
    done = np.array(done_log)
    assert done[:, 0].sum() > done[:, 1].sum() >= 4  # falls end robot 0's episodes early
    open_at_the_end = int((~done[-1]).sum())  # a robot whose episode ended at the last step has none
    assert ds.num_trajectories == done.sum() + open_at_the_end
    assert len(ds) == steps * n + ds.num_trajectories
    f32 = np.float32
    for traj in ds.trajectories():
        s = round(traj.time[0] / C.POLICY_DT)
        (i,) = [i for i in range(n) if np.array_equal(traj.action[0], targets_log[s][i].astype(f32))]
        np.testing.assert_array_equal(traj.state[0], post[s][i].astype(f32))
        for t in range(len(traj) - 1):
            np.testing.assert_array_equal(traj.action[t], targets_log[s + t][i].astype(f32))
            np.testing.assert_array_equal(traj.state[t + 1], final_log[s + t][i].astype(f32))
        last = s + len(traj) - 2
        assert done[last, i] or last == steps - 1
        assert not done[s:last, i].any()


def test_collect_dataset(tmp_path: Path) -> None:
    summary = collect_dataset(
        tmp_path / "gait", steps=60, num_envs=4, controller="perturb", episode_length_s=0.5, num_threads=1
    )
    ds = ArrayDataset(tmp_path / "gait")
    assert summary["transitions"] == 240 and summary["rows"] == len(ds) == 240 + ds.num_trajectories
    assert summary["trajectories"] == ds.num_trajectories >= 4 * (60 // 25)
    assert ds.meta.source == "batched_env perturb" and ds.meta.extra["num_envs"] == 4

    def hold(obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        return state[:, C.JOINT_POS] * 0 + C.DEFAULT_JOINT_POS

    summary = collect_dataset(tmp_path / "policy", steps=20, num_envs=2, controller=hold, num_threads=1)
    ds = ArrayDataset(tmp_path / "policy")
    assert summary["trajectories"] == 2 and len(ds) == 42
    np.testing.assert_array_equal(ds.action[:], np.tile(C.DEFAULT_JOINT_POS, (42, 1)).astype(np.float32))
    assert np.abs(ds.command[:]).max() > 0.0, "commands from the training distribution by default"

    stand = CommandConfig(resample_time_s=0.2, standing_fraction=1.0)
    collect_dataset(tmp_path / "stand", steps=20, num_envs=2, controller=hold, num_threads=1, commands=stand)
    ds = ArrayDataset(tmp_path / "stand")
    assert not ds.command[:].any() and ds.meta.extra["commands"]["standing_fraction"] == 1.0


def test_collect_dataset_of_a_family_of_robots(tmp_path: Path) -> None:
    """randomization: a new robot at every reset, recorded in the dataset's metadata; the same seed
    gives the same data, and the family's data differs from the nominal robot's."""
    from rwm.sim.variants import TRAINING_RANGES

    def run(name: str, randomization) -> ArrayDataset:
        collect_dataset(
            tmp_path / name,
            steps=40,
            num_envs=3,
            controller="perturb",
            seed=4,
            episode_length_s=0.4,
            num_threads=1,
            randomization=randomization,
        )
        return ArrayDataset(tmp_path / name)

    family, again, nominal = run("a", TRAINING_RANGES), run("b", TRAINING_RANGES), run("c", None)
    assert family.meta.extra["randomization"]["payload_kg"] == list(TRAINING_RANGES.payload_kg)
    assert nominal.meta.extra["randomization"] is None
    np.testing.assert_array_equal(family.state[:], again.state[:])
    assert not np.array_equal(family.state[:], nominal.state[:])


def test_a_family_dataset_carries_each_robots_parameters(tmp_path: Path) -> None:
    """Collected with randomization, every row carries its robot's parameters: the same along a
    trajectory (a reset robot's closing row keeps its own), inside the training ranges, a new robot
    after each reset; windows and trajectories return them. A nominal dataset has none."""
    from rwm.sim.variants import ROBOT_PARAM_FIELDS, TRAINING_RANGES

    collect_dataset(
        tmp_path / "family",
        steps=30,
        num_envs=3,
        controller="perturb",
        seed=2,
        episode_length_s=0.2,
        num_threads=1,
        randomization=TRAINING_RANGES,
    )
    ds = ArrayDataset(tmp_path / "family")
    assert ds.robot_params is not None and ds.robot_params.shape == (len(ds), len(ROBOT_PARAM_FIELDS))
    robot_params = np.array([t.robot_params[0] for t in ds.trajectories()])
    for t in ds.trajectories():
        assert (t.robot_params == t.robot_params[0]).all(), "one trajectory is one robot"
    assert len(np.unique(robot_params, axis=0)) == ds.num_trajectories == 3 * 3, "a new robot at every reset"
    payload, friction, delay = robot_params[:, 0], robot_params[:, 3], robot_params[:, 7]
    assert (
        (payload >= 0).all() and (payload <= 20).all() and (friction >= 0.3).all() and (friction <= 1.2).all()
    )
    assert (delay == np.round(delay)).all() and (delay <= C.DECIMATION).all()
    batch = ds.gather(ds.windows(4)[:5], 4)
    assert batch["robot_params"].shape == (5, 4, len(ROBOT_PARAM_FIELDS))
    np.testing.assert_array_equal(batch["robot_params"][0, 0], robot_params[0])

    collect_dataset(tmp_path / "nominal", steps=5, num_envs=2, controller="perturb", num_threads=1)
    assert ArrayDataset(tmp_path / "nominal").robot_params is None


def test_a_dataset_of_one_named_variant_carries_its_parameters(tmp_path: Path) -> None:
    """Every robot of a named variant's dataset is that variant, recorded with its parameters (the
    robots a world model of the family is checked on); a variant and a family together are refused."""
    from rwm.sim.variants import TRAINING_RANGES, variant_named

    variant = variant_named("payload_15kg")
    kw = {"steps": 12, "num_envs": 2, "controller": "perturb", "seed": 3, "num_threads": 1}
    summary = collect_dataset(tmp_path / "payload", episode_length_s=0.1, variant=variant, **kw)
    ds = ArrayDataset(tmp_path / "payload")
    assert ds.num_trajectories == summary["trajectories"] > 2, "robots reset, and stay the variant"
    np.testing.assert_array_equal(ds.robot_params, np.tile(variant.robot_params(), (len(ds), 1)))
    assert ds.meta.extra["variant"]["payload_kg"] == 15.0
    with pytest.raises(ValueError, match="not both"):
        collect_dataset(tmp_path / "both", variant=variant, randomization=TRAINING_RANGES, **kw)


def test_robot_parameters_must_match_the_dataset_and_merges_only_with_its_kind(
    tmp_path: Path, trajectories: list[Trajectory]
) -> None:
    with_params = [
        dataclasses.replace(t, robot_params=np.full((len(t), 8), i, np.float32))
        for i, t in enumerate(trajectories)
    ]
    with ArrayDatasetWriter(tmp_path / "params", with_robot_params=True) as writer:
        with pytest.raises(ValueError, match="has none"):
            writer.add_trajectory(trajectories[0])
        for t in with_params:
            writer.add_trajectory(t)
    with ArrayDatasetWriter(tmp_path / "plain") as writer, pytest.raises(ValueError, match="stores none"):
        writer.add_trajectory(with_params[0])
    with pytest.raises(ValueError, match="same on every row"):
        varying = with_params[0].robot_params.copy()
        varying[-1] += 1
        dataclasses.replace(with_params[0], robot_params=varying)
    write(tmp_path / "plain2", trajectories)
    merge_datasets([tmp_path / "params", tmp_path / "params"], tmp_path / "both")
    merged = ArrayDataset(tmp_path / "both")
    np.testing.assert_array_equal(merged.trajectory(4).robot_params, with_params[1].robot_params)
    with pytest.raises(ValueError, match="do not merge"):
        merge_datasets([tmp_path / "params", tmp_path / "plain2"], tmp_path / "mixed")
