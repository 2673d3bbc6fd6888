"""The replay buffer of MBPO-PPO: a pretraining dataset (memory-mapped) plus trajectories collected
online, sampled as windows that never cross a trajectory boundary. For a world model given the
robots' parameters, every row carries its robot's (`robot_params`). Imagination may also start robots
from the windows after which the real robot fell (`sample_before_falls`), found from the states
alone, so that datasets, bags and the loop's own robots need no fall flags."""

from __future__ import annotations

import numpy as np
import torch

from rwm.data.array_dataset import ArrayDataset
from rwm.robot import contract as C


class ReplayBuffer:
    """Real (state, action, contacts[, robot_params]) rows; `sample` draws fixed-length pieces of
    trajectories."""

    def __init__(
        self, base: ArrayDataset | None = None, seed: int = 0, with_robot_params: bool = False
    ) -> None:
        if with_robot_params and base is not None and base.robot_params is None:
            raise ValueError(f"{base.path} has no robot parameters for a world model that takes them")
        self.base = base
        self.keys = ("state", "action", "contacts", *(("robot_params",) if with_robot_params else ()))
        """What every row holds."""
        self.rng = np.random.default_rng(seed)
        self._parts: list[dict[str, np.ndarray]] = []
        self.collected_rows = 0
        """Rows added online (real transitions the loop paid for)."""
        self._fall_windows: dict[tuple, dict] = {}
        """Per rule of `sample_before_falls`: its windows' start rows in the pretraining data, and per
        collected trajectory so far."""

    def add(
        self,
        state: np.ndarray,
        action: np.ndarray,
        contacts: np.ndarray,
        robot_params: np.ndarray | None = None,
    ) -> None:
        """Append one trajectory (T, .) collected online, with its robot's (T, 8) parameters when the
        buffer keeps them."""
        if (robot_params is None) == ("robot_params" in self.keys):
            raise ValueError(
                "this buffer keeps each robot's parameters and none were given"
                if robot_params is None
                else "robot parameters given to a buffer that keeps none"
            )
        rows = {"state": state, "action": action, "contacts": contacts, "robot_params": robot_params}
        if len({len(rows[k]) for k in self.keys}) != 1 or len(state) == 0:
            raise ValueError(f"a trajectory needs equally many (>0) rows of {', '.join(self.keys)}")
        if robot_params is not None and (robot_params != robot_params[0]).any():
            raise ValueError("a trajectory's robot parameters must be the same on every row: one robot")
        self._parts.append({k: np.asarray(rows[k], np.float32) for k in self.keys})
        self.collected_rows += len(state)

    @property
    def base_rows(self) -> int:
        """Rows of the pretraining dataset."""
        return len(self.base) if self.base is not None else 0

    @property
    def rows(self) -> int:
        return self.base_rows + self.collected_rows

    def sample(self, batch: int, length: int, online_fraction: float = 0.5) -> dict[str, torch.Tensor]:
        """(batch, length, .) windows; `online_fraction` of them from collected data when there is some."""
        online = [p for p in self._parts if len(p["state"]) >= length]
        n_online = int(round(batch * online_fraction)) if online else 0
        if self.base is None:
            n_online = batch
        pieces: list[dict[str, np.ndarray]] = []
        if batch - n_online > 0:
            starts = self.rng.choice(self.base.windows(length), size=batch - n_online)
            pieces.append(self.base.gather(starts, length))
        if n_online:
            if not online:
                raise ValueError(f"no collected trajectory holds {length} steps")
            lens = np.array([len(p["state"]) - length + 1 for p in online])
            which = self.rng.choice(len(online), size=n_online, p=lens / lens.sum())
            offs = (self.rng.random(n_online) * lens[which]).astype(int)
            pieces.append(self._windows_of([online[w] for w in which], offs, length))
        return {
            k: torch.from_numpy(np.concatenate([np.asarray(p[k], np.float32) for p in pieces]))
            for k in self.keys
        }

    def sample_before_falls(
        self,
        batch: int,
        length: int,
        lookahead: int,
        fallen_gravity_z: float,
        upright_gravity_z: float = 1.0,
        online_fraction: float = 0.5,
    ) -> dict[str, torch.Tensor] | None:
        """(batch, length, .) windows after which the real robot fell: within `lookahead` rows after the
        window, in the same trajectory, its projected gravity z rose above `fallen_gravity_z` (tilted
        past the fall tilt), while every row of the window stayed below `upright_gravity_z`.
        `online_fraction` of them from collected data when it has such windows; None when neither has."""
        rule = (length, lookahead, fallen_gravity_z, upright_gravity_z)
        found = self._fall_windows.setdefault(rule, {"base": None, "parts": []})
        if found["base"] is None:
            found["base"] = (
                windows_before_falls(np.asarray(self.base.state[:, C.GRAVITY_Z]), self.base.offsets, *rule)
                if self.base is not None
                else np.zeros(0, np.int64)
            )
        for part in self._parts[len(found["parts"]) :]:
            gz = part["state"][:, C.GRAVITY_Z]
            found["parts"].append(windows_before_falls(gz, np.array([0, len(gz)]), *rule))
        base, parts = found["base"], found["parts"]
        n_parts = np.array([len(w) for w in parts], dtype=np.int64)
        if len(base) == 0 and n_parts.sum() == 0:
            return None
        n_online = int(round(batch * online_fraction)) if n_parts.sum() else 0
        if len(base) == 0:
            n_online = batch
        pieces: list[dict[str, np.ndarray]] = []
        if batch - n_online > 0:
            pieces.append(self.base.gather(self.rng.choice(base, size=batch - n_online), length))
        if n_online:
            ends = np.cumsum(n_parts)
            picks = self.rng.integers(0, ends[-1], size=n_online)  # uniform over every such window
            which = np.searchsorted(ends, picks, side="right")
            starts = [parts[w][i - ends[w] + n_parts[w]] for w, i in zip(which, picks, strict=True)]
            pieces.append(self._windows_of([self._parts[w] for w in which], starts, length))
        return {
            k: torch.from_numpy(np.concatenate([np.asarray(p[k], np.float32) for p in pieces]))
            for k in self.keys
        }

    def _windows_of(self, trajectories: list[dict], starts, length: int) -> dict[str, np.ndarray]:
        """(B, length, .) rows of collected trajectory b from starts[b]."""
        return {
            k: np.stack([t[k][s : s + length] for t, s in zip(trajectories, starts, strict=True)])
            for k in self.keys
        }

    def collected_tensors(self) -> dict[str, torch.Tensor]:
        """The rows added online with each trajectory's length, as tensors (a resumable loop saves them
        with `torch.save` and reads them back with `weights_only=True`)."""
        out = {"lengths": torch.tensor([len(p["state"]) for p in self._parts], dtype=torch.int64)}
        for k in self.keys:
            out[k] = (
                torch.from_numpy(np.concatenate([p[k] for p in self._parts]))
                if self._parts
                else torch.zeros(0)
            )
        return out

    def add_collected(self, tensors: dict[str, torch.Tensor]) -> None:
        """Add back what `collected_tensors` returned, trajectory by trajectory."""
        if missing := [k for k in self.keys if k not in tensors]:
            raise ValueError(f"the saved rows lack {missing}, which this buffer keeps")
        ends = np.cumsum(tensors["lengths"].numpy())
        for start, end in zip(np.concatenate([[0], ends[:-1]]), ends, strict=True):
            self.add(*(tensors[k][start:end].numpy() for k in self.keys))


class TrajectoryRecorder:
    """The ongoing trajectories of N real robots, row by row: each goes to the buffer as one piece when
    its robot's episode ends, or at `flush_all` (the end of a loop's round), so that the model learns
    from a round's data before the next one even when the robots' episodes run on."""

    def __init__(self, buffer: ReplayBuffer, num_robots: int) -> None:
        self.buffer = buffer
        self._rows: list[list[dict[str, np.ndarray]]] = [[] for _ in range(num_robots)]
        self.pieces: list[dict[str, np.ndarray]] = []
        """Every piece handed to the buffer since the last `pop_pieces`."""

    def add(
        self,
        state: np.ndarray,
        action: np.ndarray,
        contacts: np.ndarray,
        robot_params: np.ndarray,
        done: np.ndarray,
    ) -> None:
        """One step of every robot: the state and contacts it acted from, the joint targets it got,
        its parameters (read before the step that may reset it) and whether its episode ended."""
        for i, rows in enumerate(self._rows):
            row = {"state": state[i], "action": action[i], "contacts": contacts[i]}
            row["robot_params"] = robot_params[i]
            rows.append(row)
            if done[i]:
                self._flush(i)

    def _flush(self, i: int) -> None:
        rows = self._rows[i]
        if rows:
            piece = {k: np.stack([row[k] for row in rows]) for k in self.buffer.keys}
            self.buffer.add(**piece)
            self.pieces.append(piece)
            self._rows[i] = []

    def flush_all(self) -> None:
        """Hand every robot's rows so far to the buffer (its trajectory goes on as a new piece)."""
        for i in range(len(self._rows)):
            self._flush(i)

    def pop_pieces(self) -> list[dict[str, np.ndarray]]:
        """The pieces handed to the buffer since the last call."""
        pieces, self.pieces = self.pieces, []
        return pieces


def windows_before_falls(
    gravity_z: np.ndarray,
    offsets: np.ndarray,
    length: int,
    lookahead: int,
    fallen_gravity_z: float,
    upright_gravity_z: float = 1.0,
) -> np.ndarray:
    """Start rows of the windows of `length` rows, each inside one trajectory (rows `offsets[i]` to
    `offsets[i + 1]`), whose every row has projected gravity z below `upright_gravity_z` and after which
    it rises above `fallen_gravity_z` within `lookahead` rows of the same trajectory."""
    found = []
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        rows = int(b - a)
        if rows <= length:
            continue
        g = gravity_z[a:b]
        fallen = np.concatenate([[0], np.cumsum(g > fallen_gravity_z)])
        tilted = np.concatenate([[0], np.cumsum(g >= upright_gravity_z)])
        start = np.arange(rows - length + 1)
        end = start + length
        ahead = fallen[np.minimum(end + lookahead, rows)] - fallen[end]
        upright = tilted[end] == tilted[start]
        found.append(int(a) + start[(ahead > 0) & upright])
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, np.int64)
