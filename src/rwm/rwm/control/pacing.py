"""Which robot states drive the 50 Hz loop, free of ROS so that tests drive it with a fake clock.

The robot streams joint states at 400 Hz; the policy steps at 50 Hz on the state that is due: the
first one, then each whose stamp is a period after the last one used (1 in 8), a sixteenth of a
period early still counting (the stream's jitter). When no state is accepted for 1.5 periods (none
arrive, or all are rejected) the loop ticks on its own, so that its watchdog acts.
"""

from __future__ import annotations

import math


class StatePacer:
    """Stamps in ns (the states' own clock); `now` and tick times in s (the loop's monotonic clock)."""

    def __init__(self, period_s: float, early_fraction: float = 1 / 16, backup_periods: float = 1.5) -> None:
        if not period_s > 0.0 or not math.isfinite(period_s):
            raise ValueError(f"the period must be a positive number of seconds, got {period_s}")
        self.period_ns = round(period_s * 1e9)
        self.early_ns = round(self.period_ns * early_fraction)
        self.backup_s = backup_periods * period_s
        self.next_stamp_ns: int | None = None
        """The stamp from which a state is due (None: the next state is)."""

    def due(self, stamp_ns: int) -> bool:
        """Whether the state stamped `stamp_ns` drives the next tick. Stamps that jump back by more
        than a period (a clock step, a driver restart) restart the grid instead of waiting for it."""
        if self.next_stamp_ns is None or stamp_ns < self.next_stamp_ns - 2 * self.period_ns:
            return True
        return stamp_ns >= self.next_stamp_ns - self.early_ns

    def used(self, stamp_ns: int) -> None:
        """The state stamped `stamp_ns` drove a tick: the next one is due a period later."""
        self.next_stamp_ns = stamp_ns + self.period_ns

    def backup_due(self, now: float, last_tick: float) -> bool:
        """No state drove a tick for too long: tick without one (the watchdog then holds)."""
        return now - last_tick > self.backup_s

    def wait_s(self, now: float, last_tick: float) -> float:
        """How long to wait for a state before the backup tick is due (at least 1 ms)."""
        return max(last_tick + self.backup_s - now, 0.001)
