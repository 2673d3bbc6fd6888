"""The replay buffer of MBPO-PPO: a pretraining dataset (memory-mapped) plus trajectories collected
online, sampled as windows that never cross a trajectory boundary."""

from __future__ import annotations

import numpy as np
import torch

from rwm.data.array_dataset import ArrayDataset


class ReplayBuffer:
    """Real (state, action, contacts) rows; `windows`/`sample` draw fixed-length pieces of trajectories."""

    def __init__(self, base: ArrayDataset | None = None, seed: int = 0) -> None:
        self.base = base
        self.rng = np.random.default_rng(seed)
        self._parts: list[dict[str, np.ndarray]] = []
        self.collected_rows = 0
        """Rows added online (real transitions the loop paid for)."""

    def add(self, state: np.ndarray, action: np.ndarray, contacts: np.ndarray) -> None:
        """Append one trajectory (T, .) collected online."""
        if not (len(state) == len(action) == len(contacts)) or len(state) == 0:
            raise ValueError("a trajectory needs equally many (>0) states, actions and contact rows")
        self._parts.append(
            {
                "state": np.asarray(state, np.float32),
                "action": np.asarray(action, np.float32),
                "contacts": np.asarray(contacts, np.float32),
            }
        )
        self.collected_rows += len(state)

    @property
    def rows(self) -> int:
        return (len(self.base) if self.base is not None else 0) + self.collected_rows

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
            idx = offs[:, None] + np.arange(length)
            pieces.append(
                {
                    k: np.stack([online[w][k][i] for w, i in zip(which, idx, strict=True)])
                    for k in ("state", "action", "contacts")
                }
            )
        return {
            k: torch.from_numpy(np.concatenate([np.asarray(p[k], np.float32) for p in pieces]))
            for k in ("state", "action", "contacts")
        }

    def collected_tensors(self) -> dict[str, torch.Tensor]:
        """The rows added online with each trajectory's length, as tensors (a resumable loop saves them
        with `torch.save` and reads them back with `weights_only=True`)."""
        keys = ("state", "action", "contacts")
        out = {"lengths": torch.tensor([len(p["state"]) for p in self._parts], dtype=torch.int64)}
        for k in keys:
            out[k] = (
                torch.from_numpy(np.concatenate([p[k] for p in self._parts]))
                if self._parts
                else torch.zeros(0)
            )
        return out

    def add_collected(self, tensors: dict[str, torch.Tensor]) -> None:
        """Add back what `collected_tensors` returned, trajectory by trajectory."""
        ends = np.cumsum(tensors["lengths"].numpy())
        for start, end in zip(np.concatenate([[0], ends[:-1]]), ends, strict=True):
            self.add(*(tensors[k][start:end].numpy() for k in ("state", "action", "contacts")))
