"""Topics of the stack beyond the robot contract (CONTRACT.md lists the contract's own), the QoS its
stream writers use, and what is recorded (the logger) and shown live (the Foxglove bridge)."""

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float32, Float32MultiArray, String
from tf2_msgs.msg import TFMessage

from rwm.export.anomaly import ERROR_TOPIC
from rwm.robot import contract as C

STREAM_WRITER_QOS = QoSProfile(depth=400, reliability=ReliabilityPolicy.RELIABLE)
"""Writers of the robot streams keep 1 s at 400 Hz. A reliable writer whose history is full waits in
publish() for the slowest reliable reader to acknowledge; with a depth of 10, a data logger starved for
25 ms (400 Hz) or 200 ms (50 Hz) stalled the physics loop and the policy (measured: p99 170 ms)."""


def reader_qos(depth: int) -> QoSProfile:
    """Readers of the contract's topics that act on the newest sample (the policy, the simulated
    robot's command input, the monitor, the state publisher): best effort, which matches writers of
    either reliability. A reliable reader never connects to a best-effort writer, the usual QoS of a
    robot driver's sensor streams (rclpy's `qos_profile_sensor_data`) and of many teleop tools. The
    data logger alone reads reliably: it must lose nothing a reliable writer sends."""
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)


def subscribe_any_writer(node, msg_type: type, topic: str, callback, depth: int = 10) -> list:
    """An operator's topic (/cmd_vel, /anymal/estop) read twice, reliably and best-effort, into one
    callback: a reliable writer's message is delivered reliably (an e-stop sent once is not lost with
    a dropped packet), a best-effort writer is heard too. The callback sees a reliable writer's
    messages twice, so it must be idempotent."""
    return [
        node.create_subscription(msg_type, topic, callback, QoSProfile(depth=depth, reliability=r))
        for r in (ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT)
    ]


TOPIC_OBSERVATION = "/rwm/policy/observation"
"""std_msgs/Float32MultiArray: the policy's observation at each tick in policy mode (for the logger)."""
TOPIC_ACTION = "/rwm/policy/action"
"""std_msgs/Float32MultiArray: the policy's raw action u at each tick in policy mode."""
TOPIC_WM_RELOAD = "/rwm/world_model/reload"
"""std_msgs/String: path of a validated world-model ONNX for the world-model node to load."""
TOPIC_WM_PREDICTION = "/rwm/world_model/prediction"
"""std_msgs/Float32MultiArray: the predicted next state (45, contract layout)."""
TOPIC_WM_ERROR = ERROR_TOPIC
"""std_msgs/Float32, 50 Hz: one-step error of the last prediction against the measured state (mean
absolute error, each channel in units of the std predicted with it:
`rwm.export.anomaly.monitor_step_error`)."""
TOPIC_WM_ANOMALY = "/rwm/world_model/anomaly"
"""std_msgs/Bool, `FLAG_QOS`: true while the prediction error stays above the threshold; published
false at start and at every change."""
FLAG_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
"""A flag published only when it changes: a reader that joins late still gets its current value (the
monitor's first alarm can come 1.2 s after start, before a slow reader has matched; volatile, it was
lost). Readers of either durability match it."""
TOPIC_WM_UNCERTAINTY = "/rwm/world_model/uncertainty"
"""std_msgs/Float32, 50 Hz: the ensemble's disagreement on its last prediction (epistemic; normalized)."""
TOPIC_POLICY_RELOAD = "/rwm/policy/reload"
"""std_msgs/String: an ONNX policy version (a file in the policy node's versions directory) to swap in."""
TOPIC_ROBOT_DESCRIPTION = "/robot_description"
"""std_msgs/String, latched: the URDF of the robot in use (the state publisher)."""
TOPIC_TF = "/tf"
"""tf2_msgs/TFMessage: odom -> base and the leg links' transforms."""
TOPIC_TF_STATIC = "/tf_static"
"""tf2_msgs/TFMessage, latched: the URDF's fixed transforms."""

RECORDED: dict[str, tuple[type, str]] = {
    C.TOPIC_JOINT_STATES: (JointState, "sensor_msgs/msg/JointState"),
    C.TOPIC_IMU: (Imu, "sensor_msgs/msg/Imu"),
    C.TOPIC_ODOM: (Odometry, "nav_msgs/msg/Odometry"),
    C.TOPIC_CONTACTS: (Float32MultiArray, "std_msgs/msg/Float32MultiArray"),
    C.TOPIC_JOINT_COMMAND: (JointState, "sensor_msgs/msg/JointState"),
    C.TOPIC_CMD_VEL: (Twist, "geometry_msgs/msg/Twist"),
    C.TOPIC_ESTOP: (Bool, "std_msgs/msg/Bool"),
    TOPIC_OBSERVATION: (Float32MultiArray, "std_msgs/msg/Float32MultiArray"),
    TOPIC_ACTION: (Float32MultiArray, "std_msgs/msg/Float32MultiArray"),
    TOPIC_WM_ERROR: (Float32, "std_msgs/msg/Float32"),
    TOPIC_WM_ANOMALY: (Bool, "std_msgs/msg/Bool"),
    TOPIC_TF: (TFMessage, "tf2_msgs/msg/TFMessage"),
    TOPIC_TF_STATIC: (TFMessage, "tf2_msgs/msg/TFMessage"),
    TOPIC_ROBOT_DESCRIPTION: (String, "std_msgs/msg/String"),
}
"""Topic -> (message class, type name) of everything the logger records. The monitor's error and
anomaly are there so that an alarm can be traced afterwards to the steps and the states it judged."""
LATCHED = frozenset({TOPIC_TF_STATIC, TOPIC_ROBOT_DESCRIPTION})
"""Topics published once (transient local): subscribed as such, and repeated at the start of every split."""
