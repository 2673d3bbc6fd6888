"""Compact on-disk datasets of 50 Hz trajectories: raw little-endian arrays, memory-mapped for training.

Bags are the exchange format; for millions of transitions straight from the batched simulation a
directory of flat arrays is faster to write and to read. Layout (format version 1):

    state.f32      (N, 45) float32      command.f32  (N, 3) float32
    action.f32     (N, 12) float32      episodes.i64 (T + 1,) int64 row offsets: trajectory i is rows
    contacts.u8    (N, 8) uint8                      episodes[i]:episodes[i + 1]
    start_time.f64 (T,) float64 s       meta.json    dims, dtypes, counts, dt, robot, seed, source
    robot_params.f32    (N, 8) float32, optional: the simulated robot's parameters (ROBOT_PARAM_FIELDS), the
                   same on every row of a trajectory; datasets of a randomized family carry it

Row t of a trajectory was recorded at start_time + t * dt. A writer streams into a hidden temporary
directory and renames it into place at close, so a dataset directory is always complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from rwm.data.trajectory import Trajectory
from rwm.robot import contract as C
from rwm.sim.variants import ROBOT_PARAM_DIM, ROBOT_PARAM_FIELDS

if TYPE_CHECKING:  # reading datasets imports no MuJoCo
    from rwm.sim.batched_env import BatchedAnymalEnv, StepOutput

FORMAT = "rwm-array-dataset"
VERSION = 1
ARRAYS: dict[str, tuple[str, str, int]] = {
    "state": ("state.f32", "<f4", C.STATE_DIM),
    "action": ("action.f32", "<f4", C.ACTION_DIM),
    "contacts": ("contacts.u8", "u1", C.CONTACT_DIM),
    "command": ("command.f32", "<f4", C.COMMAND_DIM),
}
"""Per-row arrays: file name, dtype, width."""
ROBOT_PARAMS = ("robot_params.f32", "<f4", ROBOT_PARAM_DIM)
"""The optional per-row array of the robot's parameters."""
EPISODES = ("episodes.i64", "<i8")
START_TIME = ("start_time.f64", "<f8")
META = "meta.json"


@dataclass
class DatasetMeta:
    """Where a dataset came from; stored in meta.json next to the counts and layout."""

    robot: str = "anymal_d"
    dt: float = C.POLICY_DT
    """Row period, s."""
    seed: int | None = None
    source: str = ""
    """What produced it, e.g. 'batched_env gait' or the bag paths."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (JSON-serializable)."""


class ArrayDatasetWriter:
    """Streams trajectories to disk; nothing appears at `path` until close(). With `with_robot_params`, every
    trajectory must carry its robot's parameters, and without, none may."""

    def __init__(
        self, path: str | Path, meta: DatasetMeta = DatasetMeta(), with_robot_params: bool = False
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"dataset {self.path} already exists; choose a new path or delete it first")
        self.meta = meta
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-", dir=self.path.parent))
        self.arrays = {**ARRAYS, "robot_params": ROBOT_PARAMS} if with_robot_params else ARRAYS
        """The per-row arrays this dataset stores."""
        self._files: dict[str, BinaryIO] = {
            name: open(self.tmp / fname, "wb") for name, (fname, _, _) in self.arrays.items()
        }
        self._offsets = [0]
        self._start_times: list[float] = []

    @property
    def num_rows(self) -> int:
        return self._offsets[-1]

    @property
    def num_trajectories(self) -> int:
        return len(self._start_times)

    def __enter__(self) -> ArrayDatasetWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add_trajectory(self, traj: Trajectory) -> None:
        """Append one trajectory; its rows must be finite, its contacts 0/1 and its stamps dt apart."""
        if len(traj) == 0:
            raise ValueError("cannot add an empty trajectory")
        if len(traj) > 1:
            jitter = np.abs(np.diff(traj.time) - self.meta.dt).max()
            if jitter > 0.5 * self.meta.dt:
                raise ValueError(
                    f"trajectory stamps are not {self.meta.dt} s apart (off by up to "
                    f"{jitter:.4f} s); split it at gaps first (the bag loader does)"
                )
        for name in ("state", "action", "command"):
            if not np.isfinite(getattr(traj, name)).all():
                raise ValueError(f"trajectory {name} holds NaN or Inf; drop those rows before adding it")
        if not np.isin(traj.contacts, (0.0, 1.0)).all():
            raise ValueError(
                "trajectory contacts must be 0 or 1 (a bag without /anymal/contacts gives unknown, NaN, "
                "flags, which an array dataset cannot hold)"
            )
        if (traj.robot_params is None) == ("robot_params" in self.arrays):
            raise ValueError(
                "this dataset stores each robot's parameters and the trajectory has none"
                if traj.robot_params is None
                else "the trajectory carries its robot's parameters and this dataset stores none"
            )
        for name, (_, dtype, _) in self.arrays.items():
            self._files[name].write(np.ascontiguousarray(getattr(traj, name), dtype=dtype).tobytes())
        self._offsets.append(self._offsets[-1] + len(traj))
        self._start_times.append(float(traj.time[0]))

    def close(self) -> None:
        """Write the index and meta.json, then move the finished directory to `path`."""
        for f in self._files.values():
            f.close()
        np.asarray(self._offsets, dtype=EPISODES[1]).tofile(self.tmp / EPISODES[0])
        np.asarray(self._start_times, dtype=START_TIME[1]).tofile(self.tmp / START_TIME[0])
        meta = {
            "format": FORMAT,
            "version": VERSION,
            **asdict(self.meta),
            "num_rows": self.num_rows,
            "num_trajectories": self.num_trajectories,
            "arrays": {name: {"file": f, "dtype": d, "dim": w} for name, (f, d, w) in self.arrays.items()},
            **({"robot_param_fields": list(ROBOT_PARAM_FIELDS)} if "robot_params" in self.arrays else {}),
            "episodes": {"file": EPISODES[0], "dtype": EPISODES[1]},
            "start_time": {"file": START_TIME[0], "dtype": START_TIME[1]},
        }
        (self.tmp / META).write_text(json.dumps(meta, indent=2))
        self.tmp.rename(self.path)

    def abort(self) -> None:
        """Discard everything written so far."""
        for f in self._files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class ArrayDataset:
    """Read-only, memory-mapped view of a dataset directory; validates the layout on open."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / META
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{meta_path} not found: {self.path} is not an array dataset (or its writer was never closed)"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path} is not valid JSON: {err}") from err
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(
                f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
                f"this reader reads {FORMAT!r} version {VERSION}"
            )
        keys = ("robot", "dt", "seed", "source", "extra", "num_rows", "num_trajectories", "arrays")
        if missing := [k for k in keys if k not in meta]:
            raise ValueError(f"{meta_path} lacks {missing}; rewrite the dataset with ArrayDatasetWriter")
        self.meta = DatasetMeta(**{k: meta[k] for k in ("robot", "dt", "seed", "source", "extra")})
        n, t = int(meta["num_rows"]), int(meta["num_trajectories"])
        arrays: dict[str, np.ndarray] = {}
        for name, (fname, dtype, dim) in ARRAYS.items():
            stored = meta["arrays"].get(name)
            if stored != {"file": fname, "dtype": dtype, "dim": dim}:
                raise ValueError(
                    f"{meta_path}: array {name!r} is {stored}, expected file {fname}, "
                    f"dtype {dtype}, dim {dim} (the robot contract's)"
                )
            arrays[name] = self._map(fname, dtype, (n, dim))
        self.state, self.action = arrays["state"], arrays["action"]
        self.contacts, self.command = arrays["contacts"], arrays["command"]
        self.robot_params: np.ndarray | None = None
        """(N, 8) the robot's parameters per row, or None (a dataset without them)."""
        if "robot_params" in meta["arrays"]:
            fname, dtype, dim = ROBOT_PARAMS
            stored = meta["arrays"]["robot_params"]
            if stored != {"file": fname, "dtype": dtype, "dim": dim} or meta.get(
                "robot_param_fields"
            ) != list(ROBOT_PARAM_FIELDS):
                raise ValueError(
                    f"{meta_path}: robot_params {stored} with fields {meta.get('robot_param_fields')}, "
                    "expected "
                    f"file {fname}, dtype {dtype}, fields {list(ROBOT_PARAM_FIELDS)}"
                )
            self.robot_params = self._map(fname, dtype, (n, dim))
        self.offsets = np.fromfile(self._checked(EPISODES[0], EPISODES[1], t + 1), dtype=EPISODES[1])
        self.start_time = np.fromfile(self._checked(START_TIME[0], START_TIME[1], t), dtype=START_TIME[1])
        if self.offsets[0] != 0 or self.offsets[-1] != n or (np.diff(self.offsets) <= 0).any():
            raise ValueError(
                f"{self.path / EPISODES[0]}: offsets must rise from 0 to {n}, got "
                f"{self.offsets[:3]}...{self.offsets[-3:]}"
            )

    def _checked(self, fname: str, dtype: str, count: int) -> Path:
        path = self.path / fname
        size = path.stat().st_size if path.is_file() else -1
        if size != count * np.dtype(dtype).itemsize:
            raise ValueError(
                f"{path}: {size} bytes, meta.json implies {count * np.dtype(dtype).itemsize} "
                "(missing or truncated file)"
            )
        return path

    def _map(self, fname: str, dtype: str, shape: tuple[int, int]) -> np.ndarray:
        path = self._checked(fname, dtype, shape[0] * shape[1])
        if shape[0] == 0:
            return np.empty(shape, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r", shape=shape)

    def __len__(self) -> int:
        """Rows (states) in all trajectories."""
        return len(self.state)

    @property
    def num_trajectories(self) -> int:
        return len(self.start_time)

    def trajectory(self, i: int) -> Trajectory:
        """Trajectory i, copied into memory; time rebuilt from its start and dt."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return Trajectory(
            time=self.start_time[i] + np.arange(b - a) * self.meta.dt,
            state=np.array(self.state[a:b]),
            action=np.array(self.action[a:b]),
            contacts=self.contacts[a:b].astype(np.float32),
            command=np.array(self.command[a:b]),
            robot_params=None if self.robot_params is None else np.array(self.robot_params[a:b]),
        )

    def trajectories(self) -> Iterator[Trajectory]:
        """Every trajectory in file order, one at a time (memory stays bounded)."""
        for i in range(self.num_trajectories):
            yield self.trajectory(i)

    def windows(self, length: int) -> np.ndarray:
        """Start rows (int64) of every window of `length` rows that lies inside one trajectory."""
        if length < 1:
            raise ValueError(f"window length must be at least 1, got {length}")
        starts, stops = self.offsets[:-1], self.offsets[1:] - length + 1
        keep = stops > starts
        counts = stops[keep] - starts[keep]
        first = np.repeat(starts[keep], counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return (first + within).astype(np.int64)

    def gather(self, starts: np.ndarray, length: int) -> dict[str, np.ndarray]:
        """Windows as (B, length, dim) float32 arrays of state, action, contacts and command, and
        of the robots' parameters where the dataset has them."""
        rows = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length)
        out = {
            "state": self.state[rows],
            "action": self.action[rows],
            "contacts": self.contacts[rows].astype(np.float32),
            "command": self.command[rows],
        }
        if self.robot_params is not None:
            out["robot_params"] = self.robot_params[rows]
        return out


def merge_datasets(sources: list[str | Path], out: str | Path) -> dict:
    """One dataset of every trajectory of `sources` (in their order), e.g. shards collected by
    several processes with their own seeds; they must share robot and dt. Returns the counts."""
    if not sources:
        raise ValueError("no dataset to merge")
    shards = [ArrayDataset(s) for s in sources]
    first = shards[0].meta
    for shard in shards[1:]:
        if (shard.meta.robot, shard.meta.dt) != (first.robot, first.dt):
            raise ValueError(
                f"{shard.path}: robot {shard.meta.robot} at dt {shard.meta.dt}, "
                f"{shards[0].path}: {first.robot} at {first.dt}; only datasets of one robot and rate merge"
            )
    with_params = [s.robot_params is not None for s in shards]
    if any(with_params) and not all(with_params):
        raise ValueError(
            "some datasets carry the robots' parameters and some do not "
            f"({[str(s.path) for s, c in zip(shards, with_params, strict=True) if not c]} do not); "
            "they do not merge"
        )
    meta = DatasetMeta(
        robot=first.robot,
        dt=first.dt,
        seed=None,
        source=f"merged from {len(shards)} datasets",
        extra={
            "shards": [
                {"path": str(s.path), "seed": s.meta.seed, "source": s.meta.source, "extra": s.meta.extra}
                for s in shards
            ]
        },
    )
    with ArrayDatasetWriter(out, meta, with_robot_params=all(with_params)) as writer:
        for shard in shards:
            for traj in shard.trajectories():
                writer.add_trajectory(traj)
    return {"path": str(out), "rows": writer.num_rows, "trajectories": writer.num_trajectories}


class BatchedRecorder:
    """Cuts the batched environment's steps into per-robot trajectories and streams them to a writer.

    Row t of a robot holds the state and contacts before step t, the command in force and the
    targets applied. When the robot's episode ends, the state the step reached (before the reset)
    closes its trajectory as a last row; that row repeats the last targets, which the drives hold.
    A writer with robot parameters also gets each robot's parameters, read before the step (a reset draws
    the next robot's).
    """

    def __init__(self, writer: ArrayDatasetWriter, num_envs: int, dt: float = C.POLICY_DT) -> None:
        self.writer, self.num_envs, self.dt = writer, num_envs, dt
        cap = 256
        self._buf = {
            name: np.zeros((num_envs, cap, dim), dtype=np.float32)
            for name, (_, _, dim) in writer.arrays.items()
        }
        self._len = np.zeros(num_envs, dtype=np.int64)
        self._start_step = np.zeros(num_envs, dtype=np.int64)
        self._step = 0
        self._last: dict[str, np.ndarray] = {}

    def _grow(self) -> None:
        for name, buf in self._buf.items():
            self._buf[name] = np.concatenate([buf, np.zeros_like(buf)], axis=1)

    def _append(self, ids: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        if (self._len[ids] >= self._buf["state"].shape[1]).any():
            self._grow()
        for name, buf in self._buf.items():
            buf[ids, self._len[ids]] = rows[name]
        self._len[ids] += 1

    def _emit(self, i: int) -> None:
        n = int(self._len[i])
        self.writer.add_trajectory(
            Trajectory(
                time=(self._start_step[i] + np.arange(n)) * self.dt,
                state=self._buf["state"][i, :n],
                action=self._buf["action"][i, :n],
                contacts=self._buf["contacts"][i, :n],
                command=self._buf["command"][i, :n],
                robot_params=self._buf["robot_params"][i, :n] if "robot_params" in self._buf else None,
            )
        )
        self._len[i] = 0

    def record(
        self,
        state: np.ndarray,
        contacts: np.ndarray,
        command: np.ndarray,
        targets: np.ndarray,
        out: StepOutput,
        robot_params: np.ndarray | None = None,
    ) -> None:
        """One step of all robots: pre-step state/contacts/command (and robot parameters), the applied
        targets, the step's output."""
        if (robot_params is None) == ("robot_params" in self._buf):
            raise ValueError("the robots' parameters must be given exactly when the dataset stores them")
        every = np.arange(self.num_envs)
        rows = {"state": state, "contacts": contacts, "command": command, "action": targets}
        if robot_params is not None:
            rows["robot_params"] = robot_params
        self._append(every, rows)
        self._step += 1
        self._last = {
            "state": out.final_state.copy(),
            "contacts": out.final_contacts.copy(),
            "command": np.array(command),
            "action": np.array(targets),
        }
        if robot_params is not None:
            self._last["robot_params"] = np.array(robot_params)
        done = np.flatnonzero(out.terminated | out.truncated)
        if len(done):
            self._append(done, {k: v[done] for k, v in self._last.items()})
            for i in done:
                self._emit(int(i))
            self._start_step[done] = self._step

    def step(self, env: BatchedAnymalEnv, targets: np.ndarray) -> StepOutput:
        """Step `env` with `targets` and record the step."""
        state, contacts, command = env.state.copy(), env.contacts.copy(), env.command.copy()
        robot_params = env.robot_params.copy() if "robot_params" in self._buf else None
        out = env.step(targets)
        self.record(state, contacts, command, np.asarray(targets), out, robot_params)
        return out

    def finish(self) -> None:
        """Close every open trajectory with the state its robot reached last (collection ends)."""
        live = np.flatnonzero(self._len > 0)
        if len(live) and self._last:
            self._append(live, {k: v[live] for k, v in self._last.items()})
        for i in live:
            self._emit(int(i))
