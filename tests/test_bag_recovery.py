"""Bags whose recorder died: complete chunks salvaged, a valid bag written, the rest reported as lost;
the recorder syncs every flush interval, locks what it writes, and the trainer's scan recovers orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from rwm.data.bag_loader import load_bag
from rwm.data.bag_recorder import PARTIAL, RecorderConfig, SplitBagRecorder
from rwm.data.bag_recovery import bag_lock, is_orphan, recover_bag, recover_orphans
from rwm.data.bag_writer import BagWriter

TWIST = "geometry_msgs/msg/Twist"
STORE = get_typestore(Stores.ROS2_KILTED)


def _twist(x: float) -> bytes:
    t = STORE.types
    msg = t[TWIST](
        linear=t["geometry_msgs/msg/Vector3"](x=x, y=0.0, z=0.0),
        angular=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
    )
    return bytes(STORE.serialize_cdr(msg, TWIST))


def _read_back(bag: Path) -> list[tuple[int, float]]:
    with AnyReader([bag], default_typestore=STORE) as reader:
        return [(t, reader.deserialize(raw, c.msgtype).linear.x) for c, t, raw in reader.messages()]


def _open_writer_with_flushed_part(path: Path, storage: str, flushed: int, pending: int) -> BagWriter:
    """A writer that synced `flushed` messages, then wrote `pending` more that it never synced."""
    w = BagWriter(path, storage=storage)
    w.open()
    for i in range(flushed):
        w.write_raw("/cmd_vel", TWIST, _twist(i), 1_000 + i)
    w.flush()
    for i in range(flushed, flushed + pending):
        w.write_raw("/cmd_vel", TWIST, _twist(i), 1_000 + i)
    return w


@pytest.mark.parametrize("cut", [0.999, 0.7, 0.4])
def test_truncated_mcap_keeps_every_complete_chunk(tmp_path: Path, cut: float) -> None:
    w = _open_writer_with_flushed_part(tmp_path / "rec", "mcap", flushed=300, pending=0)
    w.flush()  # a second chunk, of nothing: the file ends after chunk 1's index records
    (mcap,) = (tmp_path / "rec").glob("*.mcap")
    size_one_chunk = mcap.stat().st_size
    for i in range(300, 600):  # a second chunk, then the recorder "dies" part way through writing it
        w.write_raw("/cmd_vel", TWIST, _twist(i), 1_000 + i)
    w.flush()
    full = mcap.read_bytes()
    dead = tmp_path / "dead"
    dead.mkdir()
    end = size_one_chunk + int(cut * (len(full) - size_one_chunk))
    (dead / "dead.mcap").write_bytes(full[:end])

    recovery = recover_bag(dead)
    assert recovery.bag == dead and (dead / "metadata.yaml").is_file()
    assert (tmp_path / "dead.truncated" / "dead.mcap").stat().st_size == end, "the original is kept"
    rows = _read_back(dead)
    chunk2_end = size_one_chunk + 9 + int.from_bytes(full[size_one_chunk + 1 : size_one_chunk + 9], "little")
    chunk2_complete = end >= chunk2_end  # its message index records after it are not needed
    assert chunk2_complete == (cut > 0.99), "the cuts fall after chunk 2 and inside it"
    assert [x for _, x in rows] == [float(i) for i in range(600 if chunk2_complete else 300)]
    (salvage,) = recovery.files
    assert not salvage.complete and salvage.bytes_total == end and salvage.bytes_read <= end
    assert "lost" in str(recovery)
    with open(next(dead.glob("*.mcap")), "rb") as f:  # the official reader agrees
        assert sum(1 for _ in make_reader(f).iter_messages()) == len(rows)
    w.close()


def test_uncommitted_sqlite_rows_are_lost_and_committed_ones_kept(tmp_path: Path) -> None:
    w = _open_writer_with_flushed_part(tmp_path / "rec", "sqlite3", flushed=200, pending=50)
    dead = tmp_path / "dead"
    dead.mkdir()
    for f in (tmp_path / "rec").iterdir():  # what the disk holds when the process is killed now
        (dead / f.name.replace("rec", "dead")).write_bytes(f.read_bytes())
    recovery = recover_bag(dead)
    assert [x for _, x in _read_back(dead)] == [float(i) for i in range(200)]
    assert recovery.messages == 200
    w.close()


def test_loader_reads_a_dead_recorders_bag_as_far_as_it_is_complete(tmp_path: Path) -> None:
    w = _open_writer_with_flushed_part(tmp_path / "rec", "mcap", flushed=100, pending=0)
    (mcap,) = (tmp_path / "rec").glob("*.mcap")
    data = mcap.read_bytes()
    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / "dead.mcap").write_bytes(data + b"\x06\xff\xff")  # the start of a chunk that never ended
    _, report = load_bag(dead)
    assert report.messages == {"/cmd_vel": 100}
    assert any("truncated" in p.message and "bag-recover" in p.message for p in report.problems), str(report)
    w.close()


def test_a_complete_bag_is_left_alone(tmp_path: Path) -> None:
    w = _open_writer_with_flushed_part(tmp_path / "ok", "mcap", flushed=10, pending=0)
    w.close()
    recovery = recover_bag(tmp_path / "ok")
    assert recovery.kept is None and recovery.bag == tmp_path / "ok"
    assert not (tmp_path / "ok.truncated").exists()


def test_lock_tells_a_live_recorder_from_an_orphan(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    with bag_lock(bag):
        assert not is_orphan(bag)
        with pytest.raises(BlockingIOError), bag_lock(bag):  # a second recorder on the same name
            pass
        assert not is_orphan(bag), "a refused attempt leaves the holder's lock alone"
    assert is_orphan(bag)


def test_a_bag_closed_just_before_its_recorder_died_is_moved_not_stranded(tmp_path: Path) -> None:
    partial = tmp_path / PARTIAL
    partial.mkdir()
    w = _open_writer_with_flushed_part(partial / "done", "mcap", flushed=5, pending=0)
    w.close()  # metadata.yaml written; the rename out of .partial/ never happened
    (recovery,) = recover_orphans(tmp_path)
    assert recovery.bag == tmp_path / "done" and (tmp_path / "done" / "metadata.yaml").is_file()
    assert recover_orphans(tmp_path) == [], "nothing left to do the next time"


def test_sqlite_rows_committed_to_a_write_ahead_log_are_kept(tmp_path: Path) -> None:
    import sqlite3

    w = _open_writer_with_flushed_part(tmp_path / "rec", "sqlite3", flushed=0, pending=0)
    w.close()
    db = next((tmp_path / "rec").glob("*.db3"))
    dead = tmp_path / "dead"
    dead.mkdir()
    copy = dead / "dead.db3"
    copy.write_bytes(db.read_bytes())
    conn = sqlite3.connect(copy)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute(
        "INSERT INTO topics (id, name, type, serialization_format, offered_qos_profiles, "
        "type_description_hash) VALUES (1, '/cmd_vel', 'geometry_msgs/msg/Twist', 'cdr', '', '')"
    )
    conn.executemany(
        "INSERT INTO messages (topic_id, timestamp, data) VALUES (1, ?, ?)",
        [(i, _twist(i)) for i in range(7)],
    )
    conn.commit()  # in the WAL, not in the file: as a killed recorder in WAL mode leaves it
    assert (dead / "dead.db3-wal").stat().st_size > 0
    recovery = recover_bag(dead, tmp_path / "out")
    conn.close()
    assert recovery.messages == 7


_RECORDER = textwrap.dedent(
    """
    import sys, time
    from rwm.data.bag_recorder import RecorderConfig, SplitBagRecorder
    sys.path.insert(0, sys.argv[2])
    from test_bag_recovery import _twist
    rec = SplitBagRecorder(RecorderConfig(directory=sys.argv[1], flush_interval_s=0.5))
    i = 0
    while True:
        rec.write("/cmd_vel", "geometry_msgs/msg/Twist", _twist(time.time()), time.time_ns())
        rec.flush_due()
        i += 1
        if i == 50:
            print("recording", flush=True)
        time.sleep(0.0025)
    """
)


@pytest.mark.slow
def test_sigkilled_recorder_loses_at_most_its_flush_interval(tmp_path: Path) -> None:
    """A recorder process at 400 Hz killed with SIGKILL: its orphan is found, recovered into the replay
    buffer, and holds everything up to half a second (its flush interval) before the kill."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).parents[1] / "src" / "rwm"), os.environ.get("PYTHONPATH", "")]
        ),
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _RECORDER, str(tmp_path), str(Path(__file__).parent)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "recording"
    time.sleep(3.0)
    (partial,) = [p for p in (tmp_path / PARTIAL).iterdir() if p.is_dir()]
    assert not is_orphan(partial), "the live recorder holds its bag"
    assert recover_orphans(tmp_path) == [], "a bag being written is not touched"
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (recovery,) = recover_orphans(tmp_path)
    assert recovery.bag == tmp_path / partial.name and recovery.bag.is_dir()
    times = [x for _, x in _read_back(recovery.bag)]
    assert killed_at - times[-1] < 0.5 + 0.25, f"lost {killed_at - times[-1]:.2f} s"
    assert times[-1] - times[0] > 2.5
    assert not any(p.is_dir() and not p.name.endswith(".truncated") for p in (tmp_path / PARTIAL).iterdir())


def test_recorder_syncs_every_flush_interval(tmp_path: Path) -> None:
    rec = SplitBagRecorder(RecorderConfig(directory=str(tmp_path), flush_interval_s=0.05))
    rec.write("/cmd_vel", TWIST, _twist(1.0), 1)
    (mcap,) = rec.bag.path.glob("*.mcap")
    before = mcap.stat().st_size
    time.sleep(0.06)
    rec.flush_due()
    assert mcap.stat().st_size > before, "the open chunk reached the file"
    rec.close()
