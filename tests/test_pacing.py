"""The policy node's pacing, on a fake clock: 1 joint state in 8 drives the 50 Hz loop, a jittery early
state still counts, and without accepted states the loop ticks on its own after 1.5 periods."""

from __future__ import annotations

import pytest

from rwm.control.pacing import StatePacer

PERIOD_NS = 20_000_000
STATE_NS = 2_500_000  # 400 Hz


def test_one_state_in_eight_drives_the_loop() -> None:
    pacer = StatePacer(0.02)
    driven = []
    for k in range(80):
        stamp = 1_000_000_000 + k * STATE_NS
        if pacer.due(stamp):
            pacer.used(stamp)
            driven.append(k)
    assert driven == list(range(0, 80, 8))


def test_a_state_a_little_early_still_counts_but_not_an_earlier_one() -> None:
    pacer = StatePacer(0.02)
    pacer.used(0)
    assert pacer.due(PERIOD_NS - PERIOD_NS // 16)  # stream jitter: 1.25 ms early at 50 Hz
    assert not pacer.due(PERIOD_NS - PERIOD_NS // 16 - 1)
    assert not pacer.due(PERIOD_NS - STATE_NS)  # the state before the due one


def test_backup_tick_after_one_and_a_half_periods_without_a_state() -> None:
    pacer = StatePacer(0.02)
    last_tick = 10.0
    assert not pacer.backup_due(10.029, last_tick) and pacer.backup_due(10.0301, last_tick)
    assert pacer.wait_s(10.0, last_tick) == pytest.approx(0.03)
    assert pacer.wait_s(11.0, last_tick) == 0.001, "never a zero or negative wait"


def test_a_gap_in_the_stream_restarts_the_grid_at_the_next_state() -> None:
    pacer = StatePacer(0.02)
    pacer.used(0)
    later = 7 * PERIOD_NS + 3 * STATE_NS  # states came back off the old grid
    assert pacer.due(later)
    pacer.used(later)
    assert not pacer.due(later + PERIOD_NS - STATE_NS) and pacer.due(later + PERIOD_NS)


def test_stamps_that_jump_back_restart_the_grid() -> None:
    """A clock step or a driver restart: the loop must not wait for the old grid to come round."""
    pacer = StatePacer(0.02)
    pacer.used(100 * PERIOD_NS)
    assert pacer.due(3 * PERIOD_NS), "far behind the last state: a new grid"
    assert not pacer.due(100 * PERIOD_NS - PERIOD_NS // 2), "within a period: the old grid still holds"


def test_bad_periods_are_refused() -> None:
    for period in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="period"):
            StatePacer(period)
