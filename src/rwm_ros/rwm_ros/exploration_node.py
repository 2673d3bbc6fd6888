"""`exploration_controller`: drives the robot with a core exploration controller before any policy exists.

At 50 Hz (the policy rate) it reads the latest /anymal/joint_states by name, asks the controller
(`rwm.sim.controllers`: stand, perturb, gait) for joint targets and publishes them on
/anymal/joint_command. The controller's time starts with the first joint state, so a late robot
does not make the open-loop gait jump. Base velocities and gravity are not read (the core
controllers use only time); their slots of the state stay zero. /anymal/estop holds the pose
measured when it engaged (nothing is sent before the robot has reported one); on release the
controller starts over, blended in from the held pose over `release_s`.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from rwm.robot import contract as C
from rwm.sim.controllers import CONTROLLERS, make_controller
from rwm_ros.conversions import JointMessageError, JointOrder, make_joint_state
from rwm_ros.node_base import declare, raise_middleware_threads
from rwm_ros.spin import spin_node
from rwm_ros.topics import STREAM_WRITER_QOS, reader_qos, subscribe_any_writer


class ExplorationNode(Node):
    """Publishes /anymal/joint_command from `rwm.sim.controllers.make_controller(controller)`."""

    def __init__(self, **kwargs) -> None:
        super().__init__("exploration_controller", **kwargs)
        name = declare(self, "controller", "stand", f"one of {', '.join(CONTROLLERS)}")
        rate_hz = declare(self, "rate_hz", 1.0 / C.POLICY_DT, "command rate, Hz (policy rate)", (1.0, 400.0))
        seed = declare(self, "seed", 0, "random seed of the perturbation")
        self.release_s = declare(
            self,
            "release_s",
            2.0,
            "after an e-stop, s to blend from the held pose to the controller",
            (0.0, 60.0),
        )
        self.controller = make_controller(name)
        self.controller.reset(np.random.default_rng(seed))
        self._order = JointOrder(extra_joints_allowed=True)  # robot joint states
        self._state = np.zeros(C.STATE_DIM)
        self._latest: JointState | None = None
        self._t0_ns: int | None = None
        self.estop = False
        self._hold = np.zeros(C.NUM_JOINTS)
        self._holding = False
        """Whether `_hold` is the pose measured since the e-stop engaged (blended from after release)."""
        self.msg, self._targets, _, _ = make_joint_state()
        self.msg.velocity, self.msg.effort = [], []
        self.pub = self.create_publisher(JointState, C.TOPIC_JOINT_COMMAND, STREAM_WRITER_QOS)
        self.create_subscription(JointState, C.TOPIC_JOINT_STATES, self._on_joint_states, reader_qos(10))
        subscribe_any_writer(self, Bool, C.TOPIC_ESTOP, self._on_estop)
        self.create_timer(1.0 / rate_hz, self._on_timer)
        self.get_logger().info(
            f"controller '{name}' at {rate_hz:.0f} Hz, waiting for {C.TOPIC_JOINT_STATES}; "
            f"{raise_middleware_threads(self)}"
        )

    def _on_joint_states(self, msg: JointState) -> None:
        self._latest = msg  # 400 Hz: keep the reference only; read it at 50 Hz

    def _on_estop(self, msg: Bool) -> None:
        engaged = bool(msg.data)
        if engaged != self.estop:
            self.get_logger().warning(
                f"e-stop {'ENGAGED: holding the measured pose' if engaged else 'released'}"
            )
            if engaged:
                self._holding = False
            self._t0_ns = None  # on release the controller starts over from its beginning
        self.estop = engaged

    def _on_timer(self) -> None:
        msg = self._latest
        if msg is None:
            return
        now = self.get_clock().now()
        if self._t0_ns is None:
            self._t0_ns = now.nanoseconds
            self.get_logger().info("robot found: commanding", once=True)
        s = self._state
        try:
            self._order.read(msg, "position", s[C.JOINT_POS])
            if len(msg.velocity):
                self._order.read(msg, "velocity", s[C.JOINT_VEL])
            if len(msg.effort):
                self._order.read(msg, "effort", s[C.JOINT_TORQUE])
        except JointMessageError as e:
            self.get_logger().warning(f"unreadable joint state: {e}", throttle_duration_sec=2.0)
            return
        if self.estop:
            if not self._holding:
                self._hold[:] = s[C.JOINT_POS]
                self._holding = np.isfinite(self._hold).all()
            if not self._holding:
                return
            self._targets[:] = self._hold
        else:
            t = (now.nanoseconds - self._t0_ns) * 1e-9
            self._targets[:] = self.controller(t, s)
            if self._holding:  # released: from the held pose to the controller's targets
                blend = min(t / self.release_s, 1.0) if self.release_s > 0 else 1.0
                self._targets[:] = (1.0 - blend) * self._hold + blend * self._targets
                self._holding = blend < 1.0
        self.msg.header.stamp = now.to_msg()
        self.pub.publish(self.msg)


def main(args: list[str] | None = None) -> None:
    spin_node(ExplorationNode, args)


if __name__ == "__main__":
    main()
