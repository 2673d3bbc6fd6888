"""Message <-> numpy helpers: reading by joint name, rejecting bad commands whole, in-place buffers."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("sensor_msgs")
from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from rwm.robot import contract as C  # noqa: E402
from rwm.robot.frames import gravity_z_at_tilt, projected_gravity, quat_rotate_inverse  # noqa: E402
from rwm_ros.conversions import (  # noqa: E402
    JointMessageError,
    JointOrder,
    joint_command,
    joint_targets_from_command,
    make_joint_state,
    set_stamp_ns,
    stamp_to_ns,
)


def command(names: list[str], position: list[float]) -> JointState:
    msg = JointState()
    msg.name, msg.position = names, position
    return msg


def test_reordered_names_map_to_contract_order() -> None:
    names = list(reversed(C.JOINT_NAMES))
    values = [float(i) for i in range(12)]  # value i belongs to names[i]
    targets = joint_targets_from_command(command(names, values), JointOrder())
    for i, name in enumerate(C.JOINT_NAMES):
        assert targets[i] == values[names.index(name)]


@pytest.mark.parametrize(
    "names,position,reason",
    [
        (list(C.JOINT_NAMES), [0.0] * 11 + [math.nan], "nan"),
        (list(C.JOINT_NAMES), [0.0] * 11 + [math.inf], "nan"),
        (list(C.JOINT_NAMES[:11]), [0.0] * 11, "missing"),
        ([*C.JOINT_NAMES, "XX_HAA"], [0.0] * 13, "unknown"),
        ([*C.JOINT_NAMES[:11], "LF_HAA"], [0.0] * 12, "duplicate"),
        (list(C.JOINT_NAMES), [0.0] * 11, "length"),
    ],
)
def test_bad_commands_are_rejected_with_a_reason(
    names: list[str], position: list[float], reason: str
) -> None:
    with pytest.raises(JointMessageError) as e:
        joint_targets_from_command(command(names, position), JointOrder())
    assert e.value.reason == reason


def test_joint_states_may_name_more_joints_than_the_contract() -> None:
    """A robot's joint states may carry joints beyond the contract's 12 (an arm): ignored, the 12
    read by name; a command naming a joint the robot lacks is still refused."""
    names = ["ARM_J1", *reversed(C.JOINT_NAMES), "ARM_J2"]
    msg = command(names, [float(i) for i in range(14)])
    q = JointOrder(extra_joints_allowed=True).read(msg, "position")
    assert [q[i] for i in range(12)] == [float(names.index(n)) for n in C.JOINT_NAMES]
    with pytest.raises(JointMessageError) as e:
        JointOrder().read(msg, "position")
    assert e.value.reason == "unknown"
    missing = command(["ARM_J1", *C.JOINT_NAMES[:11]], [0.0] * 12)
    with pytest.raises(JointMessageError) as e:
        JointOrder(extra_joints_allowed=True).read(missing, "position")
    assert e.value.reason == "missing"


def test_joint_order_cache_follows_name_changes() -> None:
    order = JointOrder()
    a = order.index(list(C.JOINT_NAMES))
    b = order.index(list(reversed(C.JOINT_NAMES)))
    assert a.tolist() == list(range(12)) and b.tolist() == list(range(11, -1, -1))


def test_preallocated_joint_state_is_filled_in_place() -> None:
    msg, q, dq, tau = make_joint_state()
    q[:] = C.DEFAULT_JOINT_POS
    tau[3] = 5.0
    assert list(msg.position) == C.DEFAULT_JOINT_POS.tolist()
    assert msg.effort[3] == 5.0 and list(msg.name) == list(C.JOINT_NAMES)


def test_joint_command_round_trip() -> None:
    msg = joint_command(C.DEFAULT_JOINT_POS)
    np.testing.assert_array_equal(joint_targets_from_command(msg, JointOrder()), C.DEFAULT_JOINT_POS)
    with pytest.raises(ValueError):
        joint_command(np.full(12, np.nan))


def test_stamps_and_quaternions() -> None:
    t = Time()
    set_stamp_ns(t, 12_345_678_901_234)
    assert (t.sec, t.nanosec) == (12_345, 678_901_234) and stamp_to_ns(t) == 12_345_678_901_234
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        np.testing.assert_allclose(
            projected_gravity(q), quat_rotate_inverse(q, np.array([0.0, 0.0, -1.0])), atol=1e-12
        )


def test_a_tilt_in_degrees_is_the_gravity_z_of_a_base_so_tilted() -> None:
    """Fall and start thresholds in degrees match the projected gravity of a base rotated that far."""
    for deg in (0.0, 20.0, 60.0):
        half = np.radians(deg) / 2
        pitched = np.array([np.cos(half), 0.0, np.sin(half), 0.0])
        assert gravity_z_at_tilt(deg) == pytest.approx(projected_gravity(pitched)[2], abs=1e-12)
    assert gravity_z_at_tilt(60.0) == pytest.approx(-0.5)
