"""The numbers of serialized robot messages read straight from their CDR bytes, without rclpy.

Why: the policy reads a joint state, an IMU and an odometry message on every tick of its 50 Hz path.
rclpy's `deserialize_message` builds a message object for each (12 joint-name strings, nested
messages): about 85 us of Python per tick and allocations the control path is not to make. The
layouts here are those of XCDR1 little-endian (what Fast DDS and Cyclone DDS send): a 4-byte
encapsulation header, then each field aligned to its size relative to the end of that header. Only
messages these readers can place exactly are read here; anything else (big-endian, too short, a
joint state whose names differ from the ones learned) returns False and is left to rclpy and the
checks of `RobotStateReader`, which keep the rules.
"""

from __future__ import annotations

import struct

import numpy as np

_BASE = 4
"""Bytes of the encapsulation header; CDR alignment counts from its end."""
_IMU_DOUBLES = 4 + 9 + 3 + 9 + 3 + 9
"""orientation, its covariance, angular velocity, its covariance, linear acceleration, its covariance."""
_ODOM_DOUBLES = 3 + 4 + 36 + 3 + 3 + 36
"""pose position, orientation, covariance; twist linear, angular, covariance."""


def _align(offset: int, size: int) -> int:
    return _BASE + -(-(offset - _BASE) // size) * size


_UINT32 = struct.Struct("<I")


def _uint32(cdr: bytes, offset: int) -> int:
    return _UINT32.unpack_from(cdr, offset)[0]


def _after_string(cdr: bytes, offset: int) -> int:
    """Offset after the CDR string at `offset` (a uint32 length with its NUL, then the bytes); past the
    end of `cdr` when the bytes end first (then every read after it fails its bounds check)."""
    offset = _align(offset, 4)
    if offset + 4 > len(cdr):
        return len(cdr) + 1
    return offset + 4 + _uint32(cdr, offset)


def _doubles(cdr: bytes, offset: int, count: int) -> np.ndarray | None:
    """`count` doubles at `offset`, aligned, as a view of the bytes; None if the bytes end first."""
    offset = _align(offset, 8)
    if len(cdr) < offset + 8 * count:
        return None
    return np.frombuffer(cdr, "<f8", count, offset)


def _little_endian(cdr: bytes) -> bool:
    return len(cdr) >= _BASE + 12 and cdr[0] == 0 and cdr[1] == 1


def _after_header(cdr: bytes) -> int:
    """Offset after std_msgs/Header (stamp, then frame_id)."""
    return _after_string(cdr, _BASE + 8)


def read_imu(cdr: bytes, quat_xyzw: np.ndarray, angular_velocity: np.ndarray) -> bool:
    """sensor_msgs/Imu: its orientation (x, y, z, w) and angular velocity into the arrays; False when
    the bytes are not a little-endian Imu this reader can place (decode those with rclpy)."""
    if not _little_endian(cdr):
        return False
    values = _doubles(cdr, _after_header(cdr), _IMU_DOUBLES)
    if values is None:
        return False
    quat_xyzw[:] = values[0:4]
    angular_velocity[:] = values[13:16]
    return True


def read_odometry(cdr: bytes, position: np.ndarray, linear: np.ndarray, angular: np.ndarray) -> bool:
    """nav_msgs/Odometry: its pose position and twist (linear, angular) into the arrays; False as
    `read_imu`."""
    if not _little_endian(cdr):
        return False
    values = _doubles(cdr, _after_string(cdr, _after_header(cdr)), _ODOM_DOUBLES)  # then child_frame_id
    if values is None:
        return False
    position[:] = values[0:3]
    linear[:] = values[43:46]
    angular[:] = values[46:49]
    return True


class JointStateLayout:
    """Where position, velocity and effort lie in a sensor_msgs/JointState, learned from one message
    and used for the next ones that carry byte for byte the same frame_id and names (a driver sends the
    same joint list every time): then reading one is three copies from the bytes."""

    def __init__(self) -> None:
        self._prefix: bytes | None = None
        """The bytes from frame_id through the position count of the learned message."""
        self._index = np.zeros(0, np.int64)
        """Where each contract joint is in the learned message's names."""
        self._counts: tuple[int, ...] = ()
        """Offsets of the velocity and effort counts."""
        self._values: tuple[int, ...] = ()
        """Offsets of the position, velocity and effort values."""
        self._length = 0
        self._count = 0

    def learn(self, cdr: bytes, index: np.ndarray) -> None:
        """Take this message's layout and `index` (where each contract joint is in its names), from a
        message that rclpy decoded and the reader accepted; a message it cannot place leaves none."""
        self._prefix = None
        names = _align(_after_header(cdr), 4) if _little_endian(cdr) else len(cdr)
        if names + 4 > len(cdr):
            return
        count = _uint32(cdr, names)
        offset = names + 4
        for _ in range(count):
            offset = _after_string(cdr, offset)
            if offset > len(cdr):
                return
        counts, values = [], []
        for _ in range(3):
            offset = _align(offset, 4)
            if offset + 4 > len(cdr) or _uint32(cdr, offset) != count:
                return
            counts.append(offset)
            offset = _align(offset + 4, 8)
            values.append(offset)
            offset += 8 * count
        if offset != len(cdr):
            return
        self._prefix = bytes(cdr[_BASE + 8 : counts[0] + 4])
        self._counts, self._values = tuple(counts[1:]), tuple(values)
        self._length, self._count, self._index = len(cdr), count, index.copy()

    def read(self, cdr: bytes, out: np.ndarray) -> bool:
        """Rows position, velocity, effort of `out` (3, 12) in contract order; False unless the message
        has the learned layout."""
        prefix = self._prefix
        if prefix is None or len(cdr) != self._length:
            return False
        if cdr[0] != 0 or cdr[1] != 1 or not cdr.startswith(prefix, _BASE + 8):
            return False
        for at in self._counts:
            if _uint32(cdr, at) != self._count:
                return False
        for row, at in enumerate(self._values):
            np.take(np.frombuffer(cdr, "<f8", self._count, at), self._index, out=out[row])
        return True
