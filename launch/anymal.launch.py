"""The RWM stack on ANYmal D for ROS 2 installs: `ros2 launch rwm_bringup anymal.launch.py [robot:=anymal_c]`.

Machines with rclpy from PyPI only (no launch_ros) run the same stack with
`python -m rwm_ros.runner --config config/anymal.yaml`; keep the two in step.
Arguments: robot (anymal_d|anymal_c), sim (start the simulated robot), policy (a policy drives the
robot; else the exploration controller does), record (bag logger, not built yet), namespace (node
namespace; the contract's topics are absolute), controller (exploration: stand|perturb|gait).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    config = os.path.join(get_package_share_directory("rwm_bringup"), "config")
    robot = LaunchConfiguration("robot")
    sim = LaunchConfiguration("sim")
    policy = LaunchConfiguration("policy")
    namespace = LaunchConfiguration("namespace")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "robot", default_value="anymal_d", choices=["anymal_d", "anymal_c"], description="robot model"
            ),
            DeclareLaunchArgument(
                "sim",
                default_value="true",
                choices=["true", "false"],
                description="start the simulated robot (false: a robot driver provides the topics)",
            ),
            DeclareLaunchArgument(
                "policy",
                default_value="false",
                choices=["true", "false"],
                description="a policy drives the robot (false: the exploration controller does)",
            ),
            DeclareLaunchArgument(
                "record",
                default_value="false",
                choices=["true", "false"],
                description="record a bag (logger node: not built yet)",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            DeclareLaunchArgument(
                "controller",
                default_value="stand",
                choices=["stand", "perturb", "gait"],
                description="exploration controller",
            ),
            Node(
                package="rwm_ros",
                executable="sim_node",
                name="anymal_sim",
                namespace=namespace,
                parameters=[os.path.join(config, "sim.yaml"), {"robot": robot}],
                condition=IfCondition(sim),
                output="screen",
                emulate_tty=True,
            ),
            Node(
                package="rwm_ros",
                executable="exploration_node",
                name="exploration_controller",
                namespace=namespace,
                parameters=[
                    os.path.join(config, "exploration.yaml"),
                    {"controller": LaunchConfiguration("controller")},
                ],
                condition=IfCondition(PythonExpression(["'", policy, "' != 'true'"])),
                output="screen",
                emulate_tty=True,
            ),
        ]
    )
