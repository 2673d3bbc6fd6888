"""How each node of the launched stack stops: its exit code and the time from the signal to its exit.

The whole stack (sim, policy, command sequence, logger, world model, trainer; or the exploration
controller with --exploration) is started with `ros2 launch rwm_bringup anymal.launch.py`, left to
record for a few seconds, then stopped one of three ways:
- terminal: SIGINT to the whole process group, as Ctrl-C in a terminal (launch forwards a second one);
- launch: one SIGINT to `ros2 launch`, which forwards it to every node;
- sigterm: SIGTERM to every node (as a supervisor would), then launch shuts the rest down;
- sigkill_logger: SIGKILL to the data logger (a crash), then `rwm.data.bag_recovery` on what it left.
It prints JSON per case: each node's exit code (from launch's log) and shutdown time (polled), and
whether the bag is complete; for sigkill_logger, the seconds recovered and lost before the kill.
Goals (issue 14): every node exits 0 within 5 s and every bag is complete; a killed logger loses at
most 1.5 s.

    python bench/bench_shutdown.py [--record-s 5] [--cases terminal launch sigterm sigkill_logger]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm"), str(ROOT / "src" / "rwm_ros")]

import psutil  # noqa: E402
from mcap.reader import make_reader  # noqa: E402

from rwm.data.bag_recovery import recover_orphans  # noqa: E402
from rwm_ros.launch_stack import launch_command, node_exits, source_env  # noqa: E402


def _node_pids(launch_pid: int) -> dict[str, int]:
    """Node name -> pid of every process launch started (the trainer runs under `nice`)."""
    out = {}
    for proc in psutil.Process(launch_pid).children(recursive=True):
        try:
            words = proc.cmdline()
        except psutil.Error:
            continue
        for w in words:
            if w.startswith("__node:="):
                out[w.split(":=", 1)[1]] = proc.pid
    return out


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _recovered(bags: Path, killed_at: float, launch: subprocess.Popen) -> dict:
    """What recovery gets back of the bag a killed logger left."""
    rc = launch.wait(timeout=30)
    (recovery,) = recover_orphans(bags)
    with open(next(recovery.bag.glob("*.mcap")), "rb") as f:
        stats = make_reader(f).get_summary().statistics
    first, last = stats.message_start_time / 1e9, stats.message_end_time / 1e9
    return {
        "launch_exit_code": rc,
        "recovered_s": round(last - first, 3),
        "lost_before_kill_s": round(killed_at - last, 3),
        "messages": recovery.messages,
        "recovery": str(recovery),
        "goal_met": rc != 0 and killed_at - last <= 1.5,
    }


def run_case(case: str, record_s: float, exploration: bool, domain: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"shutdown_{case}_"))
    args = {"bag_dir": work / "bags", "world_model": not exploration, "trainer": not exploration}
    if exploration:
        args["policy"] = False
    log_path = work / "launch.log"
    with open(log_path, "w") as log:
        launch = subprocess.Popen(
            launch_command(**args),
            env=source_env(domain),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while "[data_logger]: recording" not in log_path.read_text():
        if time.monotonic() > deadline or launch.poll() is not None:
            return {"error": "the stack did not start", "log": log_path.read_text()[-2000:]}
        time.sleep(0.1)
    time.sleep(record_s)
    pids = _node_pids(launch.pid)
    t0 = time.monotonic()
    if case == "sigkill_logger":
        os.kill(pids["data_logger"], signal.SIGKILL)
        return _recovered(work / "bags", time.time(), launch)
    if case == "terminal":
        os.killpg(launch.pid, signal.SIGINT)
    elif case == "launch":
        launch.send_signal(signal.SIGINT)
    else:
        for pid in pids.values():
            os.kill(pid, signal.SIGTERM)
    stopped: dict[str, float] = {}
    while len(stopped) < len(pids) and time.monotonic() - t0 < 30:
        for name, pid in pids.items():
            if name not in stopped and _gone(pid):
                stopped[name] = round(time.monotonic() - t0, 3)
        time.sleep(0.005)
    rc = launch.wait(timeout=30)
    out = log_path.read_text()
    bags = [p for p in (work / "bags").iterdir() if p.is_dir() and not p.name.startswith(".")]
    partial = [p for p in (work / "bags" / ".partial").iterdir() if p.is_dir()]
    return {
        "launch_exit_code": rc,
        "shutdown_s": stopped,
        "exit_codes": node_exits(out),
        "complete_bags": len(bags),
        "bags_with_metadata": sum((b / "metadata.yaml").is_file() for b in bags),
        "partial_bags": len(partial),
        "goal_met": rc == 0
        and len(stopped) == len(pids)
        and max(stopped.values()) <= 5.0
        and not any(node_exits(out).values())
        and len(bags) == 1
        and not partial,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record-s", type=float, default=5.0, help="recording time before the stop, s")
    ap.add_argument("--cases", nargs="+", default=["terminal", "launch", "sigterm", "sigkill_logger"])
    ap.add_argument("--exploration", action="store_true", help="policy:=false (the exploration controller)")
    ap.add_argument("--domain", type=int, default=80 + os.getpid() % 10)
    a = ap.parse_args()
    results = {case: run_case(case, a.record_s, a.exploration, a.domain) for case in a.cases}
    print(json.dumps(results, indent=1))
    return 0 if all(r.get("goal_met") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
