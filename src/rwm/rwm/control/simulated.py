"""The deployed control path driving simulated robots: one `PolicyLoop` per robot of a batched
simulation, fed the robot's state as the policy node feeds it, so that what the node does beyond the
policy (soft start, command ramp, stand hold, safety filter) can be measured without ROS."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rwm.control.policy_loop import Mode, PolicyLoop
from rwm.control.safety import SafetyConfig
from rwm.robot import contract as C
from rwm.robot.kinematics import AnymalKinematics


class SimulatedControlLoops:
    """(robots, 45) states and (robots, 3) commands in, (robots, 12) joint targets out."""

    def __init__(
        self,
        policy: Callable[[np.ndarray], np.ndarray],
        obs_dim: int,
        robots: int,
        safety: SafetyConfig,
        robot: str = "anymal_d",
    ) -> None:
        kin = AnymalKinematics(robot)
        self.safety = safety
        lower, upper = kin.joint_lower, kin.joint_upper
        stance = kin.standing_targets()
        self.loops = [PolicyLoop(policy, obs_dim, lower, upper, stance, safety) for _ in range(robots)]
        self.targets = np.zeros((robots, C.NUM_JOINTS))

    def __call__(self, state: np.ndarray, command: np.ndarray, t: float) -> np.ndarray:
        for i, loop in enumerate(self.loops):
            s = state[i]
            loop.update_joints(s[C.JOINT_POS], s[C.JOINT_VEL], s[C.JOINT_TORQUE], t)
            loop.update_imu(s[C.GRAVITY], s[C.ANG_VEL], t)
            loop.update_odom(s[C.LIN_VEL], t)
            loop.set_command(*command[i])
            self.targets[i] = loop.tick(t)
        return self.targets

    def count_in(self, mode: Mode) -> int:
        """Robots whose loop is in `mode` now."""
        return sum(loop.mode is mode for loop in self.loops)
