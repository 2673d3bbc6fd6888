"""A real-time schedule on an absolute clock grid, free of ROS so that tests can drive it with a fake clock.

Why not an rclpy timer: at 400 Hz a timer fires late by its own callback time plus the executor's
overhead, and each late tick pushes the next one; over a minute the simulation drifts behind the
wall clock. Deadlines here lie on a fixed grid `t0 + k * period`: a late tick does not move later
ones, and when the loop wakes late it runs every tick that fell due, so that the real-time factor
stays 1.00 over time. Only when it falls hopelessly behind (more than `max_lag`, e.g. the process was
stopped) does it drop the backlog and re-anchor the grid, counting the time it lost.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_PR_SET_NAME = 15
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


@dataclass
class ScheduleStats:
    """What the schedule has done so far; plain numbers for diagnostics."""

    ticks: int = 0
    """Ticks run."""
    late_ticks: int = 0
    """Ticks run one period or more after their deadline (caught up in a burst)."""
    max_lateness_s: float = 0.0
    """Largest delay between a deadline and the start of its tick, s."""
    slips: int = 0
    """Times the backlog exceeded `max_lag` and was dropped."""
    slipped_s: float = 0.0
    """Schedule time dropped by slips, s (simulated time that did not happen)."""


class RealTimeSchedule:
    """Deadlines `t0 + (k + 1) * period` for ticks k = 0, 1, ...: tick k is due when its result's time comes.

    Use: `start()`, then repeatedly `n = due(now)`; run n ticks (each with `deadline()` as the time its
    result stands for, then `advance()`); when n is 0, sleep `time_to_next(now)`.
    """

    def __init__(
        self, period_s: float, max_lag_s: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not period_s > 0.0 or not math.isfinite(period_s):
            raise ValueError(f"period must be a positive finite number of seconds, got {period_s}")
        if max_lag_s < period_s:
            raise ValueError(f"max_lag_s ({max_lag_s}) must be at least one period ({period_s})")
        self.period_s = period_s
        """Wall-clock time between ticks, s."""
        self.max_lag_s = max_lag_s
        """Backlog beyond which ticks are dropped instead of caught up, s."""
        self.clock = clock
        """Monotonic clock, s."""
        self.t0 = 0.0
        """Grid origin (moves forward only on a slip)."""
        self.start_time = 0.0
        """Clock reading at `start()`."""
        self.k = 0
        """Index of the next tick."""
        self.stats = ScheduleStats()
        """Counters since `start()`."""

    def start(self, now: float | None = None) -> None:
        """Anchor the grid at `now` (default: the clock); the first tick is due one period later."""
        self.t0 = self.clock() if now is None else now
        self.start_time = self.t0
        self.k = 0
        self.stats = ScheduleStats()

    def deadline(self) -> float:
        """When the next tick is due (clock time)."""
        return self.t0 + (self.k + 1) * self.period_s

    def due(self, now: float) -> int:
        """Number of ticks due at `now` (0: sleep); drops the backlog when it exceeds `max_lag_s`."""
        lag = now - self.deadline()
        if lag < 0.0:
            return 0
        n = int(lag // self.period_s) + 1
        if lag > self.max_lag_s:
            dropped = n - 1
            self.t0 += dropped * self.period_s
            self.stats.slips += 1
            self.stats.slipped_s += dropped * self.period_s
            return 1
        return n

    def advance(self, now: float) -> None:
        """Mark the next tick as run; `now` is when it started, for the lateness figures."""
        lateness = now - self.deadline()
        s = self.stats
        s.ticks += 1
        if lateness >= self.period_s:
            s.late_ticks += 1
        if lateness > s.max_lateness_s:
            s.max_lateness_s = lateness
        self.k += 1

    def time_to_next(self, now: float) -> float:
        """Seconds until the next deadline (never negative)."""
        return max(self.deadline() - now, 0.0)

    def real_time_factor(self, now: float) -> float:
        """Schedule time run over clock time elapsed since `start()` (1.0 when keeping up)."""
        elapsed = now - self.start_time
        return self.k * self.period_s / elapsed if elapsed > 0.0 else 0.0


class WallClockMap:
    """Monotonic clock time (the schedule's) to ROS time (the system clock's ns), re-anchored when the
    system clock steps.

    Why: the schedule runs on the monotonic clock, which nothing steps; every other node stamps and
    compares with the system clock, which NTP or a virtual machine resumed from a snapshot can step.
    In the hour's soak of 12-06 this machine's system clock jumped 22.5 s ahead of the monotonic one
    (the kernel logged a virtual machine fork), and every state the simulator stamped from then on
    lay 22.5 s in the past. So `check()` re-reads the offset between the clocks and takes the map anew
    when it moved by more than `step_tolerance_s`; between steps, stamps keep the schedule's grid.
    A reading that took longer than `max_read_s` (the thread was preempted between the clocks) is
    not trusted.
    """

    def __init__(
        self,
        step_tolerance_s: float = 1e-3,
        max_read_s: float = 50e-6,
        wall_ns: Callable[[], int] = time.time_ns,
        mono_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.step_tolerance_ns = round(step_tolerance_s * 1e9)
        self.max_read_ns = round(max_read_s * 1e9)
        self.wall_ns, self.mono_ns = wall_ns, mono_ns
        self.mono_ref_s = 0.0
        """Monotonic time of the map's origin, s."""
        self.offset_ns = 0
        """System clock minus monotonic clock at the last anchoring, ns."""
        self.steps = 0
        """Times the system clock stepped past the tolerance and the map was taken anew."""
        self.last_step_ns = 0
        """Size of the last such step, ns (positive: the system clock jumped ahead)."""

    def _offset(self) -> int | None:
        """System minus monotonic clock, ns; None when the reading was interrupted."""
        w0 = self.wall_ns()
        m = self.mono_ns()
        w1 = self.wall_ns()
        if abs(w1 - w0) > self.max_read_ns:
            return None
        return (w0 + w1) // 2 - m

    def anchor(self, mono_ref_s: float, attempts: int = 100) -> None:
        """Take the map with origin `mono_ref_s` (monotonic s, e.g. the schedule's t0)."""
        for _ in range(attempts):
            if (offset := self._offset()) is not None:
                self.mono_ref_s, self.offset_ns = mono_ref_s, offset
                return
        raise RuntimeError(f"could not read the system and monotonic clocks within {self.max_read_ns} ns")

    def check(self) -> bool:
        """Re-anchor if the system clock stepped since the map was taken; True when it did."""
        offset = self._offset()
        if offset is None or abs(offset - self.offset_ns) <= self.step_tolerance_ns:
            return False
        self.last_step_ns = offset - self.offset_ns
        self.offset_ns = offset
        self.steps += 1
        return True

    def to_wall_ns(self, mono_s: float) -> int:
        """The system clock's time, ns, at monotonic time `mono_s`."""
        return round(self.mono_ref_s * 1e9) + self.offset_ns + round((mono_s - self.mono_ref_s) * 1e9)


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` (its first 15 bytes) in the kernel's view (`top -H`, /proc).

    Why: Python threads otherwise all carry the executable's name, so a measurement of which thread
    of a node uses the CPU (bench/bench_startup.py) cannot tell the control loop from the executor.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _fifo(priority: int, wanted: Callable[[str], bool] | None = None) -> int | None:
    """SCHED_FIFO at `priority` for the threads of this process whose kernel name `wanted` accepts
    (None: every thread); how many were moved, or None where SCHED_FIFO is not permitted."""
    lo, hi = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
    if not lo <= priority <= hi:
        raise ValueError(f"a SCHED_FIFO priority must be 0 (off) or {lo}..{hi}, got {priority}")
    param = os.sched_param(priority)
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except FileNotFoundError:  # not Linux
        tids = [0]
    moved = 0
    for tid in tids:
        try:
            if wanted is not None and not wanted(Path(f"/proc/self/task/{tid}/comm").read_text().strip()):
                continue
            os.sched_setscheduler(tid, os.SCHED_FIFO, param)
            moved += 1
        except (ProcessLookupError, FileNotFoundError):  # the thread ended meanwhile
            continue
        except PermissionError:
            return None
    return moved


def set_realtime_priority(priority: int) -> str:
    """Put every thread of this process under SCHED_FIFO at `priority` (1-99; 0 leaves it as it is).

    Why: on 2 cores a data logger or a training job at normal priority otherwise delays the 50 Hz path
    by tens of milliseconds. The DDS middleware's receive threads exist once rclpy is initialized, so
    all threads of the process are moved (from /proc/self/task), and threads started later inherit the
    policy (no SCHED_RESET_ON_FORK: it applies to every clone, threads included). Processes forked
    later inherit it too: a real-time node must not start subprocesses. Needs CAP_SYS_NICE (root, or
    `ulimit -r`); without it the process keeps its normal schedule and the returned text says so, so
    that a node can report it instead of failing.
    """
    if priority == 0:
        return "normal scheduling (realtime_priority 0)"
    moved = _fifo(priority)
    if moved is None:
        return f"normal scheduling: SCHED_FIFO {priority} not permitted (needs CAP_SYS_NICE)"
    return f"SCHED_FIFO priority {priority} on {moved} threads"


SHARED_MEMORY_THREADS = "dds.shm."
"""Kernel names of Fast DDS's shared-memory threads: a port's listener (`dds.shm.<port>`) and the
transport's watchdog (`dds.shm.wdog`)."""


def set_middleware_priority(priority: int) -> str:
    """Put only this process's Fast DDS shared-memory threads under SCHED_FIFO at `priority` (0: off);
    the node's own threads keep their normal schedule.

    Why: a writer delivering into a reader's shared-memory port takes locks it shares with that
    reader's listener thread (Boost interprocess mutexes, without priority inheritance: Fast DDS's
    `SharedMemGlobal::Port::try_push`). A listener of a normal-priority node, preempted while it holds
    one, holds up the writer, the real-time simulator, until the scheduler comes back to it. A soak
    saw the simulator wait 67 ms inside `publish()` while a SCHED_FIFO 99 thread on both CPUs never
    woke more than 13.7 ms late (docs/latency/README.md). The listeners do little work; at a real-time
    priority they release such a lock at once.
    """
    if priority == 0:
        return "middleware threads: normal scheduling (middleware_priority 0)"
    moved = _fifo(priority, lambda name: name.startswith(SHARED_MEMORY_THREADS))
    if moved is None:
        return f"middleware threads: SCHED_FIFO {priority} not permitted (needs CAP_SYS_NICE)"
    if moved == 0:
        return f"middleware threads: none named {SHARED_MEMORY_THREADS}* (no Fast DDS shared memory)"
    return f"middleware threads: SCHED_FIFO priority {priority} on {moved} Fast DDS shared-memory threads"


class SlackCollector:
    """Python's garbage collection at moments the control loop chooses, not at whatever allocation
    happens to cross the threshold.

    Measured in the policy node: automatic generation-1 passes of up to 1 ms, several per 20 s, landing
    between a joint state and its command. With this, automatic collection is off in the process; the
    loop counts its ticks with `tick()` and calls `collect()` once its output is out, in the slack
    before the next period: the young generations every `young_every` ticks, a full pass every
    `full_every` (cycles are still freed); a collection that falls due while the loop has no slack
    waits for the next call. Start-up objects are frozen first, so that a full pass scans only what the
    node made since. `close()` gives the process its automatic collection back.
    """

    def __init__(self, young_every: int = 1, full_every: int = 3000) -> None:
        if young_every < 1 or full_every < young_every:
            raise ValueError(f"need 1 <= young_every <= full_every, got {young_every}, {full_every}")
        self.young_every = young_every
        """Ticks between collections of generations 0 and 1."""
        self.full_every = full_every
        """Ticks between full collections."""
        self.ticks = 0
        """Ticks counted so far."""
        self._young_due = self._full_due = 0
        self._was_enabled = gc.isenabled()
        gc.disable()
        gc.freeze()

    def tick(self, n: int = 1) -> None:
        """Count `n` ticks of the loop."""
        self.ticks += n

    def collect(self) -> None:
        """Run the collection that has fallen due, if any (cheap when none has)."""
        full = self.ticks // self.full_every
        if full != self._full_due:
            self._full_due, self._young_due = full, self.ticks // self.young_every
            gc.collect(2)
            return
        young = self.ticks // self.young_every
        if young != self._young_due:
            self._young_due = young
            gc.collect(1)

    def close(self) -> None:
        """Automatic collection as before (e.g. when a node is destroyed inside a longer process)."""
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()


class ArrivalWindow:
    """The last `capacity` arrivals of a stream: (monotonic s, wall s, stamp ns), preallocated.

    A receiver records each message's stamp on arrival at no allocation; `arrays()` gives the window in
    order for latency and jitter figures (`timing_summary`) over a bounded, recent span.
    """

    def __init__(self, capacity: int = 3000) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        self._mono = np.zeros(capacity)
        self._wall = np.zeros(capacity)
        self._stamp = np.zeros(capacity, dtype=np.int64)
        self.count = 0
        """Arrivals recorded since the start (the window holds the last `capacity`)."""

    def add(self, stamp_ns: int, mono_s: float, wall_s: float) -> None:
        i = self.count % len(self._stamp)
        self._mono[i], self._wall[i], self._stamp[i] = mono_s, wall_s, stamp_ns
        self.count += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(arrival monotonic s, arrival wall s, stamp ns) of the window, oldest first (copies)."""
        cap = len(self._stamp)
        if self.count <= cap:
            order = np.arange(self.count)
        else:
            order = (np.arange(cap) + self.count) % cap
        return self._mono[order], self._wall[order], self._stamp[order]


def timing_summary(
    arrival_s: np.ndarray, stamp_ns: np.ndarray, wall_s: np.ndarray | None = None, window_s: float = 1.0
) -> dict[str, float]:
    """Rate, stamp regularity and real-time factor of one topic.

    rate_hz: messages per second of arrival time; rate_min_hz/rate_max_hz: over whole `window_s` windows.
    stamp_interval_*: between consecutive stamps (the simulated step, if the publisher keeps up).
    real_time_factor: stamp span over arrival span (sim time over wall time when stamps carry it).
    latency_*: arrival wall time minus stamp (only meaningful when stamps are wall-clock ROS time).
    """
    n = len(arrival_s)
    out: dict[str, float] = {"count": float(n)}
    if n < 2:
        return out
    span = float(arrival_s[-1] - arrival_s[0])
    stamps = (stamp_ns - stamp_ns[0]).astype(np.float64) * 1e-9
    out["duration_s"] = span
    out["rate_hz"] = (n - 1) / span if span > 0 else float("nan")
    n_win = int(span // window_s)
    if n_win >= 1:
        edges = arrival_s[0] + window_s * np.arange(n_win + 1)
        counts = np.diff(np.searchsorted(arrival_s, edges))
        out["rate_min_hz"] = float(counts.min() / window_s)
        out["rate_max_hz"] = float(counts.max() / window_s)
        out["windows"] = float(n_win)
    d_stamp = np.diff(stamps)
    out["stamp_interval_mean_ms"] = float(d_stamp.mean() * 1e3)
    out["stamp_interval_std_ms"] = float(d_stamp.std() * 1e3)
    out["stamp_interval_max_ms"] = float(d_stamp.max() * 1e3)
    d_arr = np.diff(arrival_s)
    out["arrival_interval_std_ms"] = float(d_arr.std() * 1e3)
    out["arrival_interval_p99_ms"] = float(np.percentile(d_arr, 99) * 1e3)
    out["arrival_interval_max_ms"] = float(d_arr.max() * 1e3)
    out["arrival_jitter_p99_ms"] = float(np.percentile(np.abs(d_arr - np.median(d_arr)), 99) * 1e3)
    out["real_time_factor"] = float(stamps[-1] / span) if span > 0 else float("nan")
    if wall_s is not None:
        lat = wall_s - stamp_ns.astype(np.float64) * 1e-9
        out["latency_mean_ms"] = float(lat.mean() * 1e3)
        out["latency_p50_ms"] = float(np.percentile(lat, 50) * 1e3)
        out["latency_p99_ms"] = float(np.percentile(lat, 99) * 1e3)
        out["latency_max_ms"] = float(lat.max() * 1e3)
    return out
