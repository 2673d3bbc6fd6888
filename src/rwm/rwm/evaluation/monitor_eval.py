"""The health monitor judged in simulation: does its alarm stay silent on the nominal robot and go off,
and how fast, on robots whose dynamics differ from the model's?

Robots walk under a policy with commands from the training distribution (a new one every
`command_change_s`); the exported world-model step follows each robot exactly as the monitor node
does (the state assembled at the step, the command sent, the GRU state carried) and the one-step
errors are scored by the rule the node uses (`rwm.export.anomaly`). A robot that falls is no longer
scored (a fall is not a subtle anomaly). Time to alarm is counted from the start and, beside it, from
the robot's first moving command: a robot standing still shows nothing of a delay or a weak drive.
With a `controller` the robots are driven as the policy node drives them (soft start, command ramp,
stand hold: `rwm.control.simulated.SimulatedControlLoops`), so that the handovers between the stand
hold and the policy, which the bare policy never shows the model, are judged too.

`monitor_on_bags` scores recorded bags (a robot's, or the stack's in simulation) by the same rule, as
the node would have run over them: how often it alarms on data known to be healthy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from rwm.data.trajectory import Trajectory
from rwm.evaluation.policy_eval import Controller
from rwm.export.anomaly import AnomalyDetector, check_rule_error, monitor_step_error, rule_statistic, windowed
from rwm.export.runtime import OnnxWorldModel
from rwm.robot import contract as C
from rwm.robot.policy_io import includes_last_action, raw_to_targets
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig
from rwm.sim.commands import CommandConfig
from rwm.sim.variants import NOMINAL, RobotVariant, variants_named


@dataclass(frozen=True)
class MonitorEvalConfig:
    robots: int = 20
    duration_s: float = 30.0
    command_change_s: float = 4.0
    standing_fraction: float = 0.25
    """Share of commands that are zero: a deployed robot also stands (the soak stands 60 s of every
    76), and a policy's stance is where a model fit on walking data errs."""
    seed: int = 4242
    variant: RobotVariant = NOMINAL
    warmup_steps: int = 0
    """Steps not judged after the start (0: the model's rule's, which the stack's node uses too:
    `config/world_model.yaml`)."""
    stand_first_s: float = 0.0
    """Every robot stands (zero command) this long before its first sampled command, as the main
    job does (its command sequence's `start_delay_s`, 3 s): the window is then full of standing
    errors when the robot starts to walk, and time to alarm after moving is the rule's own."""


def suite_env_config(cfg: MonitorEvalConfig, obs_dim: int) -> EnvConfig:
    """The simulated robots the monitor's suite walks: robot i of a seed is the same robot for every
    tool that builds them here (`tools/stand_hold_trace.py`)."""
    return EnvConfig(
        num_envs=cfg.robots,
        episode_length_s=cfg.duration_s + 1.0,
        seed=cfg.seed,
        include_last_action=includes_last_action(obs_dim),
        variant=cfg.variant,
        commands=CommandConfig(resample_time_s=cfg.command_change_s, standing_fraction=cfg.standing_fraction),
    )


def one_step_errors(
    policy: Callable[[np.ndarray], np.ndarray],
    obs_dim: int,
    world_model: OnnxWorldModel,
    cfg: MonitorEvalConfig = MonitorEvalConfig(),
    controller: Controller | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(steps, robots) one-step errors of the world model along the robots' walks (NaN once fallen;
    row t scores the prediction made at step t - 1, so row 0 is NaN), and (steps, robots) whether
    each robot's command at step t asked it to move. `controller`: drive the robots with it instead
    of the bare policy; the model is given the targets it sends, as the node is."""
    env_cfg = suite_env_config(cfg, obs_dim)
    env = BatchedAnymalEnv(env_cfg)
    steps = round(cfg.duration_s / env_cfg.reward.dt)
    errors = np.full((steps, cfg.robots), np.nan)
    moving = np.zeros((steps, cfg.robots), dtype=bool)
    alive = np.ones(cfg.robots, dtype=bool)
    hidden = world_model.initial_hidden(cfg.robots)
    prediction = prediction_std = None
    stand_steps = round(cfg.stand_first_s / env_cfg.reward.dt)
    sampled = env.command.copy()
    if stand_steps:
        env.command[:] = 0.0
    obs = env.observation()
    for t in range(steps):
        if stand_steps and t == stand_steps:  # the first sampled command, held for its full period
            env.command[:] = sampled
            env.command_step[:] = 0
            if controller is None:
                obs = env.observation()
        elif t < stand_steps:  # also a robot reset after a fall (a reset samples a command)
            env.command[:] = 0.0
            env.command_step[:] = 0
        # the deployed loop and monitor read the published (noisy) state; with the bare policy the
        # monitor gets the exact state (optimistic on noisy variants), the policy its noisy observation
        state = env.measured_state() if controller is not None else env.state.copy()
        if prediction is not None:
            errors[t] = np.where(alive, monitor_step_error(prediction, prediction_std, state), np.nan)
        moving[t] = env.command.any(axis=1)
        if controller is None:
            targets = raw_to_targets(policy(obs))
        else:
            targets = controller(state, env.command, t * env_cfg.reward.dt)
        prediction, prediction_std, _, hidden, _ = world_model(state, targets, hidden)
        out = env.step(targets)
        alive &= ~out.terminated
        obs = out.obs
    env.close()
    return errors, moving


def alarm_times(errors: np.ndarray, rule: dict, dt: float) -> np.ndarray:
    """Per robot, the time (s) the monitor's rule (`anomaly` metadata) first raises the anomaly on
    (steps, robots) errors (NaN: never). Row t holds the error scored at step t."""
    detector = AnomalyDetector.from_rule(rule, errors.shape[1])
    first = np.full(errors.shape[1], np.nan)
    for t in range(1, len(errors)):  # row 0: no prediction yet, as in the monitor
        raised = detector.update(np.nan_to_num(errors[t], nan=0.0))
        first = np.where(np.isnan(first) & raised & np.isfinite(errors[t]), t * dt, first)
    return first


def first_moving_times(moving: np.ndarray, dt: float) -> np.ndarray:
    """Per robot, the time (s) its command first asked it to move (NaN: never) on (steps, robots)."""
    first = moving.argmax(axis=0) * dt
    return np.where(moving.any(axis=0), first, np.nan)


def evaluate_monitor(
    policy: Callable[[np.ndarray], np.ndarray],
    obs_dim: int,
    world_model: OnnxWorldModel,
    names: list[str],
    cfg: MonitorEvalConfig = MonitorEvalConfig(),
    detect_within_s: float = 2.0,
    variants_file: str | None = None,
    new_controller: Callable[[], Controller] | None = None,
) -> dict:
    """Per named variant: robots alarmed (and within `detect_within_s`), when, and among robots
    that did not fall (on the nominal robot every one of those is a false alarm); the same timing from
    each robot's first moving command (an alarm raised while it still stood counts as 0 s).
    `new_controller`: a fresh controller of `cfg.robots` robots for each variant (see
    `one_step_errors`)."""
    variants = variants_named(names, variants_file)
    rule = dict(world_model.metadata["anomaly"])
    check_rule_error(rule)
    rule["warmup_steps"] = cfg.warmup_steps or rule["warmup_steps"]
    results = {}
    for name in names:
        controller = new_controller() if new_controller else None
        errors, moving = one_step_errors(
            policy, obs_dim, world_model, replace(cfg, variant=variants[name]), controller
        )
        times = alarm_times(errors, rule, C.POLICY_DT)
        moved = first_moving_times(moving, C.POLICY_DT)
        since_moving = np.maximum(times - np.nan_to_num(moved, nan=np.inf), 0.0)  # never moved: 0
        fell = np.isnan(errors[-1])
        alarmed = np.isfinite(times)
        windows = windowed(errors[rule["warmup_steps"] + 1 :], rule["window_steps"], rule_statistic(rule))
        results[name] = {
            "robots": cfg.robots,
            "duration_s": cfg.duration_s,
            "fell": int(fell.sum()),
            "alarmed": int(alarmed.sum()),
            "alarmed_within_s": int((times <= detect_within_s).sum()),
            "alarmed_not_fallen": int((alarmed & ~fell).sum()),
            "median_alarm_s": round(float(np.nanmedian(times)), 2) if alarmed.any() else None,
            "alarm_s": [round(float(t), 2) if np.isfinite(t) else None for t in times],
            "alarmed_within_s_of_moving": int((since_moving <= detect_within_s).sum()),
            "first_moving_s": [round(float(t), 2) if np.isfinite(t) else None for t in moved],
            "windowed_error_median": round(float(np.nanmedian(windows)), 4),
            "windowed_error_p99": round(float(np.nanquantile(windows, 0.99)), 4),
        }
    return {
        "threshold": rule["threshold"],
        "warmup_steps": rule["warmup_steps"],
        "control_loop": new_controller is not None,
        "detect_within_s": detect_within_s,
        "seed": cfg.seed,
        "variants": results,
    }


RUN_GAP_S = 1.0
"""Recorded pieces further apart than this are separate runs of the monitor node (a new start)."""


def recorded_runs(trajectories: list[Trajectory]) -> list[list[Trajectory]]:
    """Trajectories joined where one follows the previous within `RUN_GAP_S`: a recording split into
    files, at a reset of the robot or at a few stale rows is one run of the monitor node, which does
    not restart there."""
    runs: list[list[Trajectory]] = []
    for t in sorted(trajectories, key=lambda t: t.time[0]):
        if runs and 0 < t.time[0] - runs[-1][-1].time[-1] <= RUN_GAP_S:
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


def live_against_offline(
    live_t: np.ndarray,
    live_error: np.ndarray,
    row_t: np.ndarray,
    row_error: np.ndarray,
    window: int,
    judged_from_s: float,
    statistic: str = "mean",
) -> dict:
    """The node's live one-step errors (log time s, as recorded) set against the same model's offline
    errors on the recorded rows (stamp s): each live error is matched to the newest row stamped up to
    one step before it was logged. Equal where the node assembled the states the bags hold; a live
    alarm whose windowed error the offline errors do not reach came from the node's inputs, not the
    robot. The live windowed error counts from `judged_from_s` (the end of the first run's warm-up).
    Log times and stamps must be on one clock (a logger on the robot's time, as in the stack); a live
    error logged a step or more late pairs with the next row and shows as a difference."""
    idx = np.searchsorted(row_t, live_t, side="right") - 1
    matched = (idx >= 0) & (live_t - row_t[np.maximum(idx, 0)] <= C.POLICY_DT)
    diff = np.abs(live_error[matched] - row_error[idx[matched]])
    live_windows = windowed(live_error[live_t > judged_from_s], window, statistic)
    return {
        "live_errors": len(live_error),
        "matched": int(matched.sum()),
        "abs_difference_p99": round(float(np.quantile(diff, 0.99)), 4) if len(diff) else None,
        "abs_difference_max": round(float(diff.max()), 4) if len(diff) else None,
        "live_windowed_error_max": round(float(live_windows.max()), 4) if len(live_windows) else None,
    }


def recorded_step_errors(
    world_model: OnnxWorldModel, runs: list[list[Trajectory]]
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Per run (`recorded_runs`), its first row's stamp, and the stamps (s) and one-step errors of its
    scored rows, the model
    stepped as the node steps it: the GRU carries over a gap and the row after it is not scored (the
    node skips a step it cannot assemble)."""
    scored_runs = []
    for run in runs:
        hidden = world_model.initial_hidden(1)
        prediction = prediction_std = None
        last = run[0].time[0]
        stamps, errors = [], []
        for t in run:
            for state, action, stamp in zip(t.state, t.action, t.time, strict=True):
                state = state[None].astype(np.float64)
                if prediction is not None and stamp - last <= 1.5 * C.POLICY_DT:
                    stamps.append(stamp)
                    errors.append(monitor_step_error(prediction, prediction_std, state)[0])
                prediction, prediction_std, _, hidden, _ = world_model(state, action[None], hidden)
                last = stamp
        scored_runs.append((run[0].time[0], np.array(stamps), np.array(errors)))
    return scored_runs


def rule_over_runs(
    rule: dict, warmup: int, scored_runs: list[tuple[float, np.ndarray, np.ndarray]]
) -> tuple[list[float], np.ndarray]:
    """The rule's detector over each run's scored errors (`recorded_step_errors`), restarted per run:
    the alarms raised (s from the run's start) and every full window's statistic."""
    alarms, windows = [], []
    for start, stamps, errors in scored_runs:
        detector = AnomalyDetector.from_rule(rule, warmup_steps=warmup)
        raised = False
        for stamp, error in zip(stamps, errors, strict=True):
            now = detector.update(np.array([error]))[0]
            if now and not raised:
                alarms.append(round(float(stamp - start), 2))
            raised = now
            if np.isfinite(detector.windowed[0]):
                windows.append(detector.windowed[0])
    return alarms, np.array(windows) if windows else np.full(1, np.nan)


def monitor_on_bags(
    world_model: OnnxWorldModel,
    trajectories: list[Trajectory],
    warmup_steps: int = 0,
    live: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """The node's rule over recorded trajectories (`rwm.data.bag_loader`: rows aligned at each
    command's stamp, as the node aligns them), run by run as the node would have run
    (`recorded_step_errors`). Alarms raised per run, with their times from the run's start, and the
    windowed error's distribution.
    `warmup_steps`: steps not judged after a start (the node's parameter; 0: the model's rule's).
    `live`: the node's own recorded errors (log time s, error), set against these
    (`live_against_offline`)."""
    rule = world_model.metadata["anomaly"]
    check_rule_error(rule)
    warmup = warmup_steps or rule["warmup_steps"]
    runs = recorded_runs(trajectories)
    scored_runs = recorded_step_errors(world_model, runs)
    alarms, w = rule_over_runs(rule, warmup, scored_runs)
    rows = sum(len(t.time) for run in runs for t in run)
    scored_t = np.concatenate([np.zeros(0), *(stamps for _, stamps, _ in scored_runs)])
    scored = np.concatenate([np.zeros(0), *(errors for _, _, errors in scored_runs)])
    compared = {}
    if live is not None and len(live[0]) and len(scored_t) > warmup:
        compared = {
            "live": live_against_offline(
                *live, scored_t, scored, rule["window_steps"], scored_t[warmup], rule_statistic(rule)
            )
        }
    return {
        "threshold": rule["threshold"],
        "warmup_steps": warmup,
        "runs": len(runs),
        "rows": rows,
        "minutes": round(rows * C.POLICY_DT / 60.0, 2),
        "alarms_raised": len(alarms),
        "alarm_s": alarms,
        "windowed_error_median": round(float(np.median(w)), 4),
        "windowed_error_p99": round(float(np.quantile(w, 0.99)), 4),
        "windowed_error_max": round(float(w.max()), 4),
        **compared,
    }


def monitor_table(results: dict) -> str:
    """Markdown: one row per variant."""
    within = results["detect_within_s"]
    rows = [
        f"| robot variant | robots fell | alarmed (within {within:g} s) | within {within:g} s of moving | "
        "alarmed, not fallen | median time to alarm (s) | windowed error median / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["variants"].items():
        rows.append(
            f"| {name} | {r['fell']} / {r['robots']} | {r['alarmed']} ({r['alarmed_within_s']}) | "
            f"{r['alarmed_within_s_of_moving']} | {r['alarmed_not_fallen']} | {r['median_alarm_s']} | "
            f"{r['windowed_error_median']} / {r['windowed_error_p99']} |"
        )
    return f"Threshold {results['threshold']} (calibrated into the model).\n\n" + "\n".join(rows) + "\n"
