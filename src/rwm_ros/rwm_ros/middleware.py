"""How the stack's processes configure DDS (Fast DDS): `config/fastdds.xml`, shared memory with a
port health check that gives up after 30 ms.

Why: opening another participant's shared-memory port, Fast DDS checks that the port's listeners are
alive; finding one waiting that has not checked in since the last look, it sleeps a third of the
check's timeout (1 s by default) and looks again. Meanwhile the opening process receives nothing:
recorded with `perf sched` in the policy node, its receive thread slept 333 ms behind its discovery
thread in that check, and the watchdog took over. Any participant that joins (the monitor, the
logger, an operator's `ros2 topic echo`) could so cut the policy off from the robot
(`docs/startup/README.md`). UDP alone avoids the check but, on 2 cores, cost a quarter of a core and
raised the latency at the robot (p99 6.9 against 1.8 ms over ten minutes); with a 30 ms timeout the
sleep is 10 ms, under the policy's 60 ms watchdog.

The timeouts a port's check uses are those stored in the port by the process that created it, and
port files outlive processes that die without closing them. A run that reused a port left by a
process on Fast DDS's defaults slept 333 ms again (12-03: 1 of 20 starts; `docs/startup/README.md`).
So the launch file first removes the Fast DDS files in /dev/shm that no living process holds
(`remove_zombie_shm_files`), and the ports are created anew, with the profile's timeouts. A tool
joining without the profile (`ros2 topic echo` in a plain shell) still creates its own port with the
defaults: give it FASTDDS_DEFAULT_PROFILES_FILE too.

rmw_fastrtps replaces the profile's transports with its own when discovery is limited to the host
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST), so a stack of its own is kept apart by its domain id, with
this host as a static peer so that discovery does not depend on multicast.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path

from ament_index_python.packages import get_package_share_directory

PROFILES_FILE = "fastdds.xml"


def stack_dds_env() -> dict[str, str]:
    """The environment that gives a process the stack's Fast DDS profile (the launch file sets it for
    every node, unless the caller chose a profile of its own)."""
    path = Path(get_package_share_directory("rwm_bringup")) / "config" / PROFILES_FILE
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(path)}


TRANSPORTS = ("stack", "default")
"""What `script_dds_env` can give: the stack's profile, or rmw_fastrtps's own transports (host-only
discovery, Fast DDS's 1 s health check) for the benches to compare against."""


def script_dds_env(transport: str = "stack") -> dict[str, str]:
    """What a script that starts the stack (tests, benches) and listens to it in its own process sets in
    `os.environ` before `rclpy.init`, with a ROS_DOMAIN_ID of its own: both sides must agree, or they
    never meet."""
    if transport == "default":  # rmw_fastrtps then replaces the profile's transports with its own
        return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": ""}
    if transport != "stack":
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_STATIC_PEERS": "127.0.0.1", **stack_dds_env()}


SHM_DIRECTORY = Path("/dev/shm")
_LOCK_FILE = re.compile(r"^fastdds_(port\d+|[0-9a-f]{16})_(el|sl)$")
_PORT_FILE = re.compile(r"^fastdds_port\d+$")


def _mapped_paths(directory: Path) -> set[str]:
    """Files of `directory` that a process maps (whose maps this user can read: its own processes)."""
    prefix = f"{directory.resolve()}/"
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:  # ended meanwhile, or another user's
            continue
        for line in text.splitlines():
            at = line.find(prefix)
            if at >= 0:
                mapped.add(line[at + len(prefix) :].removesuffix(" (deleted)"))
    return mapped


def _take_locks(lock_files: list[Path]) -> list | None:
    """Exclusive locks on all of a port's or segment's lock files (open files, released on close), or
    None when a living process holds one of them."""
    taken = []
    try:
        for lock_file in lock_files:
            f = lock_file.open("rb")
            taken.append(f)
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held (BlockingIOError), or gone meanwhile
        for f in taken:
            f.close()
        return None
    return taken


def remove_zombie_shm_files(directory: Path = SHM_DIRECTORY, min_age_s: float = 10.0) -> list[str]:
    """Remove the Fast DDS shared-memory files in `directory` that this user's dead processes left, and
    return their names. A port or segment is dead when none of its lock files is held (the rule of
    Fast DDS's own `fastdds shm clean`), no process maps it (a process that only writes to a port
    takes no lock), and its files are this user's; a port without lock files must also be older than
    `min_age_s` (one being created). The lock files stay locked while their port is removed, so a
    process starting meanwhile cannot take it over half-deleted."""
    if not directory.is_dir():
        return []
    uid = os.getuid()
    names = {p.name for p in directory.iterdir()}
    bases = {m.group(1) for n in names if (m := _LOCK_FILE.match(n))}
    bases |= {n.removeprefix("fastdds_") for n in names if _PORT_FILE.match(n)}
    mapped = _mapped_paths(directory)
    now = time.time()
    removed = []
    for base in sorted(bases):
        files = [n for n in (f"fastdds_{base}", f"fastdds_{base}_el", f"fastdds_{base}_sl") if n in names]
        files += [n for n in (f"sem.fastdds_{base}_mutex",) if n in names]
        try:
            stats = [(directory / n).stat() for n in files]
        except FileNotFoundError:
            continue
        if any(n in mapped for n in files) or any(st.st_uid != uid for st in stats):
            continue
        lock_files = [directory / n for n in files if n.endswith(("_el", "_sl"))]
        if not lock_files and now - stats[0].st_mtime <= min_age_s:
            continue
        locks = _take_locks(lock_files)
        if locks is None:
            continue
        try:
            for n in files:
                try:
                    (directory / n).unlink()
                    removed.append(n)
                except OSError:
                    pass
        finally:
            for f in locks:
                f.close()
    return removed


def profile_overridden(environ: dict[str, str]) -> bool:
    """Whether rmw_fastrtps will replace the profile's transports with its own (default health check)."""
    return (
        environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST"
        or environ.get("ROS_LOCALHOST_ONLY") == "1"
    )
