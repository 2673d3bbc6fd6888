"""How a simulated ANYmal differs from its model: one robot (`RobotVariant`), the ranges drawn from
for training (`VariantRanges`), and the named variants for evaluation (`config/robot_variants.yaml`).

A real ANYmal D is not its URDF: it carries a payload, meets floors of other friction, its motors
are weaker or stronger than nominal, its joints have friction, its actions arrive late and its
sensors are noisy. These are plain data, without MuJoCo (the launch file checks a variant's name with
them); `rwm.sim.dynamics` applies a variant to a simulated robot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import yaml

from rwm.robot import contract as C
from rwm.robot.policy_io import OBS_BASE, OBS_COMMAND, OBS_DIM_WITH_LAST_ACTION, OBS_JOINT_POS, OBS_JOINT_VEL

OBS_NOISE_STD = np.zeros(OBS_DIM_WITH_LAST_ACTION)
"""Per-channel sensor noise of the policy observation at `obs_noise` 1 (uniform, half-widths as in
Isaac Lab's ANYmal D velocity task): base linear velocity 0.1 m/s, angular velocity 0.2 rad/s,
projected gravity 0.05, joint positions 0.01 rad, joint velocities 1.5 rad/s; none on the command
and the last action, which the robot knows exactly."""
OBS_NOISE_STD[OBS_BASE.start : OBS_BASE.start + 3] = 0.1
OBS_NOISE_STD[OBS_BASE.start + 3 : OBS_BASE.start + 6] = 0.2
OBS_NOISE_STD[OBS_BASE.start + 6 : OBS_BASE.stop] = 0.05
OBS_NOISE_STD[OBS_JOINT_POS] = 0.01
OBS_NOISE_STD[OBS_JOINT_VEL] = 1.5
assert not OBS_NOISE_STD[OBS_COMMAND].any()

ROBOT_PARAM_FIELDS = (
    "payload_kg",
    "payload_com_x_m",
    "payload_com_y_m",
    "ground_friction",
    "motor_strength",
    "joint_friction_nm",
    "joint_damping",
    "delay_ticks",
)
"""The columns of `RobotVariant.robot_params()`."""
ROBOT_PARAM_DIM = len(ROBOT_PARAM_FIELDS)
"""Width of a robot's parameters, as stored in datasets and given to a world model of the family."""

VARIANTS_FILE = "robot_variants.yaml"
VARIANTS_ENV = "RWM_ROBOT_VARIANTS"


def find_variants_file(path: str | Path | None = None) -> Path:
    """The named variants: an explicit path, else $RWM_ROBOT_VARIANTS, else the installed
    share/rwm_bringup/config/, else config/ of this source checkout."""
    candidates = [Path(p) for p in (path, os.environ.get(VARIANTS_ENV)) if p]
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415

        candidates.append(Path(get_package_share_directory("rwm_bringup")) / "config" / VARIANTS_FILE)
    except (ImportError, LookupError, OSError):
        pass
    candidates.append(Path(__file__).resolve().parents[4] / "config" / VARIANTS_FILE)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"no robot variants file; looked at {[str(c) for c in candidates]}")


@dataclass(frozen=True)
class RobotVariant:
    """One robot's deviations from its model; the defaults are the nominal robot."""

    payload_kg: float = 0.0
    """Mass added to the base, kg."""
    payload_com_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Where the payload sits, relative to the base's centre of mass (base frame), m."""
    ground_friction: float = 1.0
    """Sliding friction coefficient between the feet and the ground."""
    motor_strength: float = 1.0
    """Scale of the drives' PD gains and torque limit."""
    joint_friction_nm: float = 0.0
    """Coulomb friction of every joint, Nm."""
    joint_damping: float = 0.0
    """Viscous damping of every joint, Nms/rad."""
    delay_ticks: int = 0
    """Actuation delay: a command acts this many physics ticks (2.5 ms) after it is given."""
    obs_noise: float = 0.0
    """Scale of the per-channel sensor noise `OBS_NOISE_STD` (0: perfect sensors)."""
    velocity_limit: bool = True
    """Drives lose torque with speed (the contract's 8.5 rad/s); False: an ideal PD."""

    def robot_params(self) -> np.ndarray:
        """The parameters that change the robot's motion (`ROBOT_PARAM_FIELDS`), in physical units: what
        a world model of the family is given to tell its robots apart (sensor noise and the velocity
        limit are left out: the first does not move the robot, the second is the same on all)."""
        return np.array(
            [
                self.payload_kg,
                self.payload_com_m[0],
                self.payload_com_m[1],
                self.ground_friction,
                self.motor_strength,
                self.joint_friction_nm,
                self.joint_damping,
                self.delay_ticks,
            ],
            dtype=np.float32,
        )

    def __post_init__(self) -> None:
        problems = []
        if self.payload_kg < 0:
            problems.append(f"payload_kg {self.payload_kg} < 0")
        if not self.ground_friction > 0:
            problems.append(f"ground_friction {self.ground_friction} must be > 0")
        if not self.motor_strength > 0:
            problems.append(f"motor_strength {self.motor_strength} must be > 0")
        if self.joint_friction_nm < 0 or self.joint_damping < 0 or self.obs_noise < 0:
            problems.append("joint friction, damping and noise must be >= 0")
        if not 0 <= self.delay_ticks <= C.DECIMATION:
            problems.append(
                f"delay_ticks {self.delay_ticks} must be 0..{C.DECIMATION} (at most one policy step)"
            )
        if len(self.payload_com_m) != 3:
            problems.append("payload_com_m must be 3 numbers")
        if problems:
            raise ValueError("robot variant: " + "; ".join(problems))


NOMINAL = RobotVariant()


@dataclass(frozen=True)
class VariantRanges:
    """Per-episode randomization for training: each field is drawn uniformly from its (low, high)."""

    payload_kg: tuple[float, float] = (0.0, 0.0)
    payload_com_xy_m: float = 0.0
    """Half-width of the payload's horizontal offset, m."""
    ground_friction: tuple[float, float] = (1.0, 1.0)
    motor_strength: tuple[float, float] = (1.0, 1.0)
    joint_friction_nm: tuple[float, float] = (0.0, 0.0)
    joint_damping: tuple[float, float] = (0.0, 0.0)
    delay_ticks: tuple[int, int] = (0, 0)
    """Inclusive."""
    obs_noise: float = 0.0
    """Noise scale during training (not drawn: the policy always sees this much)."""

    def scaled(self, fraction: float) -> VariantRanges:
        """The ranges shrunk toward the nominal robot: 0 is the nominal robot only, 1 these ranges
        (a curriculum widens them as the policy learns)."""
        if fraction >= 1.0:
            return self
        f = max(fraction, 0.0)

        def toward(r: tuple[float, float], nominal: float) -> tuple[float, float]:
            return (nominal + f * (r[0] - nominal), nominal + f * (r[1] - nominal))

        return VariantRanges(
            payload_kg=toward(self.payload_kg, 0.0),
            payload_com_xy_m=f * self.payload_com_xy_m,
            ground_friction=toward(self.ground_friction, NOMINAL.ground_friction),
            motor_strength=toward(self.motor_strength, NOMINAL.motor_strength),
            joint_friction_nm=toward(self.joint_friction_nm, 0.0),
            joint_damping=toward(self.joint_damping, 0.0),
            delay_ticks=(round(f * self.delay_ticks[0]), round(f * self.delay_ticks[1])),
            obs_noise=f * self.obs_noise,
        )

    def sample(self, rng: np.random.Generator) -> RobotVariant:
        def u(r: tuple[float, float]) -> float:
            return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])

        com = (
            rng.uniform(-self.payload_com_xy_m, self.payload_com_xy_m, 2) if self.payload_com_xy_m else (0, 0)
        )
        return RobotVariant(
            payload_kg=u(self.payload_kg),
            payload_com_m=(float(com[0]), float(com[1]), 0.0),
            ground_friction=u(self.ground_friction),
            motor_strength=u(self.motor_strength),
            joint_friction_nm=u(self.joint_friction_nm),
            joint_damping=u(self.joint_damping),
            delay_ticks=int(rng.integers(self.delay_ticks[0], self.delay_ticks[1] + 1)),
            obs_noise=self.obs_noise,
        )


TRAINING_RANGES = VariantRanges(
    payload_kg=(0.0, 20.0),
    payload_com_xy_m=0.1,
    ground_friction=(0.3, 1.2),
    motor_strength=(0.7, 1.1),
    joint_friction_nm=(0.0, 1.5),
    joint_damping=(0.0, 0.8),
    delay_ticks=(0, C.DECIMATION),
    obs_noise=1.0,
)
"""Domain randomization of PPO training (`rwm train-ppo --domain-randomization`). Isaac Lab's ANYmal D
velocity task randomizes the base mass by -5..+5 kg, friction and pushes, and adds the observation
noise of `OBS_NOISE_STD` (scale 1); the RWM paper trains its ANYmal D policies in that task. The
ranges here are wider, so that every named evaluation variant (up to 15 kg of payload, friction 0.4,
motors at 75 %, 20 ms of delay) lies inside the family a policy is trained on: the claim tested is
robustness within a randomized family, as in the papers, not extrapolation beyond it."""


@dataclass(frozen=True)
class RobotMixture:
    """One robot drawn at a share of the resets, the rest from a family: PPO for that robot (one
    identified from its logs) that does not forget the robots it was trained for."""

    robot: RobotVariant
    fraction: float
    """Share of the resets that draw `robot`."""
    family: VariantRanges = TRAINING_RANGES

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"robot mixture: fraction {self.fraction} must be in [0, 1]")

    def sample(self, rng: np.random.Generator) -> RobotVariant:
        return self.robot if rng.random() < self.fraction else self.family.sample(rng)


def load_variants(path: str | Path | None = None, beyond_training: bool = True) -> dict[str, RobotVariant]:
    """Named variants from a YAML file (`find_variants_file`): `variants: {name: {field: value}}` (the
    evaluation suite, inside the training family) and, with `beyond_training`, `beyond_training:`
    (robots outside it, for adaptation from their bags); unknown fields and bad values are refused
    with the variant's name."""
    path = find_variants_file(path)
    raw = yaml.safe_load(path.read_text()) or {}
    known = {f.name for f in fields(RobotVariant)}
    out: dict[str, RobotVariant] = {}
    sections = [raw.get("variants") or {}, *([raw.get("beyond_training") or {}] if beyond_training else [])]
    for name, values in (item for section in sections for item in section.items()):
        values = values or {}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: variant {name!r} has unknown fields {unknown}; known: {sorted(known)}")
        if "payload_com_m" in values:
            values["payload_com_m"] = tuple(values["payload_com_m"])
        try:
            out[name] = RobotVariant(**values)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: variant {name!r}: {e}") from None
    if "nominal" not in out or out["nominal"] != NOMINAL:
        raise ValueError(f"{path}: needs a 'nominal' variant equal to the defaults")
    return out


def variants_named(names: list[str], path: str | Path | None = None) -> dict[str, RobotVariant]:
    """The named variants, in the order given; unknown names are refused, listing the known ones."""
    variants = load_variants(path)
    unknown = sorted(set(names) - set(variants))
    if unknown:
        raise ValueError(f"unknown robot variants {unknown}; the variants are {sorted(variants)}")
    return {name: variants[name] for name in names}


def variant_named(name: str, path: str | Path | None = None) -> RobotVariant:
    variants = load_variants(path)
    if name not in variants:
        raise ValueError(f"unknown robot variant {name!r}; the variants are {sorted(variants)}")
    return variants[name]
