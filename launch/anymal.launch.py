"""The RWM stack on ANYmal D: `ros2 launch rwm_bringup anymal.launch.py [name:=value ...]`.

The one definition of the stack: `make run`, the tests and the benches start it through this file.
`ros2 launch rwm_bringup anymal.launch.py --show-args` lists the arguments. Every node is required:
when one exits, the stack shuts down (a node that fails makes `ros2 launch` exit non-zero). Ctrl-C
stops every node cleanly: the data logger writes all it received and closes its bag (rwm_ros.spin).
"""

import atexit
import os
import shutil
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    Shutdown,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown as ShutdownEvent
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from rwm.sim.variants import variant_named
from rwm_ros.middleware import profile_overridden, remove_zombie_shm_files, stack_dds_env
from rwm_ros.model_files import models_for_robot

BOOL = ["true", "false"]
ARGUMENTS = [
    (
        "robot",
        "anymal_d",
        "robot model; its models are <robot>_ppo.onnx, <robot>_rwmu.onnx (+ .pt)",
        ["anymal_d", "anymal_c"],
    ),
    ("sim", "true", "start the simulated robot (false: a robot driver provides the topics)", BOOL),
    ("variant", "nominal", "the simulated robot's variant (config/robot_variants.yaml: payload, ...)", None),
    ("policy", "true", "the policy node drives the robot (false: the exploration controller does)", BOOL),
    ("policy_file", "", "ONNX policy: a path or a name in models/ (empty: <robot>_ppo.onnx)", None),
    ("sequence", "true", "play the scripted /cmd_vel sequence (config/command_sequence.yaml)", BOOL),
    ("record", "true", "record the topics (rosbag2 MCAP) into bag_dir with the data logger", BOOL),
    ("state_publisher", "true", "publish /robot_description, /tf and /tf_static (RViz, Foxglove)", BOOL),
    (
        "foxglove",
        "false",
        "live view: Foxglove WebSocket on ws://localhost:8765 (config/foxglove.yaml)",
        BOOL,
    ),
    ("bag_dir", "replay_buffer", "the replay buffer: where the data logger's bags go", None),
    ("world_model", "false", "RWM health monitor on the live robot", BOOL),
    (
        "world_model_file",
        "",
        "the monitor's ONNX: a path or a name in models/ (empty: <robot>_rwmu.onnx)",
        None,
    ),
    (
        "trainer",
        "false",
        "refine RWM and adapt the policy from bag_dir's bags (its own process, nice 19; heavy)",
        BOOL,
    ),
    ("controller", "stand", "exploration controller when policy:=false", ["stand", "perturb", "gait"]),
    ("namespace", "", "node namespace (the contract's topics are absolute and do not move)", None),
    ("params_file", "", "extra ROS parameter file for every node (sections by node name)", None),
    (
        "use_sim_time",
        "false",
        "every node runs on /clock: the simulated robot publishes it (with sim:=false, the robot's "
        "driver or `ros2 bag play --clock` must)",
        BOOL,
    ),
    ("duration", "0", "stop the stack after this many seconds (0: run until Ctrl-C)", None),
    ("report", "false", "the stack probe prints tracking, latency, rates and CPU at the end", BOOL),
    ("report_dir", "", "report:=true also writes report.json and its PNGs (tracking, latency) here", None),
]
"""(name, default, description, choices) of every launch argument."""


def _stack(context):
    """The nodes for the given arguments; a bad combination fails here with what to do instead."""
    names = [name for name, *_ in ARGUMENTS]
    unknown = sorted(set(context.launch_configurations) - set(names))
    if unknown:  # launch itself ignores them: a misspelt argument would silently do nothing
        raise ValueError(f"unknown argument(s) {unknown}; the arguments are {names} (--show-args)")
    arg = {name: LaunchConfiguration(name).perform(context) for name in names}
    on = {name: arg[name] == "true" for name, _, _, choices in ARGUMENTS if choices == BOOL}
    try:
        duration = float(arg["duration"])
    except ValueError:
        duration = -1.0
    if not duration >= 0.0:
        raise ValueError(f"duration:={arg['duration']} is not a number of seconds >= 0 (0: until Ctrl-C)")
    models = models_for_robot(
        arg["robot"],
        policy=(arg["policy_file"] or None) if on["policy"] else False,
        world_model=on["world_model"] or on["trainer"],
        world_model_file=arg["world_model_file"] or None,
    )
    config = os.path.join(get_package_share_directory("rwm_bringup"), "config")
    variant_named(arg["variant"], os.path.join(config, "robot_variants.yaml"))  # a clear error if unknown

    robot = {"robot": arg["robot"]}
    await_logger = {"await_reader": "data_logger"} if on["record"] else {}  # the bags miss nothing
    sim_time = {"use_sim_time": True} if on["use_sim_time"] else {}
    report_file = os.path.join(os.path.abspath(arg["report_dir"]), "report.json") if arg["report_dir"] else ""
    # (executable, node name, parameter file in config/, runs, parameters from the arguments, extras)
    nodes = [
        # the simulated robot is the clock's source: it publishes /clock rather than reading it
        ("sim_node", "anymal_sim", "sim.yaml", on["sim"],
         {**robot, "variant": arg["variant"], **({"publish_clock": True} if sim_time else {}),
          **await_logger}, {}),
        ("policy_node", "policy", "policy.yaml", on["policy"],
         {**robot, "policy": str(models.get("policy")), **await_logger}, {}),
        ("command_sequence_node", "command_sequence", "command_sequence.yaml",
         on["policy"] and on["sequence"], await_logger, {}),
        ("logger_node", "data_logger", "logger.yaml", on["record"], {"directory": arg["bag_dir"]}, {}),
        ("state_publisher_node", "state_publisher", "state_publisher.yaml", on["state_publisher"],
         {**robot, **await_logger}, {}),
        ("foxglove_bridge_node", "foxglove_bridge", "foxglove.yaml", on["foxglove"], robot, {}),
        ("world_model_node", "world_model", "world_model.yaml", on["world_model"],
         {**robot, "model": str(models.get("world_model"))}, {}),
        ("trainer_node", "world_model_trainer", "trainer.yaml", on["trainer"],
         {"replay_buffer": arg["bag_dir"], "checkpoint": str(models.get("checkpoint")),
          **({"policy": str(models["policy"])} if models.get("policy") else {"adapt_policy": False})},
         {"prefix": "nice -n 19"}),  # training never takes the CPU from the control path
        ("exploration_node", "exploration_controller", "exploration.yaml", not on["policy"],
         {"controller": arg["controller"]}, {}),
        # with report:=true the probe ends the run itself, after its figures are taken from the running stack
        ("stack_probe", "stack_probe", "stack_probe.yaml", on["report"],
         {"duration_s": duration, "report_file": report_file}, {}),
    ]  # fmt: skip
    extra = [arg["params_file"]] if arg["params_file"] else []
    # The nodes read their parameter files as they start, which may come after a shutdown began (a
    # Ctrl-C during start-up): the files go when the launch process exits, after every node.
    parameter_dir = tempfile.mkdtemp(prefix="rwm_launch_")
    atexit.register(shutil.rmtree, parameter_dir, True)
    if sim_time:  # every node but the clock's source runs on /clock
        nodes = [(e, n, c, r, p if n == "anymal_sim" else {**p, **sim_time}, x) for e, n, c, r, p, x in nodes]
    actions = [
        Node(
            package="rwm_ros",
            executable=executable,
            name=name,
            namespace=arg["namespace"],
            parameters=[
                os.path.join(config, config_file),
                *([_node_parameter_file(parameter_dir, name, parameters)] if parameters else []),
                *extra,
            ],
            output="screen",
            emulate_tty=True,
            **extras,
        )
        for executable, name, config_file, runs, parameters, extras in nodes
        if runs
    ]
    if duration > 0.0 and not on["report"]:
        actions.append(
            TimerAction(period=duration, actions=[EmitEvent(event=ShutdownEvent(reason="duration"))])
        )
    return actions


def _node_parameter_file(directory: str, name: str, parameters: dict) -> str:
    """The parameters the arguments give one node, as a file keyed by the node's name like its config
    file. rcl applies the entries of all parameter files by key, in the order the keys first appear,
    and launch_ros writes a dict under `/**`: a dict would come after every `/**/<name>` entry and
    so beat `params_file`. Keyed by name, the files merge in order: config < arguments < params_file."""
    path = os.path.join(directory, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({f"/**/{name}": {"ros__parameters": parameters}}, f)
    return path


def _any_exit_ends_the_stack(event, context):
    """A node that ends takes the stack down; one that failed makes launch's exit code non-zero."""
    if event.returncode != 0:
        raise RuntimeError(f"{event.action.name} exited with code {event.returncode}: the stack stops")
    return None if context.is_shutdown else [Shutdown(reason=f"{event.action.name} exited")]


def _remove_zombie_shm_files(context):
    """Before any node starts: the shared-memory ports are created anew, with the profile's timeouts."""
    removed = remove_zombie_shm_files()
    if removed:
        return [LogInfo(msg=f"removed {len(removed)} Fast DDS shared-memory files no process holds")]
    return None


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description, choices=choices)
        for name, default, description, choices in ARGUMENTS
    ]
    # Fast DDS's shared-memory port health check bounded at 30 ms (rwm_ros.middleware, config/fastdds.xml)
    dds = [SetEnvironmentVariable(k, v) for k, v in stack_dds_env().items() if k not in os.environ]
    if profile_overridden(os.environ):
        dds.append(
            LogInfo(
                msg="WARNING: with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST rmw_fastrtps replaces the stack's "
                "Fast DDS transports with its own, whose shared-memory health check can stop the policy's "
                "joint states for 333 ms when a node joins; keep the stack apart with ROS_DOMAIN_ID instead"
            )
        )
    return LaunchDescription(
        [
            *declared,
            *dds,
            RegisterEventHandler(OnProcessExit(on_exit=_any_exit_ends_the_stack)),
            OpaqueFunction(function=_remove_zombie_shm_files),
            OpaqueFunction(function=_stack),
        ]
    )
