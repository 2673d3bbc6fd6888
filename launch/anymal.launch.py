"""The RWM stack on ANYmal D for ROS 2 installs: `ros2 launch rwm_bringup anymal.launch.py [robot:=anymal_c]`.

Machines with rclpy from PyPI only (no launch_ros) run the same stack with
`python -m rwm_ros.runner --config config/anymal.yaml`; keep the two in step.
Arguments: robot (anymal_d|anymal_c), sim (start the simulated robot), policy (the policy node drives
the robot; else the exploration controller does), policy_file (ONNX path or name in models/), sequence
(play the scripted /cmd_vel sequence), record (data logger into replay_buffer/), world_model (RWM
health monitor), trainer (offline refinement from replay_buffer/), namespace (node namespace;
the contract's topics are absolute), controller (exploration: stand|perturb|gait).
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
                default_value="true",
                choices=["true", "false"],
                description="the policy node drives the robot (false: the exploration controller does)",
            ),
            DeclareLaunchArgument(
                "policy_file",
                default_value="anymal_d_ppo.onnx",
                description="ONNX policy: path or name in models/",
            ),
            DeclareLaunchArgument(
                "sequence",
                default_value="true",
                choices=["true", "false"],
                description="play the scripted /cmd_vel sequence (command_sequence parameters)",
            ),
            DeclareLaunchArgument(
                "record",
                default_value="true",
                choices=["true", "false"],
                description="record the topics into replay_buffer/ (rosbag2 MCAP) with the data logger",
            ),
            DeclareLaunchArgument(
                "world_model",
                default_value="false",
                choices=["true", "false"],
                description="RWM health monitor on the live robot (needs models/anymal_d_rwm.onnx)",
            ),
            DeclareLaunchArgument(
                "trainer",
                default_value="false",
                choices=["true", "false"],
                description="offline refinement of RWM from replay_buffer/ (its own process; heavy)",
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
                executable="policy_node",
                name="policy",
                namespace=namespace,
                parameters=[
                    os.path.join(config, "policy.yaml"),
                    {"robot": robot, "policy": LaunchConfiguration("policy_file")},
                ],
                condition=IfCondition(policy),
                output="screen",
                emulate_tty=True,
            ),
            Node(
                package="rwm_ros",
                executable="command_sequence_node",
                name="command_sequence",
                namespace=namespace,
                parameters=[os.path.join(config, "command_sequence.yaml")],
                condition=IfCondition(
                    PythonExpression(
                        ["'", policy, "' == 'true' and '", LaunchConfiguration("sequence"), "' == 'true'"]
                    )
                ),
                output="screen",
                emulate_tty=True,
            ),
            Node(
                package="rwm_ros",
                executable="logger_node",
                name="data_logger",
                namespace=namespace,
                parameters=[os.path.join(config, "logger.yaml")],
                condition=IfCondition(LaunchConfiguration("record")),
                output="screen",
                emulate_tty=True,
            ),
            Node(
                package="rwm_ros",
                executable="world_model_node",
                name="world_model",
                namespace=namespace,
                parameters=[os.path.join(config, "world_model.yaml")],
                condition=IfCondition(LaunchConfiguration("world_model")),
                output="screen",
                emulate_tty=True,
            ),
            Node(
                package="rwm_ros",
                executable="trainer_node",
                name="world_model_trainer",
                namespace=namespace,
                parameters=[os.path.join(config, "trainer.yaml")],
                condition=IfCondition(LaunchConfiguration("trainer")),
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
