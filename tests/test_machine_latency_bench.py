"""bench/bench_machine_latency.py reads cyclictest's histogram as rt-tests writes it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_machine_latency", Path(__file__).resolve().parents[1] / "bench" / "bench_machine_latency.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# cyclictest --histogram=4 --smp on two CPUs: zero-padded µs bins, tab-separated, then its summary.
HISTOGRAM = """# /dev/cpu_dma_latency set to 0us
# Histogram
000000\t000000\t000000
000001\t000090\t000010
000002\t000008\t000080
000003\t000001\t000005
# Total: 000100 000100
# Min Latencies: 00001 00001
# Avg Latencies: 00001 00002
# Max Latencies: 00003 07000
# Histogram Overflows: 00001 00005
# Histogram Overflow at cycle number:
# Thread 0:
# Thread 1: 00012 00013 00014 00015 00016
"""


def test_histogram_counts_overflows_as_the_latest_wakeups() -> None:
    counts, maxima = bench.parse_histogram(HISTOGRAM)
    assert maxima == [3, 7000]
    assert counts.shape == (5, 2), "4 µs bins and the overflows"
    assert counts[:, 1].tolist() == [0, 10, 80, 5, 5]
    merged = counts.sum(1)  # 200 wake-ups: 99 in range + 1 late on CPU 0, 95 + 5 late on CPU 1
    assert bench.percentiles_us(merged, (0.5, 0.9, 0.99)) == [1, 2, 4], "p99 lies among the overflows"
    assert bench.percentiles_us(np.array([0, 10, 0]), (0.5,)) == [1]


def test_a_file_without_a_histogram_is_refused() -> None:
    with pytest.raises(ValueError, match="no histogram"):
        bench.parse_histogram("# /dev/cpu_dma_latency set to 0us\n")
