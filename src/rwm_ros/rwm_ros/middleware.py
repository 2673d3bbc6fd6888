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

rmw_fastrtps replaces the profile's transports with its own when discovery is limited to the host
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST), so a stack of its own is kept apart by its domain id, with
this host as a static peer so that discovery does not depend on multicast.
"""

from __future__ import annotations

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


def profile_overridden(environ: dict[str, str]) -> bool:
    """Whether rmw_fastrtps will replace the profile's transports with its own (default health check)."""
    return (
        environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST"
        or environ.get("ROS_LOCALHOST_ONLY") == "1"
    )
