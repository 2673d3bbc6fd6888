"""rosbag2 on the contract topics: writer, loader, malformed bags and simulated collection."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.typesys import get_typestore

from rwm.data.bag_loader import load_bag, load_bags
from rwm.data.bag_writer import TYPESTORE, BagWriter, RobotSample
from rwm.data.collect import collect_bag
from rwm.data.trajectory import Trajectory
from rwm.robot import contract as C
from rwm.sim.anymal_sim import AnymalSim
from rwm.sim.controllers import GaitController

STEP_NS = round(C.PHYSICS_DT * 1e9)
COMMANDS = 60


@dataclass
class Recording:
    """A simulated run: 400 Hz samples, 50 Hz commands, and the ground truth at each command."""

    samples: list[RobotSample]
    """Sample j is at j * 2.5 ms; command k is issued with sample 8k."""
    targets: np.ndarray
    truth_state: np.ndarray
    truth_contacts: np.ndarray
    cmd: np.ndarray


@pytest.fixture(scope="module")
def recording() -> Recording:
    sim = AnymalSim()
    ctrl = GaitController()
    ctrl.reset(np.random.default_rng(1))
    samples, targets, states, contacts = [RobotSample.from_sim(sim)], [], [], []
    for _ in range(COMMANDS):
        states.append(sim.state())
        contacts.append(sim.contacts.copy())
        targets.append(ctrl(sim.time, sim.state()))
        sim.set_targets(targets[-1])
        for _ in range(C.DECIMATION):
            sim.step()
            samples.append(RobotSample.from_sim(sim))
    cmd = np.array([0.4, -0.1, 0.3])
    return Recording(samples, np.array(targets), np.array(states), np.array(contacts), cmd)


def write_bag(
    path: Path,
    rec: Recording,
    storage: str = "mcap",
    joint_order: tuple[str, ...] = C.JOINT_NAMES,
    skip: tuple[str, ...] = (),
    nan_sample: int | None = None,
    gap_after: int | None = None,
    extra_joint: bool = False,
    unstamped_commands: bool = False,
    state_names: tuple[str, ...] | None = None,
    stalled_contacts: bool = False,
    odom_angular: float | None = None,
    reset_after: tuple[int, str] | None = None,
) -> Path:
    """Write `rec` as a bag, optionally leaving out topics, poisoning a sample or skipping 0.1 s of stamps.

    `stalled_contacts`: contacts are logged 0.2 ms after their step, except that every third pair of
    command periods the recorder stalls and logs their 16 contacts at once at the end of it.
    `odom_angular`: the odometry's angular twist is this constant (an estimator's, not the gyro's).
    `reset_after` (command k, "joints" or "base"): after command k the robot is set elsewhere, as the
    simulation node resets a fallen robot with no gap in the streams: its legs 1 rad further, or its
    base turned on its side."""

    def stamp(sample: int) -> int:
        late = gap_after is not None and sample > gap_after * C.DECIMATION
        return sample * STEP_NS + (100_000_000 if late else 0)

    def contacts_logged(sample: int) -> int:
        if not stalled_contacts:
            return stamp(sample)
        stall, i = divmod(sample, 2 * C.DECIMATION)
        if stall % 3 == 1:
            return stamp((stall + 1) * 2 * C.DECIMATION) + 100_000 + 1000 * i
        return stamp(sample) + 200_000

    with BagWriter(path, storage, joint_order=joint_order) as bag:
        bag.write_cmd_vel(0, rec.cmd)
        for j, sample in enumerate(rec.samples):
            if j == nan_sample:
                sample = replace(sample, joint_pos=np.where(np.arange(12) == 3, np.nan, sample.joint_pos))
            if reset_after is not None and j > reset_after[0] * C.DECIMATION:
                if reset_after[1] == "joints":
                    sample = replace(sample, joint_pos=sample.joint_pos + 1.0)
                else:  # (w, x, y, z): a quarter turn about the base's x axis, then the recorded attitude
                    w, x, y, z = sample.base_orientation
                    c = np.sqrt(0.5)
                    sample = replace(
                        sample,
                        base_orientation=np.array([c * (w - x), c * (x + w), c * (y - z), c * (z + y)]),
                    )
            if extra_joint:
                bag.write_joint_states(
                    stamp(j),
                    np.append(sample.joint_pos, 0.1),
                    np.append(sample.joint_vel, 0.0),
                    np.append(sample.joint_effort, 0.0),
                    (*C.JOINT_NAMES, "ARM_J1"),
                )
            elif C.TOPIC_JOINT_STATES not in skip:
                o = [C.JOINT_NAMES.index(n) for n in joint_order]
                bag.write_joint_states(
                    stamp(j),
                    sample.joint_pos[o],
                    sample.joint_vel[o],
                    sample.joint_effort[o],
                    state_names or joint_order,
                )
            if C.TOPIC_IMU not in skip:
                bag.write_imu(stamp(j), sample.base_orientation, sample.base_ang_vel, sample.imu_lin_acc)
            if C.TOPIC_ODOM not in skip:
                bag.write_odom(
                    stamp(j),
                    sample.base_position,
                    sample.base_orientation,
                    sample.base_lin_vel,
                    sample.base_ang_vel if odom_angular is None else np.full(3, odom_angular),
                )
            if C.TOPIC_CONTACTS not in skip:
                bag.write_contacts(contacts_logged(j), sample.contacts)
            if j % C.DECIMATION == 0 and j // C.DECIMATION < COMMANDS:
                targets = rec.targets[j // C.DECIMATION]
                if unstamped_commands:
                    bag.write(C.TOPIC_JOINT_COMMAND, unstamped_joint_command(bag, targets), stamp(j))
                else:
                    bag.write_joint_command(stamp(j), targets)
    return path


def unstamped_joint_command(bag: BagWriter, targets: np.ndarray) -> object:
    """A JointState whose header stamp was never set, as some publishers send."""
    t = bag.typestore.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="")
    return t["sensor_msgs/msg/JointState"](
        header=header, name=list(C.JOINT_NAMES), position=targets, velocity=np.zeros(0), effort=np.zeros(0)
    )


def assert_same(a: list[Trajectory], b: list[Trajectory]) -> None:
    assert [len(t) for t in a] == [len(t) for t in b]
    for x, y in zip(a, b, strict=True):
        for name in ("time", "state", "action", "contacts", "command"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_matches_simulation(tmp_path: Path, recording: Recording, storage: str) -> None:
    trajs, report = load_bag(write_bag(tmp_path / "bag", recording, storage))
    assert report.ok and not report.errors, str(report)
    assert report.trajectories == 1 and report.rows == COMMANDS
    (t,) = trajs
    np.testing.assert_allclose(t.time, np.arange(COMMANDS) * C.POLICY_DT, atol=1e-12)
    np.testing.assert_allclose(t.state, recording.truth_state, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(t.action, recording.targets.astype(np.float32))
    np.testing.assert_array_equal(t.contacts, recording.truth_contacts.astype(np.float32))
    np.testing.assert_array_equal(t.command, np.tile(recording.cmd, (COMMANDS, 1)).astype(np.float32))
    assert report.messages[C.TOPIC_JOINT_STATES] == len(recording.samples)


def test_storage_files_without_metadata(tmp_path: Path, recording: Recording) -> None:
    bag = write_bag(tmp_path / "bag", recording)
    expected, _ = load_bag(bag)
    (bag / "metadata.yaml").unlink()
    trajs, report = load_bag(bag)
    assert_same(trajs, expected)
    assert any("metadata.yaml" in p.message for p in report.problems), str(report)
    direct, report = load_bag(next(bag.glob("*.mcap")))
    assert_same(direct, expected)
    assert report.ok


def test_reordered_joint_names_load_identically(tmp_path: Path, recording: Recording) -> None:
    ordered, _ = load_bag(write_bag(tmp_path / "ordered", recording))
    shuffled = tuple(reversed(C.JOINT_NAMES))
    reordered, report = load_bag(write_bag(tmp_path / "reordered", recording, joint_order=shuffled))
    assert report.ok and not report.problems, str(report)
    assert_same(reordered, ordered)


def test_unknown_joint_is_reported_and_ignored(tmp_path: Path, recording: Recording) -> None:
    plain, _ = load_bag(write_bag(tmp_path / "plain", recording))
    trajs, report = load_bag(write_bag(tmp_path / "extra", recording, extra_joint=True))
    assert_same(trajs, plain)
    assert any("ARM_J1" in p.message and p.level == "warning" for p in report.problems), str(report)


def test_missing_joint_drops_joint_states(tmp_path: Path, recording: Recording) -> None:
    names = ("LF_HAA_typo", *C.JOINT_NAMES[1:])
    bag = write_bag(tmp_path / "bag", recording, state_names=names)
    trajs, report = load_bag(bag)
    assert not trajs and report.skipped == [str(bag)]
    assert report.dropped_samples[C.TOPIC_JOINT_STATES] == len(recording.samples)
    messages = " ".join(p.message for p in report.problems)
    assert "lack ['LF_HAA']" in messages and "LF_HAA_typo" in messages and "no usable message" in messages


def test_nan_sample_is_dropped_and_splits(tmp_path: Path, recording: Recording) -> None:
    bad = 20 * C.DECIMATION + 3  # between commands 20 and 21
    trajs, report = load_bag(write_bag(tmp_path / "bag", recording, nan_sample=bad))
    assert report.dropped_samples == {C.TOPIC_JOINT_STATES: 1}
    assert any("NaN" in p.message for p in report.problems), str(report)
    assert [len(t) for t in trajs] == [21, COMMANDS - 21]
    assert all(np.isfinite(t.state).all() for t in trajs)


def test_unset_header_stamps_fall_back_to_log_time(tmp_path: Path, recording: Recording) -> None:
    stamped, _ = load_bag(write_bag(tmp_path / "stamped", recording))
    trajs, report = load_bag(write_bag(tmp_path / "unstamped", recording, unstamped_commands=True))
    assert_same(trajs, stamped)
    assert any("all zero" in p.message and C.TOPIC_JOINT_COMMAND in p.message for p in report.problems)


def test_gap_splits_trajectories(tmp_path: Path, recording: Recording) -> None:
    trajs, report = load_bag(write_bag(tmp_path / "bag", recording, gap_after=30))
    assert report.ok
    assert [len(t) for t in trajs] == [31, COMMANDS - 31]
    assert trajs[1].time[0] - trajs[0].time[-1] == pytest.approx(0.12)
    np.testing.assert_allclose(trajs[1].state, recording.truth_state[31:], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("what", ["joints", "base"])
def test_a_reset_of_the_robot_splits_trajectories(tmp_path: Path, recording: Recording, what: str) -> None:
    trajs, report = load_bag(write_bag(tmp_path / "bag", recording, reset_after=(30, what)))
    assert [len(t) for t in trajs] == [31, COMMANDS - 31], "no window spans the jump"
    assert any("1 reset(s) of the robot" in p.message for p in report.problems), str(report)
    whole, clean = load_bag(write_bag(tmp_path / "clean", recording))
    assert [len(t) for t in whole] == [COMMANDS] and not any("reset" in p.message for p in clean.problems)


def test_missing_topic_is_an_error_and_others_still_load(tmp_path: Path, recording: Recording) -> None:
    no_imu = write_bag(tmp_path / "no_imu", recording, skip=(C.TOPIC_IMU,))
    good = write_bag(tmp_path / "good", recording)
    trajs, report = load_bags([no_imu, good])
    assert len(trajs) == 1 and report.bags == [str(good)] and report.skipped == [str(no_imu)]
    (error,) = report.errors
    assert error.path == str(no_imu) and C.TOPIC_IMU in error.message and "required" in error.message
    assert str(no_imu) in str(report)


def test_contacts_logged_in_bursts_pair_with_their_step(tmp_path: Path, recording: Recording) -> None:
    """Contacts have no header: a recorder that stalls logs them tens of ms late, after the joint
    states of the same steps; each still pairs with the step it was published at."""
    (t,), report = load_bag(write_bag(tmp_path / "bag", recording, stalled_contacts=True))
    assert report.ok and report.dropped_rows == 0, str(report)
    np.testing.assert_array_equal(t.contacts, recording.truth_contacts.astype(np.float32))


def test_contacts_pair_with_their_step_when_log_times_are_coarse() -> None:
    """A recorder on simulated time logs at the newest /clock (100 Hz): four 400 Hz joint states and
    contacts share each log time, and now and then a contact is logged one clock later than its joint
    state (a /clock came between them). Each contact still takes its own step's stamp."""
    from rwm.data.bag_loader import _stamps_by_pairing, _Stream

    clock_ns = 4 * STEP_NS
    stamps = np.arange(1, 801, dtype=np.int64) * STEP_NS
    joint_log = stamps // clock_ns * clock_ns
    contact_log = joint_log + np.where(np.arange(800) % 7 == 3, clock_ns, 0)
    joint_states = _Stream(stamps=list(stamps), log_stamps=list(joint_log))
    np.testing.assert_array_equal(_stamps_by_pairing(contact_log, joint_states, 64), stamps)


def test_angular_velocity_is_the_gyros_as_in_the_live_state(tmp_path: Path, recording: Recording) -> None:
    """The state's angular velocity comes from the IMU, as the live nodes assemble it, not from the
    odometry's twist (on hardware an estimator's output, filtered differently)."""
    (t,), report = load_bag(write_bag(tmp_path / "bag", recording, odom_angular=7.0))
    assert report.ok
    np.testing.assert_allclose(t.state, recording.truth_state.astype(np.float32), rtol=1e-6, atol=1e-6)


def test_missing_contacts_are_unknown(tmp_path: Path, recording: Recording) -> None:
    """Hardware has no /anymal/contacts: the flags are NaN (unknown), never a made-up "no contact"."""
    (t,), report = load_bag(write_bag(tmp_path / "bag", recording, skip=(C.TOPIC_CONTACTS,)))
    assert report.ok and np.isnan(t.contacts).all() and np.isfinite(t.state).all()
    assert any(C.TOPIC_CONTACTS in p.message and p.level == "info" for p in report.problems)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_file_is_skipped(tmp_path: Path, recording: Recording, storage: str) -> None:
    bad = write_bag(tmp_path / "bad", recording, storage)
    good = write_bag(tmp_path / "good", recording)
    (data,) = [f for f in bad.iterdir() if f.name != "metadata.yaml"]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    trajs, report = load_bags([bad, good])
    assert len(trajs) == 1 and len(trajs[0]) == COMMANDS
    assert report.skipped == [str(bad)] and report.bags == [str(good)]
    assert report.errors[0].path == str(bad) and "cannot read" in report.errors[0].message


def test_collect_bag_is_a_standard_mcap(tmp_path: Path) -> None:
    summary = collect_bag(tmp_path / "bag", duration_s=1.0, seed=3, cmd=np.array([0.5, 0.0, 0.2]))
    assert summary["falls"] == 0 and summary["duration_s"] == pytest.approx(1.0)
    assert summary["messages"][C.TOPIC_JOINT_STATES] == 401
    assert summary["messages"][C.TOPIC_JOINT_COMMAND] == 50
    store = get_typestore(TYPESTORE)
    counts: dict[str, int] = {}
    commands = []
    with open(next((tmp_path / "bag").glob("*.mcap")), "rb") as f:
        reader = make_reader(f)
        assert reader.get_header().profile == "ros2"
        for schema, channel, message in reader.iter_messages():
            assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == C.TOPIC_JOINT_COMMAND:
                commands.append(store.deserialize_cdr(message.data, schema.name).position)
    assert counts == summary["messages"]
    (t,), report = load_bag(tmp_path / "bag")
    assert report.ok and not report.problems, str(report)
    np.testing.assert_array_equal(t.action, np.array(commands, dtype=np.float32))
    np.testing.assert_array_equal(t.command, np.tile([0.5, 0.0, 0.2], (50, 1)).astype(np.float32))


class FoldController:
    """Folds every leg: the base hits the ground within half a second."""

    def reset(self, rng: np.random.Generator) -> None:
        del rng

    def __call__(self, t: float, state: np.ndarray) -> np.ndarray:
        return C.DEFAULT_JOINT_POS * np.tile([1.0, 3.0, 3.0], 4)


def test_collect_bag_splits_at_falls(tmp_path: Path) -> None:
    summary = collect_bag(tmp_path / "bag", controller=FoldController(), duration_s=2.0, storage="sqlite3")
    assert summary["falls"] >= 2
    trajs, report = load_bag(tmp_path / "bag")
    assert report.ok and report.dropped_rows == 0, str(report)
    assert len(trajs) in (summary["falls"], summary["falls"] + 1)
    assert report.rows == summary["messages"][C.TOPIC_JOINT_COMMAND]
    for a, b in zip(trajs, trajs[1:], strict=False):
        assert b.time[0] - a.time[-1] == pytest.approx(0.1)
        assert b.state[0, C.GRAVITY][2] < -0.99  # reset upright


def test_a_nodes_float_topic_is_read_in_log_time_order_and_an_unreadable_bag_adds_nothing(
    tmp_path: Path,
) -> None:
    from rwm.data.bag_loader import load_float_topic

    store = get_typestore(TYPESTORE)
    float32 = store.types["std_msgs/msg/Float32"]
    paths = []
    for k, (start, values) in enumerate([(2_000_000_000, [0.5, 0.25]), (1_000_000_000, [3.0])]):
        path = tmp_path / f"bag{k}"
        with BagWriter(path) as bag:
            for i, v in enumerate(values):
                cdr = store.serialize_cdr(float32(data=v), "std_msgs/msg/Float32")
                bag.write_raw("/rwm/world_model/error", "std_msgs/msg/Float32", cdr, start + i * 20_000_000)
                bag.write_raw("/other", "std_msgs/msg/Float32", cdr, start + i * 20_000_000)
        paths.append(path)
    other = tmp_path / "other"  # a bag without the topic: nothing of its other topics is taken
    with BagWriter(other) as bag:
        text = store.serialize_cdr(store.types["std_msgs/msg/String"](data="1.5"), "std_msgs/msg/String")
        bag.write_raw("/robot_description", "std_msgs/msg/String", text, 500_000_000, latched=True)
        cdr = store.serialize_cdr(float32(data=9.0), "std_msgs/msg/Float32")
        bag.write_raw("/other", "std_msgs/msg/Float32", cdr, 600_000_000)
    paths.append(other)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("not a bag")
    t, values = load_float_topic([*paths, broken, tmp_path / "absent"], "/rwm/world_model/error")
    assert t.tolist() == [1.0, 2.0, 2.02] and values.tolist() == [3.0, 0.5, 0.25]
