"""Salvage rosbag2 recordings that their recorder never closed (killed, crashed, power cut).

What `ros2 bag reindex` does, for the files a dead recorder leaves: an MCAP without its summary and
footer, cut anywhere, is read record by record from the start and every complete chunk (with the
schemas and channels it defines) is kept; an sqlite3 file keeps every committed row. The salvaged
messages become a new bag with a valid metadata.yaml, written with rosbags; the original is kept beside
it as `<name>.truncated`. The data logger closes a chunk and syncs the file every second, so a killed
logger loses about the last second.

A bag is being written while its recorder holds the lock `<name>.lock` beside it (`bag_lock`); the
lock dies with the process, so an unlocked bag in `.partial/` is an orphan, safe to recover.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.interfaces import (
    MessageDefinitionFormat,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

MSG = MessageDefinitionFormat.MSG
PARTIAL = ".partial"
"""Where the recorder writes bags until they are complete (then renamed into the replay buffer)."""
TRUNCATED_SUFFIX = ".truncated"
"""A recovered bag's original is kept under its name plus this (the loaders and the trainer skip it)."""

_INFINITE = QosTime(sec=9223372036, nsec=854775807)


def _reliable_publisher_qos(durability: QosDurability) -> Qos:
    return Qos(
        history=QosHistory.UNKNOWN,
        depth=0,
        reliability=QosReliability.RELIABLE,
        durability=durability,
        deadline=_INFINITE,
        lifespan=_INFINITE,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_INFINITE,
        avoid_ros_namespace_conventions=False,
    )


OFFERED_QOS = _reliable_publisher_qos(QosDurability.VOLATILE)
"""The publisher QoS that `ros2 bag record` stores for a default reliable publisher."""
LATCHED_QOS = _reliable_publisher_qos(QosDurability.TRANSIENT_LOCAL)
"""The same for a latched publisher (/tf_static, /robot_description): `ros2 bag play` latches them."""


@dataclass(frozen=True)
class SalvagedTopic:
    """A connection as the storage file defines it."""

    topic: str
    msgtype: str
    msgdef: str
    """The message definition text (.msg with its dependencies), '' if the file has none."""


@dataclass
class Salvage:
    """What could be read from one storage file."""

    file: Path
    bytes_total: int = 0
    bytes_read: int = 0
    """Up to the end of the last complete record (MCAP); the whole file (sqlite3)."""
    complete: bool = False
    """The file ended properly (MCAP footer read; sqlite3: always), nothing was cut."""
    error: str = ""
    """Why reading stopped early (a cut record), '' when it did not."""
    messages: dict[str, int] = field(default_factory=dict)
    first_ns: int | None = None
    last_ns: int | None = None

    def count(self, topic: str, t_ns: int) -> None:
        self.messages[topic] = self.messages.get(topic, 0) + 1
        self.first_ns = t_ns if self.first_ns is None else min(self.first_ns, t_ns)
        self.last_ns = t_ns if self.last_ns is None else max(self.last_ns, t_ns)

    @property
    def duration_s(self) -> float:
        return 0.0 if self.first_ns is None else (self.last_ns - self.first_ns) / 1e9

    def __str__(self) -> str:
        n = sum(self.messages.values())
        cut = (
            "complete"
            if self.complete
            else f"cut: {self.bytes_total - self.bytes_read} of {self.bytes_total} bytes lost ({self.error})"
        )
        return f"{self.file.name}: {n} messages over {self.duration_s:.2f} s salvaged, {cut}"


_Item = tuple[SalvagedTopic, int, bytes]
"""(connection, log time ns, serialized message)."""


def _mcap_messages(file: Path, salvage: Salvage) -> Iterator[_Item]:
    size = file.stat().st_size
    salvage.bytes_total = size
    with open(file, "rb") as f:
        reader = StreamReader(f, record_size_limit=size)
        schemas: dict[int, Schema] = {}
        topics: dict[int, SalvagedTopic] = {}
        try:
            for record in reader.records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    schema = schemas.get(record.schema_id)
                    has_msg = schema is not None and schema.encoding == "ros2msg"
                    msgdef = schema.data.decode() if has_msg else ""
                    msgtype = schema.name if schema is not None else ""
                    topics[record.id] = SalvagedTopic(record.topic, msgtype, msgdef)
                elif isinstance(record, Message) and record.channel_id in topics:
                    conn = topics[record.channel_id]
                    salvage.count(conn.topic, record.log_time)
                    yield conn, record.log_time, record.data
                salvage.bytes_read = f.tell()
            salvage.complete = True
            salvage.bytes_read = size
        except (
            McapError,
            EOFError,
            ValueError,
            OSError,
            struct.error,
        ) as e:  # a cut record: the rest is lost
            salvage.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _sqlite_messages(file: Path, salvage: Salvage) -> Iterator[_Item]:
    """Committed rows of a db3 that has no metadata.yaml (a hot journal is rolled back on a copy)."""
    salvage.bytes_total = salvage.bytes_read = file.stat().st_size
    journal = [j for s in ("-journal", "-wal") if (j := file.with_name(file.name + s)).exists()]
    if journal:  # the reader opens read-only: let sqlite finish the interrupted transaction on a copy
        copy = file.with_name(f".{file.name}.salvage")
        shutil.copy2(file, copy)
        for j in journal:
            shutil.copy2(j, copy.with_name(copy.name + j.name[len(file.name) :]))
        with contextlib.closing(sqlite3.connect(copy)) as db:
            db.execute("PRAGMA integrity_check")  # rolls a hot journal back
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # committed rows of a WAL into the file
        file = copy
    try:
        reader = Sqlite3Reader(file)
        reader.open()
        try:
            topics = {
                c.id: SalvagedTopic(c.topic, c.msgtype, c.msgdef.data if c.msgdef.format == MSG else "")
                for c in reader.connections
            }
            for c, t_ns, raw in reader.messages(reader.connections):
                salvage.count(c.topic, t_ns)
                yield topics[c.id], t_ns, raw
        finally:
            reader.close()
        salvage.complete = True
    finally:
        if file.name.endswith(".salvage"):
            for p in file.parent.glob(f"{file.name}*"):
                p.unlink()


def salvage_messages(file: str | Path, salvage: Salvage | None = None) -> Iterator[_Item]:
    """Every readable message of one storage file (.mcap or .db3), in file order; `salvage` is filled in."""
    file = Path(file)
    salvage = salvage if salvage is not None else Salvage(file)
    if file.suffix == ".mcap":
        return _mcap_messages(file, salvage)
    if file.suffix == ".db3":
        return _sqlite_messages(file, salvage)
    raise ValueError(f"{file} is not a rosbag2 storage file (.mcap or .db3)")


def typestore_for(conn: SalvagedTopic) -> Typestore:
    """Types to (de)serialize `conn`: its own definition where the file has one, else ROS 2 Kilted's."""
    if conn.msgdef:
        store = get_typestore(Stores.EMPTY)
        store.register(get_types_from_msg(conn.msgdef, conn.msgtype))
        return store
    return get_typestore(Stores.ROS2_KILTED)


def storage_files(path: Path) -> list[Path]:
    """The storage files of a bag directory (or the file itself)."""
    if path.is_file():
        return [path]
    return sorted(path.glob("*.mcap")) or sorted(path.glob("*.db3"))


@dataclass
class Recovery:
    """What `recover_bag` did."""

    source: Path
    bag: Path | None
    """The recovered bag (None when nothing was salvaged)."""
    kept: Path | None
    """Where the original now lies."""
    files: list[Salvage] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(sum(s.messages.values()) for s in self.files)

    @property
    def duration_s(self) -> float:
        firsts = [s.first_ns for s in self.files if s.first_ns is not None]
        lasts = [s.last_ns for s in self.files if s.last_ns is not None]
        return (max(lasts) - min(firsts)) / 1e9 if firsts else 0.0

    def __str__(self) -> str:
        where = f"-> {self.bag}" if self.bag else "-> nothing salvaged"
        parts = "; ".join(str(s) for s in self.files)
        return f"{self.source} {where} ({self.messages} messages, {self.duration_s:.2f} s; {parts})"


def recover_bag(path: str | Path, dest: str | Path | None = None) -> Recovery:
    """Salvage the bag at `path` (a directory without metadata.yaml, or a bare .mcap/.db3) into a complete
    bag at `dest` (default: `path` itself); the original is renamed `<path>.truncated`. A bag that
    already has its metadata.yaml is complete (its recorder died after closing it): it is only moved
    to `dest`."""
    path = Path(path)
    if path.is_dir() and (path / "metadata.yaml").exists():
        if dest is not None and Path(dest) != path:
            if Path(dest).exists():
                raise FileExistsError(f"{dest} exists: the complete bag {path} is left where it is")
            path.rename(dest)
        return Recovery(path, Path(dest) if dest is not None else path, None)
    files = storage_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no .mcap or .db3 file to recover")
    dest = Path(dest) if dest is not None else (path.with_suffix("") if path.is_file() else path)
    kept = path.with_name(path.name + TRUNCATED_SUFFIX)
    for taken in (kept, dest if dest != path else None):
        if taken is not None and taken.exists():
            raise FileExistsError(f"{taken} exists: an earlier recovery of {path} left it there")
    work = dest.with_name(f".{dest.name}.recovering")
    shutil.rmtree(work, ignore_errors=True)
    recovery = Recovery(path, None, kept)
    storage = StoragePlugin.MCAP if files[0].suffix == ".mcap" else StoragePlugin.SQLITE3
    writer = Writer(work, version=Writer.VERSION_LATEST, storage_plugin=storage)
    writer.open()
    connections = {}
    try:
        for file in files:
            salvage = Salvage(file)
            recovery.files.append(salvage)
            for conn, t_ns, raw in salvage_messages(file, salvage):
                out = connections.get(conn)
                if out is None:
                    store = typestore_for(conn)
                    out = connections[conn] = writer.add_connection(
                        conn.topic, conn.msgtype, typestore=store, offered_qos_profiles=[OFFERED_QOS]
                    )
                writer.write(out, t_ns, raw)
    except BaseException:
        writer.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise
    writer.close()
    if not recovery.messages:
        shutil.rmtree(work)
        path.rename(kept)
        return recovery
    if dest != path:  # the salvaged bag first: a kill between the renames strands nothing
        work.rename(dest)
        path.rename(kept)
    else:
        path.rename(kept)
        work.rename(dest)
    recovery.bag = dest
    return recovery


# -- the recorder's lock ----------------------------------------------------------------------------
@contextmanager
def bag_lock(partial_bag: Path) -> Iterator[IO]:
    """Hold `<bag>.lock` while writing `partial_bag` (released when the process dies, however)."""
    lock = partial_bag.with_name(partial_bag.name + ".lock")
    f = open(lock, "w")  # noqa: SIM115 - held for the context's lifetime
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()  # another recorder holds it: its lock file stays
        raise
    try:
        yield f
    finally:
        f.close()
        lock.unlink(missing_ok=True)


def is_orphan(partial_bag: Path) -> bool:
    """True when no live recorder holds the bag's lock."""
    lock = partial_bag.with_name(partial_bag.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def recover_orphans(replay_buffer: str | Path) -> list[Recovery]:
    """Recover every orphaned bag in `<replay_buffer>/.partial/` into the replay buffer; a bag that
    cannot be read is reported (its original stays) and not tried again."""
    partial = Path(replay_buffer) / PARTIAL
    if not partial.is_dir():
        return []
    done = []
    for bag in sorted(partial.iterdir()):
        if not bag.is_dir() or bag.name.endswith(TRUNCATED_SUFFIX) or bag.name.startswith("."):
            continue
        if not is_orphan(bag) or not bag.exists():  # being written, or closed by its recorder just now
            continue
        try:
            done.append(recover_bag(bag, Path(replay_buffer) / bag.name))
        except Exception as e:  # noqa: BLE001 - reported; set aside so that it is not retried
            kept = bag.with_name(bag.name + TRUNCATED_SUFFIX)
            with contextlib.suppress(OSError):
                if bag.exists() and not kept.exists():
                    bag.rename(kept)
            done.append(Recovery(bag, None, kept, [Salvage(bag, error=f"{type(e).__name__}: {e}")]))
        bag.with_name(bag.name + ".lock").unlink(missing_ok=True)
    return done
