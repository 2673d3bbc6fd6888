"""Write rosbag2 recordings of the contract topics without ROS, as `ros2 bag record` would store them.

Simulated data then takes the same path as data from the real robot: a bag, read by one loader.
Messages use the standard ROS 2 Kilted types and are stored in CDR with their definitions, header
stamp = log time = sample time. Topics are created on their first message, like a recorder that
discovers publishers, so a topic that is never written is absent from the bag.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from rwm.data.bag_recovery import LATCHED_QOS, OFFERED_QOS
from rwm.robot import contract as C

if TYPE_CHECKING:  # writing bags imports no MuJoCo
    from rwm.sim.anymal_sim import AnymalSim

TYPESTORE: Stores = Stores.ROS2_KILTED
"""The ROS 2 distribution whose message definitions the bags carry (the project's distribution)."""

TOPIC_TYPES: dict[str, str] = {
    C.TOPIC_JOINT_STATES: "sensor_msgs/msg/JointState",
    C.TOPIC_IMU: "sensor_msgs/msg/Imu",
    C.TOPIC_ODOM: "nav_msgs/msg/Odometry",
    C.TOPIC_CONTACTS: "std_msgs/msg/Float32MultiArray",
    C.TOPIC_JOINT_COMMAND: "sensor_msgs/msg/JointState",
    C.TOPIC_CMD_VEL: "geometry_msgs/msg/Twist",
}
"""Message type of each contract topic that bags record."""

STORAGES = ("mcap", "sqlite3")


@dataclass
class RobotSample:
    """One 400 Hz reading of the robot's drivers; vectors in contract order."""

    joint_pos: np.ndarray
    """(12,) rad."""
    joint_vel: np.ndarray
    """(12,) rad/s."""
    joint_effort: np.ndarray
    """(12,) applied torques, Nm."""
    base_position: np.ndarray
    """(3,) in the odom frame, m."""
    base_orientation: np.ndarray
    """(4,) world-to-base quaternion (w, x, y, z)."""
    base_lin_vel: np.ndarray
    """(3,) base frame, m/s."""
    base_ang_vel: np.ndarray
    """(3,) base frame, rad/s."""
    imu_lin_acc: np.ndarray
    """(3,) specific force at the IMU, base frame, m/s^2."""
    contacts: np.ndarray | None = None
    """(8,) contact flags, or None where the robot has no contact sensing (hardware)."""

    @classmethod
    def from_sim(cls, sim: AnymalSim) -> RobotSample:
        """Read what the drivers of the simulated robot would publish now."""
        lin, ang = sim.base_twist()
        return cls(
            joint_pos=sim.joint_positions.copy(),
            joint_vel=sim.joint_velocities.copy(),
            joint_effort=sim.joint_torques,
            base_position=sim.base_position,
            base_orientation=sim.base_orientation,
            base_lin_vel=lin,
            base_ang_vel=ang,
            imu_lin_acc=sim.imu_linear_acceleration,
            contacts=sim.contacts.copy(),
        )


class BagWriter:
    """A rosbag2 directory (metadata.yaml + one .mcap or .db3 file) on the contract topics."""

    def __init__(
        self, path: str | Path, storage: str = "mcap", joint_order: Sequence[str] = C.JOINT_NAMES
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown bag storage {storage!r}; choose one of {STORAGES}")
        if sorted(joint_order) != sorted(C.JOINT_NAMES):
            raise ValueError(
                f"joint_order must be a permutation of {list(C.JOINT_NAMES)}, got {list(joint_order)}"
            )
        self.path = Path(path)
        self.storage = storage
        self.joint_order = tuple(joint_order)
        """Order in which the joint messages list the joints (a driver's own order; readers map by name)."""
        self._to_order = np.array([C.JOINT_NAMES.index(n) for n in self.joint_order])
        self.typestore: Typestore = get_typestore(TYPESTORE)
        self.counts: dict[str, int] = {}
        """Messages written per topic."""
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self._connections: dict[str, Connection] = {}
        self._open = False
        self._directory_synced = False
        t = self.typestore.types
        self._Header, self._Time = t["std_msgs/msg/Header"], t["builtin_interfaces/msg/Time"]
        self._JointState, self._Imu, self._Odometry = (
            t["sensor_msgs/msg/JointState"],
            t["sensor_msgs/msg/Imu"],
            t["nav_msgs/msg/Odometry"],
        )
        self._Vector3, self._Quaternion, self._Point = (
            t["geometry_msgs/msg/Vector3"],
            t["geometry_msgs/msg/Quaternion"],
            t["geometry_msgs/msg/Point"],
        )
        self._Pose, self._PoseCov = t["geometry_msgs/msg/Pose"], t["geometry_msgs/msg/PoseWithCovariance"]
        self._Twist, self._TwistCov = t["geometry_msgs/msg/Twist"], t["geometry_msgs/msg/TwistWithCovariance"]
        self._Float32MultiArray = t["std_msgs/msg/Float32MultiArray"]
        self._Layout, self._Dim = t["std_msgs/msg/MultiArrayLayout"], t["std_msgs/msg/MultiArrayDimension"]

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> BagWriter:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Create the bag directory; it must not exist yet (bags are never overwritten)."""
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} already exists; choose a new path or delete it first")
        self._writer.open()
        self._open = True

    def flush(self) -> None:
        """Put everything written so far on the disk: the open MCAP chunk is closed (sqlite3 commits) and
        the file synced. A writer killed after this loses only what came later (`rwm bag-recover`)."""
        storage = self._writer.storage
        if isinstance(storage, McapWriter):
            if storage.chunk.msgs:
                storage.close_chunk()
            storage.bio.flush()
            os.fsync(storage.bio.fileno())
        elif storage is not None:
            storage.conn.commit()
        if not self._directory_synced:  # the new directory's entries too (once), for a power cut
            for d in (self.path, self.path.parent):
                fd = os.open(d, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self._directory_synced = True

    def close(self) -> None:
        """Finish the storage file and write metadata.yaml."""
        if self._open:
            self._open = False
            self._writer.close()

    # -- generic ------------------------------------------------------------------------------
    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialize `msg` (a typestore message of the topic's type) with log time `stamp_ns`."""
        if not self._open:
            raise RuntimeError(f"bag {self.path} is not open; use BagWriter as a context manager")
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(
                topic, TOPIC_TYPES[topic], typestore=self.typestore, offered_qos_profiles=[OFFERED_QOS]
            )
            self._connections[topic] = conn
        self._writer.write(conn, int(stamp_ns), self.typestore.serialize_cdr(msg, TOPIC_TYPES[topic]))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_raw(
        self, topic: str, msgtype: str, cdr: bytes, log_time_ns: int, latched: bool = False
    ) -> None:
        """Store an already serialized message (CDR bytes as DDS delivered them) of type `msgtype`;
        a `latched` topic is stored with a transient-local publisher QoS."""
        if not self._open:
            raise RuntimeError(f"bag {self.path} is not open; use BagWriter as a context manager")
        conn = self._connections.get(topic)
        if conn is None:
            qos = LATCHED_QOS if latched else OFFERED_QOS
            conn = self._writer.add_connection(
                topic, msgtype, typestore=self.typestore, offered_qos_profiles=[qos]
            )
            self._connections[topic] = conn
        self._writer.write(conn, int(log_time_ns), cdr)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return self._Header(stamp=self._Time(sec=sec, nanosec=nanosec), frame_id=frame_id)

    def _vec3(self, v: np.ndarray) -> Any:
        return self._Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))

    def _quat(self, wxyz: np.ndarray) -> Any:
        return self._Quaternion(x=float(wxyz[1]), y=float(wxyz[2]), z=float(wxyz[3]), w=float(wxyz[0]))

    # -- robot -> stack -----------------------------------------------------------------------
    def write_joint_states(
        self,
        stamp_ns: int,
        position: np.ndarray,
        velocity: np.ndarray,
        effort: np.ndarray,
        names: Sequence[str],
    ) -> None:
        """/anymal/joint_states with the values listed in the order of `names`."""
        msg = self._JointState(
            header=self._header(stamp_ns, ""),
            name=list(names),
            position=np.asarray(position, dtype=np.float64),
            velocity=np.asarray(velocity, dtype=np.float64),
            effort=np.asarray(effort, dtype=np.float64),
        )
        self.write(C.TOPIC_JOINT_STATES, msg, stamp_ns)

    def write_imu(
        self, stamp_ns: int, orientation_wxyz: np.ndarray, ang_vel: np.ndarray, lin_acc: np.ndarray
    ) -> None:
        """/anymal/imu: world-to-base orientation, base-frame angular velocity and specific force."""
        zeros = np.zeros(9)
        msg = self._Imu(
            header=self._header(stamp_ns, C.BASE_FRAME),
            orientation=self._quat(orientation_wxyz),
            orientation_covariance=zeros,
            angular_velocity=self._vec3(ang_vel),
            angular_velocity_covariance=zeros,
            linear_acceleration=self._vec3(lin_acc),
            linear_acceleration_covariance=zeros,
        )
        self.write(C.TOPIC_IMU, msg, stamp_ns)

    def write_odom(
        self,
        stamp_ns: int,
        position: np.ndarray,
        orientation_wxyz: np.ndarray,
        lin_vel: np.ndarray,
        ang_vel: np.ndarray,
    ) -> None:
        """/anymal/odom: pose in `odom`, twist in `base`."""
        zeros = np.zeros(36)
        point = self._Point(x=float(position[0]), y=float(position[1]), z=float(position[2]))
        pose = self._Pose(position=point, orientation=self._quat(orientation_wxyz))
        twist = self._Twist(linear=self._vec3(lin_vel), angular=self._vec3(ang_vel))
        msg = self._Odometry(
            header=self._header(stamp_ns, C.ODOM_FRAME),
            child_frame_id=C.BASE_FRAME,
            pose=self._PoseCov(pose=pose, covariance=zeros),
            twist=self._TwistCov(twist=twist, covariance=zeros),
        )
        self.write(C.TOPIC_ODOM, msg, stamp_ns)

    def write_contacts(self, stamp_ns: int, flags: np.ndarray) -> None:
        """/anymal/contacts: the 8 contact flags (knees, then feet)."""
        layout = self._Layout(
            dim=[self._Dim(label="flags", size=C.CONTACT_DIM, stride=C.CONTACT_DIM)], data_offset=0
        )
        msg = self._Float32MultiArray(layout=layout, data=np.asarray(flags, dtype=np.float32))
        self.write(C.TOPIC_CONTACTS, msg, stamp_ns)

    def write_robot_sample(self, stamp_ns: int, sample: RobotSample | AnymalSim) -> None:
        """Everything the robot publishes at one physics step (contacts only where the sample has them)."""
        s = sample if isinstance(sample, RobotSample) else RobotSample.from_sim(sample)
        o = self._to_order
        self.write_joint_states(stamp_ns, s.joint_pos[o], s.joint_vel[o], s.joint_effort[o], self.joint_order)
        self.write_imu(stamp_ns, s.base_orientation, s.base_ang_vel, s.imu_lin_acc)
        self.write_odom(stamp_ns, s.base_position, s.base_orientation, s.base_lin_vel, s.base_ang_vel)
        if s.contacts is not None:
            self.write_contacts(stamp_ns, s.contacts)

    # -- stack -> robot, operator -> stack ------------------------------------------------------
    def write_joint_command(self, stamp_ns: int, targets: np.ndarray) -> None:
        """/anymal/joint_command: joint position targets (12,), contract order, rad."""
        targets = np.asarray(targets, dtype=np.float64)
        msg = self._JointState(
            header=self._header(stamp_ns, ""),
            name=list(self.joint_order),
            position=targets[self._to_order],
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )
        self.write(C.TOPIC_JOINT_COMMAND, msg, stamp_ns)

    def write_cmd_vel(self, stamp_ns: int, cmd: np.ndarray) -> None:
        """/cmd_vel: (vx, vy, yaw rate); Twist has no header, so the log time is its stamp."""
        msg = self._Twist(linear=self._vec3([cmd[0], cmd[1], 0.0]), angular=self._vec3([0.0, 0.0, cmd[2]]))
        self.write(C.TOPIC_CMD_VEL, msg, stamp_ns)
