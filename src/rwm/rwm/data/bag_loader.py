"""Turn rosbag2 recordings of the contract topics into aligned 50 Hz trajectories, without ROS.

Any bag that `ros2 bag record` writes on the contract topics loads here, from the real robot or the
simulation alike: MCAP or sqlite3, with message definitions from the bag (or the Kilted typestore
where an old bag has none), a bag directory without metadata.yaml and a bare .mcap/.db3 file: what a
recorder that died left, read as far as it is complete (`rwm.data.bag_recovery`). Each
/anymal/joint_command message becomes one row; the state is the latest sample of each robot topic at
or before the command's header stamp. Bad data never stops a
load: it is dropped, reported with the file it came from, and the trajectory is split there. So is a
reset of the robot (joints or base set elsewhere between two rows, as the simulation node does after a
fall, with no gap in the streams): a model must not learn a teleport as a transition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection
from rosbags.typesys import get_typestore

from rwm.data.bag_recovery import Salvage, SalvagedTopic, salvage_messages, typestore_for
from rwm.data.bag_writer import TOPIC_TYPES, TYPESTORE
from rwm.data.trajectory import Trajectory
from rwm.robot import contract as C
from rwm.robot.frames import quat_rotate_inverse

REQUIRED_TOPICS = (C.TOPIC_JOINT_STATES, C.TOPIC_IMU, C.TOPIC_ODOM, C.TOPIC_JOINT_COMMAND)
"""Without these a bag holds no state or no action."""
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
"""Also accepted on /cmd_vel (ROS 2 navigation publishes it since Jazzy)."""
_DOWN = np.array([0.0, 0.0, -1.0])
_Message = tuple[str, Any, int]
"""(topic, deserialized message, log time ns)."""


@dataclass(frozen=True)
class LoaderConfig:
    """How strictly rows are aligned and where trajectories are split."""

    dt: float = C.POLICY_DT
    """Expected command period, s."""
    max_period_factor: float = 1.5
    """Split where consecutive commands are more than this many periods apart (a gap)."""
    min_period_factor: float = 0.5
    """Split where they are less than this many periods apart (duplicate or burst commands)."""
    max_state_age_s: float = C.STATE_MAX_AGE_S
    """A row needs a sample of every robot topic at most this old at the command stamp."""
    max_joint_step_rad: float = 0.6
    """Split where a joint position moves further than this between consecutive rows: 30 rad/s, far
    beyond the drives' 8.5 rad/s (the most seen in 50 Hz data with action noise is 0.37 rad). Such a
    jump is a reset of the robot (the simulation's after a fall, or an operator's), not a transition."""
    max_tilt_step_rad: float = 0.5
    """Split where the gravity direction in the base frame turns further than this between rows
    (25 rad/s; the most seen in 50 Hz data is 0.10 rad): the base was set upright, it did not turn."""
    min_rows: int = 2
    """Shorter pieces hold no transition and are left out."""
    quat_norm_tol: float = 0.01
    """IMU orientations whose norm is further than this from 1 are dropped (e.g. all-zero: unknown)."""
    pairing_window: int = 64
    """Contact messages over which their pairing with the joint states is decided (see _stamps_by_pairing)."""


@dataclass
class Problem:
    """Something a bag lacked or held that the trajectories do not show."""

    path: str
    message: str
    level: str
    """'error': the bag gave no data; 'warning': data left out; 'info': worth knowing."""

    def __str__(self) -> str:
        return f"[{self.level}] {self.path}: {self.message}"


@dataclass
class LoadReport:
    """What a load read, built, dropped and skipped, and why."""

    bags: list[str] = field(default_factory=list)
    """Bags that gave trajectories."""
    skipped: list[str] = field(default_factory=list)
    """Bags or files that gave none (corrupt, truncated, lacking a required topic)."""
    problems: list[Problem] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)
    """Messages read per contract topic."""
    dropped_samples: dict[str, int] = field(default_factory=dict)
    """Messages left out per topic (NaN/Inf, unknown joint layout, malformed)."""
    dropped_rows: int = 0
    """Commands that gave no row: no fresh state, or in a piece shorter than min_rows."""
    rows: int = 0
    trajectories: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def ok(self) -> bool:
        """True when no bag was skipped."""
        return not self.skipped

    def add(self, path: Path | str, message: str, level: str = "warning") -> None:
        self.problems.append(Problem(str(path), message, level))

    def merge(self, other: LoadReport) -> None:
        """Add another bag's report into this one (load_bags sums them)."""
        self.bags += other.bags
        self.skipped += other.skipped
        self.problems += other.problems
        for mine, theirs in ((self.messages, other.messages), (self.dropped_samples, other.dropped_samples)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self.dropped_rows += other.dropped_rows
        self.rows += other.rows
        self.trajectories += other.trajectories

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.bags)} bag(s), skipped {len(self.skipped)}: {self.trajectories} trajectories, "
            f"{self.rows} rows; {sum(self.messages.values())} messages read, "
            f"{sum(self.dropped_samples.values())} dropped, {self.dropped_rows} commands without a row",
        ]
        lines += [
            f"  {topic}: {n} read, {self.dropped_samples.get(topic, 0)} dropped"
            for topic, n in sorted(self.messages.items())
        ]
        lines += [f"  skipped {p}" for p in self.skipped]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class _Drop(Exception):
    """Data that cannot be used (a message, or a whole bag); the argument says why."""


@dataclass
class _Stream:
    """Samples of one topic as they are decoded: stamps (ns) and value rows."""

    stamps: list[int] = field(default_factory=list)
    """Header stamps; log times for messages without a header or with unset stamps."""
    values: list[np.ndarray] = field(default_factory=list)
    log_stamps: list[int] = field(default_factory=list)
    dropped: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """(stamp, log time) of dropped messages per reason."""

    def arrays(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(stamps (n,), values (n, width)) sorted by stamp."""
        stamps = np.array(self.stamps, dtype=np.int64)
        values = np.array(self.values, dtype=np.float64).reshape(len(stamps), width)
        order = np.argsort(stamps, kind="stable")
        return stamps[order], values[order]

    def dropped_stamps(self) -> list[int]:
        return [s for pairs in self.dropped.values() for s, _ in pairs]

    def use_log_time(self) -> None:
        """Stamp every sample with its log time (for publishers that leave header stamps at zero)."""
        self.stamps = list(self.log_stamps)
        self.dropped = {why: [(log, log) for _, log in pairs] for why, pairs in self.dropped.items()}


class _JointMapper:
    """Maps a message's joint names to contract order once per distinct name list."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], np.ndarray | str] = {}
        self.unknown: set[str] = set()

    def index(self, names: list[str]) -> np.ndarray:
        key = tuple(names)
        hit = self._cache.get(key)
        if hit is None:
            self.unknown.update(set(key) - set(C.JOINT_NAMES))
            try:
                hit = C.joint_index(key)
            except ValueError as err:
                hit = str(err)
            self._cache[key] = hit
        if isinstance(hit, str):
            raise _Drop(hit)
        return hit


def _joint_states(msg: Any, mapper: _JointMapper) -> np.ndarray:
    idx = mapper.index(msg.name)
    n = len(msg.name)
    lengths = (len(msg.position), len(msg.velocity), len(msg.effort))
    if lengths != (n, n, n):
        raise _Drop(f"position/velocity/effort have {lengths} entries for {n} names (all three are needed)")
    return np.concatenate([msg.position[idx], msg.velocity[idx], msg.effort[idx]])


def _imu(msg: Any, tol: float) -> np.ndarray:
    o = msg.orientation
    q = np.array([o.w, o.x, o.y, o.z])
    norm = np.linalg.norm(q)
    if np.isfinite(norm) and abs(norm - 1.0) > tol:
        raise _Drop(f"orientation is not a unit quaternion (norm {norm:.3g}; all-zero means unknown)")
    w = msg.angular_velocity
    return np.concatenate([q / norm, [w.x, w.y, w.z]])


def _odom(msg: Any) -> np.ndarray:
    v = msg.twist.twist.linear  # base frame; the angular velocity is the IMU's
    return np.array([v.x, v.y, v.z])


def _contacts(msg: Any) -> np.ndarray:
    if len(msg.data) != C.CONTACT_DIM:
        raise _Drop(f"{len(msg.data)} contact flags instead of {C.CONTACT_DIM}")
    return np.asarray(msg.data, dtype=np.float64)


def _joint_command(msg: Any, mapper: _JointMapper) -> np.ndarray:
    idx = mapper.index(msg.name)
    if len(msg.position) != len(msg.name):
        raise _Drop(f"{len(msg.position)} positions for {len(msg.name)} names")
    return np.asarray(msg.position)[idx]


def _cmd_vel(msg: Any) -> np.ndarray:
    t = msg.twist if hasattr(msg, "header") else msg
    return np.array([t.linear.x, t.linear.y, t.angular.z])


@dataclass
class _BagData:
    """Everything decoded from one bag, per contract topic."""

    streams: dict[str, _Stream] = field(default_factory=lambda: {t: _Stream() for t in TOPIC_TYPES})
    state_mapper: _JointMapper = field(default_factory=_JointMapper)
    command_mapper: _JointMapper = field(default_factory=_JointMapper)
    odom_child_frames: set[str] = field(default_factory=set)
    log_clock: set[str] = field(default_factory=set)
    """Topics without a header (Float32MultiArray, Twist), stamped with their log time."""

    def decode(self, topic: str, msg: Any, log_ns: int, cfg: LoaderConfig) -> None:
        """Append one message's sample to its topic's stream, or record why it was dropped."""
        stream = self.streams[topic]
        if hasattr(msg, "header"):
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        else:
            stamp = log_ns
            self.log_clock.add(topic)
        try:
            if topic == C.TOPIC_JOINT_STATES:
                values = _joint_states(msg, self.state_mapper)
            elif topic == C.TOPIC_IMU:
                values = _imu(msg, cfg.quat_norm_tol)
            elif topic == C.TOPIC_ODOM:
                self.odom_child_frames.add(msg.child_frame_id)
                values = _odom(msg)
            elif topic == C.TOPIC_CONTACTS:
                values = _contacts(msg)
            elif topic == C.TOPIC_CMD_VEL:
                values = _cmd_vel(msg)
            else:
                values = _joint_command(msg, self.command_mapper)
            if not np.isfinite(values).all():
                raise _Drop("NaN/Inf values")
        except _Drop as why:
            stream.dropped.setdefault(str(why), []).append((stamp, log_ns))
            return
        stream.stamps.append(stamp)
        stream.values.append(values)
        stream.log_stamps.append(log_ns)


# -- reading ------------------------------------------------------------------------------------
def _bag_files(path: Path, report: LoadReport) -> list[Path] | None:
    """Storage files to read directly, or None to read `path` as a bag directory with metadata.yaml."""
    if path.is_file():
        if path.suffix not in (".mcap", ".db3"):
            raise ValueError(f"{path} is not a rosbag2 storage file (.mcap or .db3)")
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    if (path / "metadata.yaml").exists():
        return None
    files = sorted(path.glob("*.mcap")) or sorted(path.glob("*.db3"))
    if not files:
        raise ValueError(f"{path} holds neither metadata.yaml nor .mcap/.db3 files: not a rosbag2 bag")
    report.add(
        path,
        "no metadata.yaml (recorder stopped before closing?): reading "
        f"{', '.join(f.name for f in files)} directly",
        "info",
    )
    return files


def _wanted_type(topic: str, msgtype: str, path: Path, report: LoadReport) -> bool:
    """Whether a connection is on a contract topic with a type the loader reads; others are reported."""
    expected = TOPIC_TYPES.get(topic)
    if expected is None:
        return False
    accepted = (expected, TWIST_STAMPED) if topic == C.TOPIC_CMD_VEL else (expected,)
    if msgtype not in accepted:
        report.add(path, f"{topic} has type {msgtype}, expected {expected}: topic ignored")
        return False
    return True


def _wanted(connections: Iterable[Connection], path: Path, report: LoadReport) -> list[Connection]:
    return [c for c in connections if _wanted_type(c.topic, c.msgtype, path, report)]


@contextmanager
def _storage_messages(file: Path, report: LoadReport) -> Iterator[Iterator[_Message]]:
    """(topic, message, log time) from one storage file read without metadata.yaml: as much as can be
    salvaged when its recorder died before closing it (`rwm.data.bag_recovery`)."""
    salvage = Salvage(file)
    wanted: dict[SalvagedTopic, bool] = {}
    stores: dict[SalvagedTopic, Any] = {}

    def messages() -> Iterator[_Message]:
        for conn, t_ns, raw in salvage_messages(file, salvage):
            if conn not in wanted:
                wanted[conn] = _wanted_type(conn.topic, conn.msgtype, file, report)
                if wanted[conn]:
                    if not conn.msgdef:
                        why = f"no .msg definition for {conn.topic}: using {TYPESTORE.value}'s"
                        report.add(file, why, "info")
                    stores[conn] = typestore_for(conn)
            if wanted[conn]:
                yield conn.topic, stores[conn].deserialize_cdr(raw, conn.msgtype), t_ns
        if not salvage.complete:
            report.add(
                file,
                f"truncated (its recorder was killed?): {salvage}; `rwm bag-recover` makes it a complete bag",
            )

    yield messages()


@contextmanager
def _bag_messages(path: Path, report: LoadReport) -> Iterator[Iterator[_Message]]:
    """(topic, message, log time) from a bag directory with metadata.yaml."""
    with AnyReader([path], default_typestore=get_typestore(TYPESTORE)) as reader:
        conns = _wanted(reader.connections, path, report)
        yield ((c.topic, reader.deserialize(raw, c.msgtype), t) for c, t, raw in reader.messages(conns))


def _read(path: Path, cfg: LoaderConfig, report: LoadReport) -> _BagData:
    """Decode every contract-topic message of a bag; raises on unreadable storage."""
    data = _BagData()
    files = _bag_files(path, report)
    sources = (
        [_bag_messages(path, report)] if files is None else [_storage_messages(f, report) for f in files]
    )
    for source in sources:
        with source as messages:
            for topic, msg, log_ns in messages:
                report.messages[topic] = report.messages.get(topic, 0) + 1
                data.decode(topic, msg, log_ns, cfg)
    return data


# -- alignment ------------------------------------------------------------------------------------
def _check_streams(data: _BagData, path: Path, report: LoadReport) -> None:
    """Report dropped messages and unknown joints; fall back to log times where stamps were never set."""
    for topic, stream in data.streams.items():
        if topic not in data.log_clock and len(stream.log_stamps) > 1 and not any(stream.stamps):
            stream.use_log_time()
            data.log_clock.add(topic)
            report.add(
                path, f"{topic}: header stamps are all zero (publisher never sets them): using log times"
            )
        for why, pairs in stream.dropped.items():
            report.dropped_samples[topic] = report.dropped_samples.get(topic, 0) + len(pairs)
            report.add(
                path,
                f"{topic}: dropped {len(pairs)} message(s), first at "
                f"t={min(s for s, _ in pairs) / 1e9:.4f} s: {why} (trajectories split there)",
            )
    mappers = ((C.TOPIC_JOINT_STATES, data.state_mapper), (C.TOPIC_JOINT_COMMAND, data.command_mapper))
    for topic, mapper in mappers:
        if mapper.unknown:
            report.add(path, f"{topic} names joints outside the contract, ignored: {sorted(mapper.unknown)}")
    if data.odom_child_frames - {C.BASE_FRAME}:
        report.add(
            path,
            f"{C.TOPIC_ODOM} child_frame_id {sorted(data.odom_child_frames)} is not "
            f"'{C.BASE_FRAME}'; its twist is read as base-frame velocity as the contract says",
        )


def _log_offset(data: _BagData, path: Path, report: LoadReport) -> int:
    """Median log time minus header stamp of the joint commands: puts headerless topics on the header clock.

    The two clocks differ when the recorder does not run on sim time while the robot does.
    """
    jc = data.streams[C.TOPIC_JOINT_COMMAND]
    offset = int(np.median(np.array(jc.log_stamps) - np.array(jc.stamps)))
    if data.log_clock and abs(offset) > 1e9:
        report.add(
            path,
            f"log times run {offset / 1e9:.1f} s from header stamps (recorder not on sim "
            f"time?): {sorted(data.log_clock)} aligned by that offset",
            "info",
        )
    return offset


def _stamps_by_pairing(log_ns: np.ndarray, joint_states: _Stream, window: int) -> np.ndarray:
    """Header stamps for contact messages (no header; published with the joint states of each step,
    which hold at least two).

    Contact message i takes the stamp of joint state i + d, with the d that best matches their log
    times summed over the `window` messages around i, each mismatch capped at one step. A recorder
    that stalls logs a burst of one topic before the other, tens of ms late, so the nearest log time
    pairs wrongly there (and any d costs the cap); the order within each topic holds, and outside
    bursts a wrong d costs a whole step per message. Where the
    two topics' message counts differ by more than 1 %, their rates differ: nearest log time instead.
    """
    ref_log = np.array(joint_states.log_stamps, dtype=np.int64)
    order = np.argsort(ref_log, kind="stable")
    ref_log, ref_stamps = ref_log[order], np.array(joint_states.stamps, dtype=np.int64)[order]
    n, m = len(log_ns), len(ref_log)
    right = np.clip(np.searchsorted(ref_log, log_ns), 1, m - 1)
    left_nearer = np.abs(ref_log[right - 1] - log_ns) <= np.abs(ref_log[right] - log_ns)
    nearest = np.where(left_nearer, right - 1, right)
    if abs(n - m) > 0.01 * m:
        return ref_stamps[nearest]
    # the joint states' period from their stamps: log times can be coarser (a recorder on simulated
    # time logs at the newest /clock, 100 Hz, so four 400 Hz messages share one log time)
    step = max(np.median(np.diff(np.sort(ref_stamps))), 1)
    index = np.arange(n)
    shift = nearest - index
    best = np.empty(n, dtype=np.int64)
    half, block = window // 2, 4096
    for start in range(0, n, block):
        lo, hi = max(start - half, 0), min(start + block + half, n)
        candidates = np.unique(shift[lo:hi])
        paired = index[lo:hi, None] + candidates
        mismatch = np.minimum(np.abs(log_ns[lo:hi, None] - ref_log[np.clip(paired, 0, m - 1)]), step)
        mismatch[(paired < 0) | (paired >= m)] = step
        summed = np.concatenate([np.zeros((1, len(candidates))), np.cumsum(mismatch, axis=0)])
        rows = np.arange(start, min(start + block, n)) - lo
        around = summed[np.minimum(rows + half + 1, hi - lo)] - summed[np.maximum(rows - half, 0)]
        best[start : start + len(rows)] = candidates[np.argmin(around, axis=1)]
    return ref_stamps[np.clip(index + best, 0, m - 1)]


def _build(data: _BagData, path: Path, cfg: LoaderConfig, report: LoadReport) -> list[Trajectory]:
    """Aligned rows, one per joint command, split into trajectories at gaps and dropped samples."""
    s = data.streams
    missing = [t for t in REQUIRED_TOPICS if not s[t].stamps]
    if missing:
        detail = ", ".join(
            f"{t} ({TOPIC_TYPES[t]})" + (" had no usable message" if s[t].dropped else "") for t in missing
        )
        raise _Drop(
            f"lacks required topic(s) {detail}; a bag needs {list(REQUIRED_TOPICS)} "
            "to give states and actions: record all of them"
        )
    offset = _log_offset(data, path, report)

    def arrays(topic: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        stream = s[topic]
        if topic not in data.log_clock:
            return stream.arrays(width)
        log = np.array(stream.stamps, dtype=np.int64)
        js = s[C.TOPIC_JOINT_STATES]
        if topic == C.TOPIC_CONTACTS and C.TOPIC_JOINT_STATES not in data.log_clock and len(js.stamps) > 1:
            stamps = _stamps_by_pairing(log, js, cfg.pairing_window)
        else:
            stamps = log - offset
        values = np.array(stream.values, dtype=np.float64).reshape(len(stamps), width)
        order = np.argsort(stamps, kind="stable")
        return stamps[order], values[order]

    cmd_t, action = arrays(C.TOPIC_JOINT_COMMAND, C.ACTION_DIM)
    max_age = round(cfg.max_state_age_s * 1e9)
    n = len(cmd_t)
    valid = np.ones(n, dtype=bool)

    def latest(topic: str, width: int) -> np.ndarray:
        """Rows of the latest sample at or before each command; marks rows without a fresh one invalid."""
        stamps, values = arrays(topic, width)
        idx = np.searchsorted(stamps, cmd_t, side="right") - 1
        safe = np.maximum(idx, 0)
        valid[:] &= (idx >= 0) & (cmd_t - stamps[safe] <= max_age)
        return values[safe]

    state = np.empty((n, C.STATE_DIM))
    state[:, C.JOINT_POS.start :] = latest(C.TOPIC_JOINT_STATES, 3 * C.NUM_JOINTS)
    imu = latest(C.TOPIC_IMU, 7)
    state[:, C.GRAVITY] = quat_rotate_inverse(imu[:, :4], _DOWN)
    state[:, C.ANG_VEL] = imu[:, 4:]  # the gyro, as the live nodes assemble the state (robot_state.py)
    state[:, C.LIN_VEL] = latest(C.TOPIC_ODOM, 3)
    if s[C.TOPIC_CONTACTS].stamps:
        contacts = latest(C.TOPIC_CONTACTS, C.CONTACT_DIM)
    else:
        contacts = np.full((n, C.CONTACT_DIM), np.nan)
        report.add(
            path,
            f"no {C.TOPIC_CONTACTS} (as on hardware): contact flags unknown (NaN), left out of the "
            "world model's contact loss",
            "info",
        )
    command = np.zeros((n, C.COMMAND_DIM))
    if s[C.TOPIC_CMD_VEL].stamps:
        vel_t, vel = arrays(C.TOPIC_CMD_VEL, C.COMMAND_DIM)
        idx = np.searchsorted(vel_t, cmd_t, side="right") - 1
        command = np.where((idx >= 0)[:, None], vel[np.maximum(idx, 0)], 0.0)

    period = np.diff(cmd_t)
    dt_ns = cfg.dt * 1e9
    if n >= 3 and abs(np.median(period) - dt_ns) > 0.1 * dt_ns:
        report.add(
            path,
            f"{C.TOPIC_JOINT_COMMAND} median period {np.median(period) / 1e6:.1f} ms, expected "
            f"{cfg.dt * 1e3:.0f} ms: rows are split wherever the period is off by half a step",
        )
    brk = np.zeros(n, dtype=bool)
    brk[1:] = (period > cfg.max_period_factor * dt_ns) | (period < cfg.min_period_factor * dt_ns)
    dropped = np.sort(
        np.array(
            [
                t - (offset if topic in data.log_clock else 0)
                for topic, st in s.items()
                for t in st.dropped_stamps()
            ],
            dtype=np.int64,
        )
    )
    if len(dropped):
        seen = np.searchsorted(dropped, cmd_t, side="right")
        brk[1:] |= seen[1:] > seen[:-1]
    brk |= ~valid
    brk[1:] |= ~valid[:-1]
    jumps = _resets(state, cfg) & valid[1:] & valid[:-1]
    if jumps.any():
        report.add(
            path,
            f"{int(jumps.sum())} reset(s) of the robot (a joint moved more than "
            f"{cfg.max_joint_step_rad} rad or the base turned more than {cfg.max_tilt_step_rad} rad in "
            "one step): trajectories split there",
            "info",
        )
    brk[1:] |= jumps
    stale = int((~valid).sum())
    if stale:
        report.add(
            path,
            f"{stale} command(s) had no sample of every robot topic in the "
            f"{cfg.max_state_age_s * 1e3:.1f} ms before them: no row (trajectories split there)",
        )
    report.dropped_rows += stale

    trajectories = []
    starts = np.flatnonzero(brk | (np.arange(n) == 0))
    for a, b in zip(starts, np.append(starts[1:], n), strict=True):
        if not valid[a]:
            continue
        if b - a < cfg.min_rows:
            report.dropped_rows += int(b - a)
            continue
        trajectories.append(
            Trajectory(
                time=cmd_t[a:b] / 1e9,
                state=state[a:b].astype(np.float32),
                action=action[a:b].astype(np.float32),
                contacts=contacts[a:b].astype(np.float32),
                command=command[a:b].astype(np.float32),
            )
        )
    return trajectories


def _resets(state: np.ndarray, cfg: LoaderConfig) -> np.ndarray:
    """(n - 1,) whether the robot jumped between consecutive rows of (n, 45) states."""
    joint = np.abs(np.diff(state[:, C.JOINT_POS], axis=0)).max(axis=1, initial=0.0) > cfg.max_joint_step_rad
    g = state[:, C.GRAVITY]
    cos = (g[1:] * g[:-1]).sum(1) / np.maximum(
        np.linalg.norm(g[1:], axis=1) * np.linalg.norm(g[:-1], axis=1), 1e-9
    )
    return joint | (cos < np.cos(cfg.max_tilt_step_rad))


# -- public -------------------------------------------------------------------------------------
def load_bag(path: str | Path, cfg: LoaderConfig = LoaderConfig()) -> tuple[list[Trajectory], LoadReport]:
    """Trajectories of one bag (directory, or a bare .mcap/.db3 file); problems are reported, not raised."""
    path = Path(path)
    report = LoadReport()
    try:
        data = _read(path, cfg, report)
    except Exception as err:  # noqa: BLE001 - any failure of a corrupt file skips that file, never the load
        report.add(path, f"cannot read: {type(err).__name__}: {err}", "error")
        report.skipped.append(str(path))
        return [], report
    _check_streams(data, path, report)
    try:
        trajectories = _build(data, path, cfg, report)
    except _Drop as why:
        report.add(path, str(why), "error")
        report.skipped.append(str(path))
        return [], report
    report.bags.append(str(path))
    report.trajectories = len(trajectories)
    report.rows = sum(len(t) for t in trajectories)
    return trajectories, report


def load_float_topic(paths: Iterable[str | Path], topic: str) -> tuple[np.ndarray, np.ndarray]:
    """(log time s, value) of every std_msgs/Float32 message on `topic` in complete bag directories,
    in log-time order: what a node published beside the robot's streams (the monitor's error). A bag
    that cannot be read adds nothing (`load_bags` reports it)."""
    times: list[int] = []
    values: list[float] = []
    for path in paths:
        if not (Path(path) / "metadata.yaml").is_file():
            continue
        bag_times, bag_values = [], []
        try:
            with AnyReader([Path(path)], default_typestore=get_typestore(TYPESTORE)) as reader:
                conns = [
                    c for c in reader.connections if c.topic == topic and c.msgtype == "std_msgs/msg/Float32"
                ]
                if not conns:  # reading with no connections would read every message
                    continue
                for c, t, raw in reader.messages(conns):
                    bag_times.append(t)
                    bag_values.append(float(reader.deserialize(raw, c.msgtype).data))
        except Exception:  # noqa: BLE001, S112 - an unreadable bag is the trajectories' loader's to report
            continue
        times += bag_times
        values += bag_values
    order = np.argsort(times, kind="stable")
    return np.array(times, dtype=np.float64)[order] / 1e9, np.array(values, dtype=np.float64)[order]


def load_bags(
    paths: Iterable[str | Path], cfg: LoaderConfig = LoaderConfig()
) -> tuple[list[Trajectory], LoadReport]:
    """Trajectories of many bags; a bag that fails is reported and skipped, the others still load."""
    trajectories: list[Trajectory] = []
    report = LoadReport()
    for path in paths:
        found, one = load_bag(path, cfg)
        trajectories += found
        report.merge(one)
    return trajectories, report
