"""What a wake-up of rclpy's executor costs in CPU, the reason the stack's 50 Hz work runs in node threads.

Two cases, each for --seconds on this thread's CPU clock (`RUSAGE_THREAD`):
- the state publisher node (its parameter services, publishers and subscriptions) with a 50 Hz timer
  that does nothing, spun by a SingleThreadedExecutor: the executor's cost per timer wake-up;
- a bare node spun with a timeout of 0.1 s and 0.5 s and nothing to do: what `rwm_ros.spin`'s look for
  a counted signal costs an idle node.

Prints JSON: CPU per wake-up (ms) and as a share of a core.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor

from rwm_ros.state_publisher_node import StatePublisherNode


def _thread_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime


def _spin(executor: SingleThreadedExecutor, seconds: float, timeout_s: float) -> dict[str, float]:
    start, cpu0, wakeups = time.monotonic(), _thread_cpu_s(), 0
    while time.monotonic() - start < seconds:
        executor.spin_once(timeout_sec=timeout_s)
        wakeups += 1
    cpu = _thread_cpu_s() - cpu0
    return {
        "wakeups_per_s": round(wakeups / seconds, 1),
        "cpu_ms_per_wakeup": round(1e3 * cpu / wakeups, 3),
        "cpu_percent_of_a_core": round(100 * cpu / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rclpy.init()
    result = {}
    node = StatePublisherNode()
    for worker in node.workers:  # its own /tf thread is not what is measured here
        worker.stop()
    node.create_timer(0.02, lambda: None)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    result["state_publisher_node_50hz_timer"] = _spin(executor, args.seconds, 1.0)
    executor.remove_node(node)
    node.destroy_node()
    bare = rclpy.create_node("bare")
    executor.add_node(bare)
    for timeout_s in (0.1, 0.5):
        result[f"idle_node_timeout_{timeout_s}_s"] = _spin(executor, args.seconds, timeout_s)
    executor.shutdown()
    bare.destroy_node()
    rclpy.shutdown()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
