"""Only on a leased GPU machine (tools/gpu_lease/wm_table_gpu.sh puts this folder on PYTHONPATH).

Pinocchio's wheels (93 MB) cannot travel there within the lease's 64 MiB; the simulator uses it only for
the 12 drive targets that hold the standing pose (`AnymalKinematics.standing_targets`). Those were
computed by pinocchio on the machine that prepared the lease (`prepare.sh`) and stand in here, for the
URDF whose SHA-256 they were computed from and no other.
"""

import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np

_SAVED = json.loads((Path(__file__).parent / "stance_targets.json").read_text())


class AnymalKinematics:
    """The standing targets of the prepared URDF; every other use of the kinematics fails loudly."""

    def __init__(self, robot: str = "anymal_d", urdf: str | Path | None = None) -> None:
        from rwm.robot.description import find_urdf  # needs no pinocchio

        digest = hashlib.sha256(find_urdf(robot, urdf).read_bytes()).hexdigest()
        if robot != _SAVED["robot"] or digest != _SAVED["urdf_sha256"]:
            raise RuntimeError(f"stance targets were prepared for {_SAVED['robot']} {_SAVED['urdf_sha256']}")

    def standing_targets(self) -> np.ndarray:
        return np.array(_SAVED["stance_targets"], dtype=float)


_module = types.ModuleType("rwm.robot.kinematics")
_module.AnymalKinematics = AnymalKinematics
sys.modules["rwm.robot.kinematics"] = _module
