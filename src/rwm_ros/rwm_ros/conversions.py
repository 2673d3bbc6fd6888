"""numpy <-> ROS message conversions shared by the nodes (sim, exploration, policy, logger).

Two rules of the contract live here: vectors are in contract order and messages are read by joint
NAME, never by index (`JointOrder`); quaternions are (w, x, y, z) in the core and (x, y, z, w) in
ROS. The writers reuse preallocated messages: `bind_array` hands out a numpy view onto a message's
own array buffer, so that a 400 Hz publisher fills it in place instead of building lists.
"""

from __future__ import annotations

import array
import struct

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import JointState

from rwm.robot import contract as C

_NS = 1_000_000_000


class JointMessageError(ValueError):
    """A JointState that cannot be read by name (or a command that must not reach the drives).

    `reason` is a short key for counting rejections.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        """One of: length, nan, unknown, duplicate, missing."""


def diagnostic_array(status: DiagnosticStatus, values: dict, stamp: Time) -> DiagnosticArray:
    """One node's status with its values as strings, stamped: what every node puts on /diagnostics."""
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = stamp
    return arr


def stamp_to_ns(stamp: Time) -> int:
    """A message stamp as integer nanoseconds (exact)."""
    return stamp.sec * _NS + stamp.nanosec


def set_stamp_ns(stamp: Time, t_ns: int) -> None:
    """Write integer nanoseconds into a stamp in place (the 400 Hz path shares one stamp object)."""
    stamp.sec, stamp.nanosec = divmod(t_ns, _NS)


def quat_msg_to_wxyz(q, out: np.ndarray | None = None) -> np.ndarray:
    """geometry_msgs Quaternion -> core (w, x, y, z)."""
    out = np.empty(4) if out is None else out
    out[0], out[1], out[2], out[3] = q.w, q.x, q.y, q.z
    return out


def vector3_to_array(v, out: np.ndarray | None = None) -> np.ndarray:
    """geometry_msgs Vector3 or Point -> (3,) array."""
    out = np.empty(3) if out is None else out
    out[0], out[1], out[2] = v.x, v.y, v.z
    return out


def bind_array(msg, field: str, size: int, typecode: str = "d") -> np.ndarray:
    """Give `msg.<field>` (a sequence of double/float) `size` zeros and return a numpy view onto it.

    Writing the view writes the message: rclpy serializes the array.array that the message holds.
    """
    setattr(msg, field, array.array(typecode, bytes(size * array.array(typecode).itemsize)))
    buf = getattr(msg, field)  # the setter copies; bind to the stored object
    return np.frombuffer(buf, dtype=np.float64 if typecode == "d" else np.float32)


class JointOrder:
    """Maps a JointState's name list to contract order, cached: senders keep the same names every message.

    `extra_joints_allowed`: a robot's joint states may name joints beyond the contract's 12 (an arm,
    a payload's joints), which are ignored; a command to the robot may not name joints it lacks.
    """

    def __init__(self, extra_joints_allowed: bool = False) -> None:
        self.extra_joints_allowed = extra_joints_allowed
        self._names: list[str] | None = None
        self._index: np.ndarray | None = None

    def index(self, names: list[str]) -> np.ndarray:
        """result[i] is the position in `names` of contract joint i; JointMessageError if incomplete."""
        if names != self._names:
            self._index = self._build(names)
            self._names = list(names)
        return self._index

    def _build(self, names: list[str]) -> np.ndarray:
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise JointMessageError("duplicate", f"joint names repeat {dup}")
        unknown = [n for n in names if n not in C.JOINT_NAMES]
        if unknown and not self.extra_joints_allowed:
            raise JointMessageError("unknown", f"unknown joints {unknown}; expected {list(C.JOINT_NAMES)}")
        try:
            return C.joint_index(names)
        except ValueError as e:
            raise JointMessageError("missing", str(e)) from None

    def read(self, msg: JointState, field: str = "position", out: np.ndarray | None = None) -> np.ndarray:
        """One of position/velocity/effort of `msg` in contract order."""
        values = getattr(msg, field)
        if len(values) != len(msg.name):
            raise JointMessageError(
                "length", f"{field} has {len(values)} values for {len(msg.name)} names; they must match"
            )
        idx = self.index(msg.name)
        src = (
            np.frombuffer(values, dtype=np.float64) if isinstance(values, array.array) else np.asarray(values)
        )
        out = np.empty(C.NUM_JOINTS) if out is None else out
        np.take(src, idx, out=out)
        return out


def joint_targets_from_command(
    msg: JointState, order: JointOrder, out: np.ndarray | None = None
) -> np.ndarray:
    """Validated joint position targets (12,), contract order, from a /anymal/joint_command message.

    Raises JointMessageError for a position/name length mismatch, unknown, repeated or missing
    joints, or non-finite values: such a message must be dropped whole, never applied in part.
    """
    targets = order.read(msg, "position", out)
    if not np.isfinite(targets).all():
        bad = [C.JOINT_NAMES[i] for i in np.flatnonzero(~np.isfinite(targets))]
        raise JointMessageError("nan", f"non-finite targets for {bad}")
    return targets


def make_joint_state(
    names: tuple[str, ...] = C.JOINT_NAMES,
) -> tuple[JointState, np.ndarray, np.ndarray, np.ndarray]:
    """A reusable JointState with `names` and (position, velocity, effort) views to fill in place."""
    msg = JointState()
    msg.name = list(names)
    n = len(names)
    return msg, bind_array(msg, "position", n), bind_array(msg, "velocity", n), bind_array(msg, "effort", n)


def joint_command(targets: np.ndarray, stamp: Time | None = None) -> JointState:
    """A /anymal/joint_command message (names in contract order) for targets (12,)."""
    if targets.shape != (C.NUM_JOINTS,) or not np.isfinite(targets).all():
        raise ValueError(f"joint targets must be 12 finite values, got {targets!r}")
    msg = JointState()
    msg.name = list(C.JOINT_NAMES)
    msg.position = targets.astype(np.float64).tolist()
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


_STAMP_LE, _STAMP_BE = struct.Struct("<iI"), struct.Struct(">iI")


def raw_stamp_ns(cdr: bytes) -> int:
    """Header stamp of a serialized stamped message (CDR), read without deserializing it.

    A stamped message's CDR starts with the 4-byte encapsulation header (byte 1: 1 little-endian,
    0 big-endian), then std_msgs/Header, whose first fields are stamp.sec (int32), stamp.nanosec.
    """
    sec, nanosec = (_STAMP_LE if cdr[1] & 1 else _STAMP_BE).unpack_from(cdr, 4)
    return sec * _NS + nanosec
