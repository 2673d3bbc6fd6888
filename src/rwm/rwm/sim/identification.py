"""Which simulated robot a log came from: system identification by short replays (real-to-sim).

A robot that meets the field differs from its model (`rwm.sim.variants`). Its logs say how: start
the simulator from a logged state, drive it with the logged joint targets for a few policy steps, and
compare where it goes with where the robot went. The robot variant whose replays stay closest to
the log is the identified robot. Searched: ground friction, payload, motor strength, actuation delay,
joint friction and damping (coordinate descent over `SEARCH_GRID`, then moves of two at once); the
payload's offset from the centre of mass and the sensor noise are not identified.

What the log must hold: the contract's 45-d state, the joint targets and the foot contacts per 50 Hz
row. The state has no base height and no yaw: yaw does not matter on flat ground, and the height is
set so that the feet in contact touch the floor. The simulation family holds the robot exactly only
when the robot is simulated; a real robot is approximated by its closest member.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import mujoco
import numpy as np

from rwm.robot import contract as C
from rwm.robot.mjcf import RobotModel
from rwm.sim.dynamics import VariedRobot
from rwm.sim.state import read_state
from rwm.sim.variants import NOMINAL, RobotVariant

SEARCH_GRID: dict[str, tuple[float, ...]] = {
    "ground_friction": (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2),
    "payload_kg": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0),
    "motor_strength": (0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1),
    "delay_ticks": tuple(range(C.DECIMATION + 1)),
    "joint_friction_nm": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "joint_damping": (0.0, 0.2, 0.4, 0.8, 1.2),
}
"""The values tried for each identified parameter: the training family's ranges and beyond them."""


@dataclass(frozen=True)
class IdentificationConfig:
    """How much of the log is replayed, and how long each replay runs."""

    windows: int = 192
    """Logged states the simulator starts from, drawn at random from the log."""
    horizon: int = 10
    """Policy steps each replay runs (0.2 s): long enough for slips and sagging to show, short
    enough that the replay does not leave the log's gait."""
    sweeps: int = 2
    """Rounds of coordinate descent over `SEARCH_GRID`."""
    pair_rounds: int = 4
    """Then at most this many rounds of moves of two parameters at once, one grid step each: payload
    and friction trade against each other in a slip, and one at a time stops short of both."""
    seed: int = 0
    """Which logged states are drawn."""
    threads: int = 2
    """Replays run side by side (MuJoCo releases the GIL while it steps)."""


@dataclass
class ReplayWindows:
    """Stretches of a log to replay: where each starts and what followed."""

    start: np.ndarray
    """(W, 45) logged state the replay starts from."""
    start_contacts: np.ndarray
    """(W, 8) contact flags with it (NaN: unknown)."""
    previous_action: np.ndarray
    """(W, 12) the targets commanded one step before: what a delayed drive still applies."""
    actions: np.ndarray
    """(W, H, 12) the logged targets, in order."""
    targets: np.ndarray
    """(W, H, 45) the logged states that followed each target."""
    scale: np.ndarray
    """(45,) each channel's spread over the log: errors are measured in these units."""


def replay_windows(
    logs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cfg: IdentificationConfig
) -> ReplayWindows:
    """Draw `cfg.windows` stretches of `cfg.horizon` steps from `logs`, each (state (T, 45), action
    (T, 12), contacts (T, 8)) of one unbroken trajectory."""
    h = cfg.horizon
    usable = [(i, len(s)) for i, (s, _, _) in enumerate(logs) if len(s) > h + 1]
    if not usable:
        raise ValueError(
            f"identification: no trajectory longer than {h + 1} rows; record longer bags or replay a "
            "shorter horizon"
        )
    rng = np.random.default_rng(cfg.seed)
    weights = np.array([n - h - 1 for _, n in usable], dtype=float)
    picks = rng.choice(len(usable), size=cfg.windows, p=weights / weights.sum())
    rows = [(usable[k][0], int(rng.integers(1, usable[k][1] - h))) for k in picks]
    state = np.concatenate([s for s, _, _ in logs])
    scale = np.maximum(state.std(axis=0), 1e-3)
    return ReplayWindows(
        start=np.stack([logs[i][0][t] for i, t in rows]),
        start_contacts=np.stack([logs[i][2][t] for i, t in rows]),
        previous_action=np.stack([logs[i][1][t - 1] for i, t in rows]),
        actions=np.stack([logs[i][1][t : t + h] for i, t in rows]),
        targets=np.stack([logs[i][0][t + 1 : t + h + 1] for i, t in rows]),
        scale=scale,
    )


def set_logged_state(
    robot: RobotModel, model: mujoco.MjModel, data: mujoco.MjData, state: np.ndarray, contacts: np.ndarray
) -> None:
    """Put the simulated robot (`model`, one of `robot`'s variants) in a logged 45-d state: yaw 0, roll
    and pitch from the gravity direction, the base at the height where its feet in contact touch the
    floor on average (the lowest foot, where no foot is known to touch)."""
    mujoco.mj_resetData(model, data)
    gx, gy, gz = (float(v) for v in state[C.GRAVITY])
    pitch = np.arcsin(np.clip(gx, -1.0, 1.0))
    roll = np.arctan2(-gy, -gz)
    qx = np.array([np.cos(roll / 2), np.sin(roll / 2), 0.0, 0.0])
    qy = np.array([np.cos(pitch / 2), 0.0, np.sin(pitch / 2), 0.0])
    quat = np.empty(4)
    mujoco.mju_mulQuat(quat, qy, qx)
    data.qpos[3:7] = quat
    data.qpos[robot.qpos_adr] = state[C.JOINT_POS]
    mujoco.mju_rotVecQuat(data.qvel[0:3], np.asarray(state[C.LIN_VEL], dtype=float), quat)
    data.qvel[3:6] = state[C.ANG_VEL]
    data.qvel[robot.dof_adr] = state[C.JOINT_VEL]
    mujoco.mj_kinematics(model, data)
    feet = _foot_geoms(robot)
    bottom = data.geom_xpos[feet, 2] - model.geom_size[feet, 0]
    touching = np.nan_to_num(contacts[C.FOOT_CONTACTS]) > 0.5
    data.qpos[2] -= bottom[touching].mean() if touching.any() else bottom.min()
    mujoco.mj_forward(model, data)


def _foot_geoms(robot: RobotModel) -> np.ndarray:
    """The foot sphere of each leg, in contract leg order."""
    return np.array([int(np.flatnonzero(robot.geom_flag == 4 + leg)[0]) for leg in range(len(C.LEGS))])


def replay_error(robot: RobotModel, variant: RobotVariant, windows: ReplayWindows, threads: int = 1) -> float:
    """Mean squared error, in the log's own units (`ReplayWindows.scale`), of the states the robot
    `variant` reaches when the logged targets are replayed from each window's logged state."""
    chunks = [c for c in np.array_split(np.arange(len(windows.start)), threads) if len(c)]

    def run(ids: np.ndarray) -> float:
        sim = VariedRobot(robot, variant)
        data = mujoco.MjData(sim.model)
        reached = np.empty(C.STATE_DIM)
        total = 0.0
        for w in ids:
            set_logged_state(robot, sim.model, data, windows.start[w], windows.start_contacts[w])
            sim.reset(windows.previous_action[w])
            for k in range(windows.actions.shape[1]):
                sim.command(windows.actions[w, k])
                sim.step(data, C.DECIMATION)
                read_state(robot, data, reached)
                total += float(np.square((reached - windows.targets[w, k]) / windows.scale).mean())
        return total

    if len(chunks) == 1:
        total = run(chunks[0])
    else:
        with ThreadPoolExecutor(len(chunks)) as pool:
            total = sum(pool.map(run, chunks))
    return total / (len(windows.start) * windows.actions.shape[1])


@dataclass
class Identification:
    """The identified robot and how well it and the nominal robot replay the log."""

    variant: RobotVariant
    """The family member whose replays come closest (no sensor noise: it is not identified)."""
    error: float
    """Its replay error (`replay_error`)."""
    nominal_error: float
    """The nominal robot's, on the same replays: how far the log is from the model."""
    evaluations: int
    """Replay errors computed by the search."""
    curves: dict[str, list[tuple[float, float]]]
    """Each parameter's last coordinate sweep: (value, replay error), the others as they stood then."""


def identify_robot(
    robot: RobotModel,
    logs: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    cfg: IdentificationConfig = IdentificationConfig(),
) -> Identification:
    """The member of the simulated family (`SEARCH_GRID`) whose replays of `logs` come closest, searched
    from the nominal robot."""
    windows = replay_windows(logs, cfg)
    best = replace(NOMINAL, obs_noise=0.0)
    nominal_error = best_error = replay_error(robot, best, windows, cfg.threads)
    evaluations = 1
    curves: dict[str, list[tuple[float, float]]] = {}
    for _ in range(cfg.sweeps):
        for name, grid in SEARCH_GRID.items():
            scored = []
            for value in grid:
                candidate = replace(best, **{name: type(getattr(best, name))(value)})
                if candidate == best:
                    scored.append((best_error, candidate))
                else:
                    scored.append((replay_error(robot, candidate, windows, cfg.threads), candidate))
                    evaluations += 1
            curves[name] = [(float(v), e) for v, (e, _) in zip(grid, scored, strict=True)]
            error, candidate = min(scored, key=lambda ec: ec[0])
            if error < best_error:
                best, best_error = candidate, error
    names = list(SEARCH_GRID)
    for _ in range(cfg.pair_rounds):
        moves = []
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                for da in (-1, 1):
                    for db in (-1, 1):
                        moved = _grid_step(_grid_step(best, a, da), b, db)
                        if moved is not None and moved != best:
                            moves.append(moved)
        scored = [(replay_error(robot, m, windows, cfg.threads), m) for m in moves]
        evaluations += len(scored)
        error, moved = min(scored, key=lambda em: em[0], default=(best_error, best))
        if error >= best_error:
            break
        best, best_error = moved, error
    return Identification(best, best_error, nominal_error, evaluations, curves)


def _grid_step(variant: RobotVariant | None, name: str, step: int) -> RobotVariant | None:
    """`variant` with `name` moved `step` places along `SEARCH_GRID` (None: off the grid's ends)."""
    if variant is None:
        return None
    grid = SEARCH_GRID[name]
    value = getattr(variant, name)
    here = int(np.argmin([abs(g - value) for g in grid]))
    there = here + step
    if not 0 <= there < len(grid):
        return None
    return replace(variant, **{name: type(value)(grid[there])})
