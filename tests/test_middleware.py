"""The stack's Fast DDS profile: Fast DDS accepts it, and a failed shared-memory port health check
sleeps less than the policy's watchdog waits (`rwm_ros.middleware`, `docs/startup/README.md`)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rwm.control.safety import SafetyConfig
from rwm.robot import contract as C
from rwm_ros.middleware import profile_overridden, script_dds_env, stack_dds_env

NS = {"d": "http://www.eprosima.com"}


def _profile() -> ET.Element:
    return ET.parse(Path(stack_dds_env()["FASTDDS_DEFAULT_PROFILES_FILE"])).getroot()


def test_a_failed_health_check_sleeps_less_than_the_watchdog_waits():
    shm = [
        t
        for t in _profile().iterfind(".//d:transport_descriptor", NS)
        if t.findtext("d:type", namespaces=NS) == "SHM"
    ]
    assert len(shm) == 1
    sleep_ms = int(shm[0].findtext("d:healthy_check_timeout_ms", namespaces=NS)) / 3  # Fast DDS: timeout / 3
    assert sleep_ms < SafetyConfig().watchdog_periods * C.POLICY_DT * 1e3 / 2


def test_the_default_participant_uses_only_the_profiles_transports():
    participant = _profile().find(".//d:participant[@is_default_profile='true']", NS)
    assert participant is not None
    assert participant.findtext("d:rtps/d:useBuiltinTransports", namespaces=NS) == "false"
    used = {t.text for t in participant.iterfind("d:rtps/d:userTransports/d:transport_id", NS)}
    declared = {
        t.findtext("d:transport_id", namespaces=NS)
        for t in _profile().iterfind(".//d:transport_descriptor", NS)
    }
    assert used == declared and len(used) == 2


def test_fast_dds_loads_the_profile_without_an_error():
    """A participant made with the profile: Fast DDS reports an element it does not know on stderr."""
    code = "import rclpy; rclpy.init(); rclpy.create_node('profile_check').destroy_node(); rclpy.shutdown()"
    env = {**os.environ, **script_dds_env(), "ROS_DOMAIN_ID": str(150 + os.getpid() % 50)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "XMLPARSER" not in out.stderr and "Error" not in out.stderr, out.stderr


def test_localhost_discovery_is_recognized_as_replacing_the_profile():
    assert profile_overridden({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert profile_overridden({"ROS_LOCALHOST_ONLY": "1"})
    assert not profile_overridden(script_dds_env())
    assert profile_overridden(script_dds_env("default")), (
        "the benches' comparison: rmw_fastrtps's own transports"
    )
    with pytest.raises(ValueError, match="transport"):
        script_dds_env("udp")


def test_zombie_shared_memory_files_are_removed_and_held_ones_kept(tmp_path):
    """A port left by a dead process keeps its creator's health-check timeouts for whoever reuses it:
    the launch file removes what no living process holds, locks or maps, as `fastdds shm clean` does."""
    import fcntl
    import mmap
    import time

    from rwm_ros.middleware import remove_zombie_shm_files

    names = [
        "fastdds_port7411", "fastdds_port7411_el", "sem.fastdds_port7411_mutex",  # lock not held: dead
        "fastdds_0123456789abcdef", "fastdds_0123456789abcdef_el",  # segment, its lock held below
        "fastdds_port7413", "sem.fastdds_port7413_mutex",  # no lock file, old: dead
        "fastdds_port7415",  # no lock file, just created: left alone
        "fastdds_port7417",  # no lock file, old, but mapped below (a process writing to it)
        "fastdds_port7419", "fastdds_port7419_el", "fastdds_port7419_sl",  # one of two locks held (shared)
        "lttng-ust-wait-6",  # not Fast DDS's
    ]  # fmt: skip
    for name in names:
        (tmp_path / name).write_bytes(b"\0" * 64)
    old = time.time() - 60
    for name in ("fastdds_port7413", "fastdds_port7417"):
        os.utime(tmp_path / name, (old, old))
    with (
        (tmp_path / "fastdds_0123456789abcdef_el").open("rb") as held,
        (tmp_path / "fastdds_port7419_sl").open("rb") as shared,
        (tmp_path / "fastdds_port7417").open("r+b") as written,
        mmap.mmap(written.fileno(), 64),
    ):
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(shared, fcntl.LOCK_SH | fcntl.LOCK_NB)
        removed = remove_zombie_shm_files(tmp_path)
    dead = ["fastdds_port7411", "fastdds_port7411_el", "sem.fastdds_port7411_mutex", "fastdds_port7413",
            "sem.fastdds_port7413_mutex"]  # fmt: skip
    assert sorted(removed) == sorted(dead)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - set(dead))
