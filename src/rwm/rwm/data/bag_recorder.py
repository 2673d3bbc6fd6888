"""A recorder of serialized messages into a series of rosbag2 (MCAP) files: the replay buffer's writer.

Bags are written under `<dir>/.partial/` and renamed into `<dir>/` when closed, so a reader (the
trainer) only ever sees complete bags. Every `flush_interval_s` the open chunk is closed and the file
synced, and the bag is locked while it is written: a recorder that dies (SIGKILL, power cut) leaves an
orphan in `.partial/` that loses only the last second once recovered (`rwm.data.bag_recovery`).
A new bag starts when the current one reaches `split_duration_s`
or `split_size_mb`. Recording stops (the current bag is closed cleanly) when the free disk space
falls below `min_free_mb`, instead of failing halfway through a write.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rwm.data.bag_recovery import PARTIAL, bag_lock
from rwm.data.bag_writer import BagWriter


@dataclass(frozen=True)
class RecorderConfig:
    """Where and how bags are written (the data logger's parameters of the same names)."""

    directory: str = "replay_buffer"
    """The replay buffer: complete bags appear here, the open one in `.partial/`."""
    prefix: str = "anymal"
    """Bag names: <prefix>_<UTC time>_<index>."""
    split_duration_s: float = field(default=60.0, metadata={"range": (1.0, 86400.0)})
    """Start a new bag after this long, s."""
    split_size_mb: float = field(default=512.0, metadata={"range": (1.0, 1e6)})
    """Start a new bag after this many MB."""
    min_free_mb: float = field(default=1024.0, metadata={"range": (0.0, 1e9)})
    """Stop recording (the bag closed cleanly) below this much free disk, MB."""
    storage: str = "mcap"
    """mcap or sqlite3 (rosbag2's storage plugins)."""
    flush_interval_s: float = field(default=1.0, metadata={"range": (0.05, 60.0)})
    """Close the open chunk and sync the file this often, s: what a killed recorder loses at most."""


class SplitBagRecorder:
    """Not thread-safe: one writer thread calls `write`/`close`."""

    def __init__(self, cfg: RecorderConfig) -> None:
        self.cfg = cfg
        self.directory = Path(cfg.directory)
        self.partial = self.directory / PARTIAL
        self.partial.mkdir(parents=True, exist_ok=True)
        self.bag: BagWriter | None = None
        self.closed_bags: list[Path] = []
        """Complete bags, in order."""
        self.written = 0
        """Messages written in all bags."""
        self.stopped_reason: str | None = None
        """Why recording stopped for good (disk space), else None."""
        self._bag_start_ns = 0
        self._bytes = 0
        self._index = 0
        self._last_disk_check = 0.0
        self._last_flush = 0.0
        self._lock = ExitStack()
        self._latched: dict[str, tuple[str, bytes]] = {}
        """The last message of each latched topic, written again at the start of every split."""
        self.repeated = 0
        """Latched messages written again into later splits (not counted in `written`)."""

    def _open(self, t_ns: int) -> None:
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(t_ns / 1e9))
        name = f"{self.cfg.prefix}_{stamp}_{self._index:04d}"
        self._index += 1
        self.bag = BagWriter(self.partial / name, storage=self.cfg.storage)
        self._lock.enter_context(bag_lock(self.bag.path))
        self.bag.open()
        for topic, (msgtype, cdr) in self._latched.items():  # every split opens with the robot drawn
            self.bag.write_raw(topic, msgtype, cdr, t_ns, latched=True)
            self.repeated += 1
        self._bag_start_ns, self._bytes = t_ns, 0
        self._last_flush = time.monotonic()

    def flush_due(self) -> None:
        """Sync the open bag if `flush_interval_s` has passed (the writer thread calls this often)."""
        if self.bag is not None and time.monotonic() - self._last_flush >= self.cfg.flush_interval_s:
            self.bag.flush()
            self._last_flush = time.monotonic()

    def _disk_ok(self) -> bool:
        now = time.monotonic()
        if now - self._last_disk_check < 1.0:
            return True
        self._last_disk_check = now
        return shutil.disk_usage(self.directory).free / 1e6 >= self.cfg.min_free_mb

    def write(self, topic: str, msgtype: str, cdr: bytes, t_ns: int, latched: bool = False) -> bool:
        """Store one message; False once recording has stopped (disk space). The last message of a
        `latched` topic (the robot description, static transforms) also opens every later split."""
        if self.stopped_reason is not None:
            return False
        if not self._disk_ok():
            free = shutil.disk_usage(self.directory).free / 1e6
            self.stopped_reason = f"free disk space {free:.0f} MB below {self.cfg.min_free_mb:.0f} MB"
            self.close()
            return False
        if self.bag is not None and (
            (t_ns - self._bag_start_ns) / 1e9 >= self.cfg.split_duration_s
            or self._bytes / 1e6 >= self.cfg.split_size_mb
        ):
            self.close()
        if self.bag is None:
            self._open(t_ns)
        if latched:
            self._latched[topic] = (msgtype, cdr)
        self.bag.write_raw(topic, msgtype, cdr, t_ns, latched=latched)
        self._bytes += len(cdr)
        self.written += 1
        self.flush_due()
        return True

    def close(self) -> Path | None:
        """Close the current bag and move it out of .partial; returns its final path."""
        if self.bag is None:
            return None
        bag, self.bag = self.bag, None
        bag.close()
        final = self.directory / bag.path.name
        bag.path.rename(final)
        self._lock.close()
        self.closed_bags.append(final)
        return final
