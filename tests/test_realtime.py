"""The real-time schedule on a fake clock: grid deadlines, catch-up, and dropping a hopeless backlog."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rwm_ros.realtime import RealTimeSchedule, WallClockMap

P = 0.0025


def run(s: RealTimeSchedule, now: float) -> int:
    n = s.due(now)
    for _ in range(n):
        s.advance(now)
    return n


def test_ticks_fall_due_on_the_grid_and_late_wakes_do_not_shift_it() -> None:
    s = RealTimeSchedule(P, clock=lambda: 0.0)
    s.start(10.0)
    assert s.due(10.0) == 0 and s.time_to_next(10.0) == pytest.approx(P)
    assert run(s, 10.0 + P) == 1
    # wake 0.4 period late: one tick, and the next deadline stays on the grid
    assert run(s, 10.0 + 2.4 * P) == 1
    assert s.deadline() == pytest.approx(10.0 + 3 * P)
    assert s.stats.late_ticks == 0 and s.stats.max_lateness_s == pytest.approx(0.4 * P)


def test_late_wake_catches_up_every_missed_tick() -> None:
    s = RealTimeSchedule(P)
    s.start(0.0)
    assert run(s, 10.5 * P) == 10  # deadlines P..10P have passed
    assert s.k == 10 and s.stats.late_ticks == 9 and s.stats.slips == 0
    assert s.real_time_factor(10.5 * P) == pytest.approx(10 / 10.5)


def test_real_time_factor_over_a_long_run_is_one_despite_jitter() -> None:
    s = RealTimeSchedule(P)
    s.start(0.0)
    now = 0.0
    while now < 100.0:  # sleep to the deadline, wake up to 1.8 periods late in a repeating pattern
        now = max(now, s.deadline()) + (s.k % 7) * 0.3 * P
        run(s, now)
    assert s.real_time_factor(now) == pytest.approx(1.0, abs=1e-3)
    assert s.stats.slips == 0 and s.stats.late_ticks > 0


def test_backlog_beyond_max_lag_is_dropped_and_counted() -> None:
    s = RealTimeSchedule(P, max_lag_s=0.1)
    s.start(0.0)
    assert run(s, 1.0) == 1  # a 1 s stall: run one tick, drop the rest
    assert s.stats.slips == 1
    assert s.stats.slipped_s == pytest.approx(1.0 - P, abs=P)
    assert s.due(1.0) == 0 and 0 < s.time_to_next(1.0) <= P  # back on a grid near now


@pytest.mark.parametrize("period,max_lag", [(0.0, 0.1), (-1.0, 0.1), (float("inf"), 0.1), (0.01, 0.001)])
def test_rejects_bad_settings(period: float, max_lag: float) -> None:
    with pytest.raises(ValueError):
        RealTimeSchedule(period, max_lag_s=max_lag)


def test_command_mailbox_hands_over_each_command_once() -> None:
    pytest.importorskip("rclpy")
    from rwm_ros.sim_node import CommandMailbox

    box = CommandMailbox()
    out = np.zeros(12)
    assert not box.take(out)
    box.put(np.full(12, 0.3))
    box.put(np.full(12, 0.5))  # only the latest counts
    assert box.take(out) and (out == 0.5).all()
    assert not box.take(out)  # held: nothing new
    assert box.accepted == 2 and box.reject("nan") == 1 and box.rejected == {"nan": 1}


def test_arrival_window_keeps_the_last_arrivals_in_order() -> None:
    from rwm_ros.realtime import ArrivalWindow

    w = ArrivalWindow(capacity=4)
    for i in range(3):
        w.add(100 + i, float(i), 10.0 + i)
    mono, wall, stamps = w.arrays()
    assert mono.tolist() == [0.0, 1.0, 2.0] and stamps.tolist() == [100, 101, 102]
    for i in range(3, 7):  # wraps: only the last 4 remain, oldest first
        w.add(100 + i, float(i), 10.0 + i)
    mono, wall, stamps = w.arrays()
    assert w.count == 7 and stamps.tolist() == [103, 104, 105, 106]
    assert wall.tolist() == [13.0, 14.0, 15.0, 16.0]
    with pytest.raises(ValueError):
        ArrivalWindow(capacity=1)


def test_slack_collector_turns_automatic_collection_off_and_collects_on_schedule() -> None:
    import gc

    from rwm_ros.realtime import SlackCollector

    with pytest.raises(ValueError):
        SlackCollector(young_every=0)
    collected: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "stop":
            collected.append(info["generation"])

    gc.callbacks.append(record)
    c = SlackCollector(young_every=2, full_every=6)
    try:
        assert not gc.isenabled()
        c.tick()
        c.collect()
        assert collected == [], "nothing due after 1 tick"
        c.tick(3)  # a catch-up burst: the young pass it made due waits for the call
        assert collected == []
        c.collect()
        c.collect()
        assert collected == [1], "one young pass, however many calls"
        c.tick(2)
        c.collect()
        assert collected == [1, 2], "a full pass on tick 6"
    finally:
        gc.callbacks.remove(record)
        c.close()
    assert gc.isenabled(), "close() gives the process its automatic collection back"


def test_realtime_priority_is_validated_and_applied_to_every_thread() -> None:
    import subprocess
    import sys

    from rwm_ros.realtime import set_realtime_priority

    assert set_realtime_priority(0).startswith("normal scheduling")
    with pytest.raises(ValueError):
        set_realtime_priority(100)
    # In a child process, so that the test runner itself never runs real-time.
    code = (
        "import os, threading, time; from rwm_ros.realtime import set_realtime_priority as s; "
        "before = threading.Thread(target=time.sleep, args=(1,)); before.start(); print(s(5)); "
        "after = threading.Thread(target=time.sleep, args=(1,)); after.start(); "
        "print(*(os.sched_getscheduler(t) for t in (before.native_id, 0, after.native_id)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    text, policies = out.splitlines()
    if "not permitted" in text:
        pytest.skip("SCHED_FIFO is not permitted on this machine (needs CAP_SYS_NICE)")
    fifo = str(os.SCHED_FIFO)
    assert text.startswith("SCHED_FIFO priority 5 on ")
    assert policies.split() == [fifo, fifo, fifo], "threads before and after the call, and the caller"


def test_middleware_priority_moves_only_the_shared_memory_threads(monkeypatch) -> None:
    import threading
    import time

    from rwm_ros import realtime

    assert realtime.set_middleware_priority(0).startswith("middleware threads: normal scheduling")
    with pytest.raises(ValueError):
        realtime.set_middleware_priority(100)
    moved: list[tuple[int, int, int]] = []
    monkeypatch.setattr(
        os, "sched_setscheduler", lambda tid, policy, p: moved.append((tid, policy, p.sched_priority))
    )
    stop = threading.Event()

    def named(name: str) -> None:
        realtime.name_os_thread(name)
        stop.wait()

    # One thread named as Fast DDS names a port listener, one as its UDP receiver.
    threads = [threading.Thread(target=named, args=(n,)) for n in ("dds.shm.7411", "dds.udp.7411")]
    for t in threads:
        t.start()
    try:
        time.sleep(0.1)
        text = realtime.set_middleware_priority(5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    tids = {tid for tid, _, _ in moved}  # the runner may hold listeners of its own (rclpy tests)
    assert threads[0].native_id in tids, "the shared-memory listener"
    assert threads[1].native_id not in tids and threading.get_native_id() not in tids, "nothing else"
    assert {(policy, priority) for _, policy, priority in moved} == {(os.SCHED_FIFO, 5)}
    assert text == f"middleware threads: SCHED_FIFO priority 5 on {len(moved)} Fast DDS shared-memory threads"


class SteppedClocks:
    """A system and a monotonic clock in ns that advance together until the system one is stepped."""

    def __init__(self) -> None:
        self.mono = 5_000_000_000
        self.offset = 1_796_000_000_000_000_000
        self.read_ns = 0
        """How far the clocks advance during each reading (a preempted reader sees a large one)."""

    def wall_ns(self) -> int:
        self.mono += self.read_ns
        return self.mono + self.offset

    def mono_ns(self) -> int:
        return self.mono


def test_wall_clock_map_follows_a_step_of_the_system_clock_and_keeps_the_grid_otherwise() -> None:
    c = SteppedClocks()
    m = WallClockMap(wall_ns=c.wall_ns, mono_ns=c.mono_ns)
    m.anchor(5.0)
    stamps = [m.to_wall_ns(5.0 + (k + 1) * P) for k in range(4)]
    assert np.all(np.diff(stamps) == round(P * 1e9))  # exactly on the grid
    assert stamps[0] == c.offset + 5_000_000_000 + round(P * 1e9)
    c.mono += 10_000_000
    c.offset += 300_000  # a step within the tolerance (a reading's noise): the grid stays
    assert not m.check() and m.steps == 0
    c.offset += 22_500_000_000  # the 12-06 soak: the system clock jumped 22.5 s ahead
    assert m.check() and m.steps == 1 and m.last_step_ns == 22_500_300_000
    deadline = 5.0 + 20 * P
    assert m.to_wall_ns(deadline) == round(deadline * 1e9) + c.offset  # stamps follow the system clock
    assert m.to_wall_ns(deadline + P) - m.to_wall_ns(deadline) == round(P * 1e9)
    assert not m.check()  # one step, one re-anchoring
    c.offset -= 3_000_000_000  # a step back is followed too
    assert m.check() and m.last_step_ns == -3_000_000_000


def test_wall_clock_map_does_not_trust_a_reading_interrupted_between_the_clocks() -> None:
    c = SteppedClocks()
    m = WallClockMap(wall_ns=c.wall_ns, mono_ns=c.mono_ns)
    m.anchor(5.0)
    c.read_ns = 40_000_000  # preempted for 40 ms inside the reading: its offset would be off by 40 ms
    assert not m.check() and m.steps == 0
    with pytest.raises(RuntimeError, match="could not read"):
        WallClockMap(wall_ns=c.wall_ns, mono_ns=c.mono_ns).anchor(5.0, attempts=3)
