"""Build the MuJoCo model of ANYmal from its URDF at run time.

The conversion applies the facts measured for this contract (CONTRACT.md): visuals are dropped
(MuJoCo cannot load .dae), the inspection payload's pan/tilt joints are fixed, inertias are taken
from the URDF, non-positive-definite inertias (ANYmal C's `hatch`) are made diagonal and inertias
that break the triangle inequality are balanced by MuJoCo, and contacts
use an elliptic friction cone with impratio 100 so that standing feet do not creep.

Joint PD runs inside the physics loop as MuJoCo actuators, force = kp (target - q) - kd dq, clipped
to the torque limit; the drive's velocity limit is not modelled (MuJoCo has no torque-speed curve),
it is what the real drives enforce. This is an approximation of the ANYmal D hardware.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from rwm.robot import contract
from rwm.robot.description import find_urdf
from rwm.robot.kinematics import AnymalKinematics

FLOOR = "floor"
IMU_SITE = "imu"


@dataclass(frozen=True)
class RobotModel:
    """A compiled MuJoCo model with the index tables that read it in contract order."""

    model: mujoco.MjModel
    """Compiled model: free-floating base, 12 PD actuators in contract order, a floor plane."""
    robot: str
    """'anymal_d' or 'anymal_c'."""
    urdf: Path
    """The URDF it was built from."""
    qpos_adr: np.ndarray
    """qpos address of each contract joint (12,)."""
    dof_adr: np.ndarray
    """qvel address of each contract joint (12,)."""
    geom_flag: np.ndarray
    """For every geom, the index of the contact flag it raises (0..7), or -1 (base, floor, payload)."""
    base_geoms: np.ndarray
    """Geoms of the base body, whose ground contact counts as a fall."""
    standing_height: float
    """Initial base height for a reset, m (a little above the settled height)."""
    stance_targets: np.ndarray
    """Drive targets that hold the robot in its standing pose (`AnymalKinematics.standing_targets`):
    what a robot standing under its own controller holds when the stack starts."""
    geom_flag_list: list[int] = field(default_factory=list)
    """`geom_flag` as a list, for fast scalar lookups in the contact loop."""
    base_geom_set: frozenset[int] = frozenset()
    """`base_geoms` as a set."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "geom_flag_list", self.geom_flag.tolist())
        object.__setattr__(self, "base_geom_set", frozenset(self.base_geoms.tolist()))

    @property
    def total_mass(self) -> float:
        return float(self.model.body_subtreemass[1])


def _prepare_urdf(urdf: Path) -> str:
    root = ET.parse(urdf).getroot()
    for link in root.findall("link"):
        for visual in link.findall("visual"):
            link.remove(visual)
        for i, col in enumerate(link.findall("collision")):
            col.set("name", f"{link.get('name')}_collision_{i}")
        inertia = link.find("inertial/inertia")
        if inertia is not None:
            _make_positive_definite(inertia)
    for joint in root.findall("joint"):
        if joint.get("name", "").startswith("inspection_payload") and joint.get("type") != "fixed":
            joint.set("type", "fixed")
    ext = ET.SubElement(root, "mujoco")
    # balanceinertia only touches inertias that break A + B >= C (some of ANYmal C's cameras).
    ET.SubElement(ext, "compiler", discardvisual="true", inertiafromgeom="false", balanceinertia="true")
    return ET.tostring(root, encoding="unicode")


def _make_positive_definite(inertia: ET.Element) -> None:
    keys = ("ixx", "ixy", "ixz", "iyy", "iyz", "izz")
    v = {k: float(inertia.get(k, "0")) for k in keys}
    mat = np.array(
        [[v["ixx"], v["ixy"], v["ixz"]], [v["ixy"], v["iyy"], v["iyz"]], [v["ixz"], v["iyz"], v["izz"]]]
    )
    if np.linalg.eigvalsh(mat).min() <= 0:
        for k in ("ixy", "ixz", "iyz"):
            inertia.set(k, "0")


def build_robot(robot: str = "anymal_d", urdf: str | Path | None = None) -> RobotModel:
    """Compile `robot` from its URDF (found by `rwm.robot.description.find_urdf`)."""
    path = find_urdf(robot, urdf)
    spec = mujoco.MjSpec.from_string(_prepare_urdf(path))
    spec.compiler.discardvisual = False  # the URDF's visuals are already stripped; keep the floor's look
    spec.option.timestep = contract.PHYSICS_DT
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 100.0
    base = spec.body("base")
    if base is None:
        raise ValueError(f"{path}: no link named 'base'")
    base.add_freejoint(name="root")
    # IMU at the base origin (the URDF's imu_link is fused into the base by the compiler).
    base.add_site(name=IMU_SITE, pos=[0, 0, 0])
    spec.add_sensor(
        name="imu_accelerometer",
        type=mujoco.mjtSensor.mjSENS_ACCELEROMETER,
        objtype=mujoco.mjtObj.mjOBJ_SITE,
        objname=IMU_SITE,
    )
    # What only a camera sees (rwm render): light, and a 1 m checkerboard floor so that motion shows.
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.5, 0.5, 0.5]
    spec.worldbody.add_light(
        name="sun",
        pos=[0, 0, 5],
        dir=[0.3, 0.2, -1],
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
        castshadow=0,
    )
    spec.add_texture(
        name="grid",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.35, 0.4, 0.45],
        rgb2=[0.55, 0.6, 0.65],
        width=64,
        height=64,
    )
    grid = spec.add_material(name="grid", texrepeat=[0.5, 0.5], texuniform=True)
    grid.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "grid"
    spec.worldbody.add_geom(
        name=FLOOR,
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[200, 200, 1],  # half-sizes for rendering only: a plane collides everywhere
        contype=0,
        conaffinity=1,
        friction=[1.0, 0.005, 0.0001],
        material="grid",
    )
    # Robot geoms collide with the floor only (self-collision off, as is usual for legged RL).
    for geom in spec.geoms:
        if geom.name != FLOOR:
            geom.contype, geom.conaffinity = 1, 0
    for name in contract.JOINT_NAMES:
        if spec.joint(name) is None:
            raise ValueError(f"{path}: joint {name} missing; the contract needs {contract.JOINT_NAMES}")
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        act.gainprm[0] = contract.KP
        act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        act.biasprm[0:3] = [0.0, -contract.KP, -contract.KD]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-contract.TORQUE_LIMIT, contract.TORQUE_LIMIT]
    model = spec.compile()
    if model.geom(FLOOR).id != 0:  # rwm.sim.state relies on the floor being geom 0
        raise RuntimeError("floor plane must be the first geom")

    qpos_adr = np.array([model.joint(n).qposadr[0] for n in contract.JOINT_NAMES], dtype=np.intp)
    dof_adr = np.array([model.joint(n).dofadr[0] for n in contract.JOINT_NAMES], dtype=np.intp)
    geom_flag = np.full(model.ngeom, -1, dtype=np.intp)
    base_geoms = []
    for g in range(model.ngeom):
        name = model.geom(g).name
        if name.startswith("base_collision"):
            base_geoms.append(g)
        for leg_i, leg in enumerate(contract.LEGS):
            if name.startswith(f"{leg}_"):
                is_foot = (
                    name.startswith(f"{leg}_FOOT") and model.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE
                )
                geom_flag[g] = (4 + leg_i) if is_foot else leg_i
    for leg_i, leg in enumerate(contract.LEGS):
        if not np.any(geom_flag == 4 + leg_i):
            raise ValueError(f"{path}: no foot sphere found for leg {leg}")
    return RobotModel(
        model=model,
        robot=robot,
        urdf=path,
        qpos_adr=qpos_adr,
        dof_adr=dof_adr,
        geom_flag=geom_flag,
        base_geoms=np.array(base_geoms, dtype=np.intp),
        standing_height=0.60 if robot == "anymal_d" else 0.58,
        stance_targets=AnymalKinematics(robot, path).standing_targets(),
    )
