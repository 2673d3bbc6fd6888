"""MBPO-PPO, the paper's Algorithm 1: collect real transitions with the current policy, refine RWM on
the replay buffer, then update the policy with PPO (rsl-rl) on imagined rollouts only; repeat.

Every iteration logs the imagined reward, the current policy's true reward in simulation and the
model's autoregressive error on the newly collected data (paper Fig. 8) to TensorBoard and CSV; a
PNG of the three curves is drawn at the end, and the policy is exported to ONNX like the PPO baseline.

Started by `torchrun --nproc_per_node W`, the loop runs data-parallel: each process collects with its
own real robots into its own replay buffer and imagines its own robots; the world model's updates
(DDP, `wm_batch` split over the processes) and PPO's (rsl-rl's multi-GPU support,
`DataParallelRunner`) average their gradients, so every process holds the same world model and
policy. The first process alone evaluates, logs, saves and exports; each process keeps its own
resume state. The log's figures of collection, model error and imagined reward are the first
process's; its transition counts are every process's.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from rsl_rl.runners import OnPolicyRunner
from tensordict import TensorDict
from torch.utils.tensorboard import SummaryWriter

from rwm.data.array_dataset import ArrayDataset
from rwm.evaluation.heldout import heldout_error, trajectory_tensors
from rwm.evaluation.policy_eval import PolicyEvalConfig, evaluate_policy
from rwm.export.policy_onnx import load_actor_from_onnx
from rwm.export.runtime import OnnxPolicy
from rwm.models.factory import load_checkpoint, save_checkpoint
from rwm.rl.imagination_env import ImaginationConfig, ImaginationEnv
from rwm.rl.mixed_env import ImaginedAndRealEnv
from rwm.rl.vec_env import AnymalVecEnv
from rwm.robot.policy_io import OBS_DIM_WITH_LAST_ACTION, raw_to_targets
from rwm.runners.ppo import (
    DataParallelRunner,
    PPOConfig,
    TrainConfig,
    export_runner_policy,
    runner_config,
    warm_up_critic,
)
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig, PushConfig
from rwm.sim.commands import CommandConfig
from rwm.sim.reward import tracking_reward
from rwm.sim.variants import TRAINING_RANGES, variant_named
from rwm.storage.replay_buffer import ReplayBuffer, TrajectoryRecorder
from rwm.training.distributed import start, stop
from rwm.training.learner import LearnerConfig, WorldModelLearner


@dataclass
class MBPOConfig:
    """Budgets of the online loop (real data, model refinement, imagined PPO) and its seed."""

    iterations: int = 40
    real_envs: int = 32
    """Simulated robots that collect real transitions each iteration (with `real_ppo_envs`: unused)."""
    real_steps: int = 100
    """Steps each of them runs per iteration (real transitions = real_envs x real_steps; with
    `real_ppo_envs`: unused)."""
    real_command_resample_s: float = 10.0
    """How often the collecting robots get a new command: command changes are where a policy falls,
    so the model needs real transitions through them."""
    domain_randomization: bool = False
    """The collecting robots are a family: a new one from `rwm.sim.variants.TRAINING_RANGES` at every
    reset (sensor noise included), so that the model learns the family and the policy meets it."""
    wm_iterations: int = 50
    wm_batch: int = 256
    wm_learning_rate: float = 1e-4
    history: int | None = None
    """History and forecast of the world model's loss; None: those it was pretrained with (the loss
    configuration comes from its checkpoint, so the loop refines it as it was trained)."""
    horizon: int | None = None
    ppo_iterations: int = 20
    """PPO updates in imagination per iteration."""
    real_ppo_envs: int = 0
    """Real robots of the family inside every PPO rollout, beside the imagined ones (MBPO's real ratio:
    Janner et al. 2019 train on 5 % real transitions; `rwm.rl.mixed_env`), so that PPO also learns from
    the real falls the model does not show. Their transitions feed the model too, in place of the
    separate collection of `real_envs` x `real_steps`, and count. A robot's rows go to the buffer when
    its episode ends and at the end of each round of PPO updates, so a round (`ppo_iterations` x
    `ppo.num_steps_per_env` steps) shorter than the world model's window leaves pieces it cannot
    learn from. 0: imagination only (the paper)."""
    imagination: ImaginationConfig = field(default_factory=lambda: ImaginationConfig(num_envs=512))
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval_episodes: int = 16
    """Simulated episodes (20 s) for the true reward logged each iteration."""
    eval_variants: tuple[str, ...] = ()
    """Robot variants (`config/robot_variants.yaml`) each iteration's policy is also judged on, as many
    episodes each: a loop on a family of robots shows there whether it grows robust."""
    critic_warmup: int = 20
    """With a starting policy: PPO iterations in imagination that train only the fresh critic first."""
    real_gate_z: float = 0.0
    """Keep a PPO update only if, on the gate's real robots, it falls no more than the best policy kept
    so far (its Poisson mean plus this many standard deviations, plus one) and tracks no worse than the
    best kept tracking minus `real_gate_tracking_drop` (`RealGate`); otherwise go back to the kept
    policy. A check on real data, which imagination cannot game. The loop exports, of every kept
    policy, the one that fell least on the gate's robots (`safer`). 0: off, every update is kept."""
    real_gate_tracking_drop: float = 0.02
    """How far below the best kept tracking (normalized, per step) an update may track."""
    real_gate_robots: int = 32
    """The gate's robots: the same ones (drawn from the family with `real_gate_seed`, with the same
    commands and pushes) for every policy it judges, each run from its reset for `real_gate_steps`;
    their transitions go to the buffer and count. The loop's own collecting robots cannot judge: a
    new draw of the family every iteration moves their falls more than a policy does (measured:
    models/README.md, the fifteenth run)."""
    real_gate_steps: int = 300
    """Steps of each gate robot from its reset; 300 (6 s) take it through one command change with
    `real_command_resample_s` 4, where falls come."""
    real_gate_seed: int = 7000
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    """Where the world model, imagination and PPO run (cpu|cuda); the real robots are simulated on the CPU."""


def deterministic_policy(runner: OnPolicyRunner):
    """The runner's current actor as numpy observations -> raw actions (mean, normalization included)."""
    actor = runner.get_inference_policy()
    device = runner.device

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
            return actor(TensorDict({"policy": obs_t}, batch_size=[len(obs)])).cpu().numpy()

    return act


@dataclass
class RealCollection:
    """One round of real data: the pieces that went to the buffer, and how the collecting policy fared."""

    pieces: list[dict[str, np.ndarray]]
    steps: int
    """Robot-steps in all (robots x steps)."""
    falls: int
    tracking: float
    """Mean normalized tracking reward per step (`rwm.sim.reward.tracking_reward`)."""

    @property
    def falls_per_1000_steps(self) -> float:
        return 1000.0 * self.falls / max(self.steps, 1)


@dataclass
class RealGate:
    """Accepts a policy only if its run on the gate's robots is not worse than the reference: falls at
    most the reference rate's Poisson mean plus `z` standard deviations (plus one), tracking at most
    `tracking_drop` lower. The reference is the best rate and the best tracking of every accepted run
    (they may come from different policies), so a run of slightly worse policies cannot ratchet it
    down; the bar only rises. A run with non-finite tracking is never accepted."""

    z: float
    tracking_drop: float
    falls_per_step: float | None = None
    tracking: float | None = None

    def judge(self, run: RealCollection) -> bool:
        """Whether `run`'s policy is kept; a kept run moves the reference (the first one sets it)."""
        if not np.isfinite(run.tracking) or run.steps < 1:
            return False
        if self.falls_per_step is not None and self.tracking is not None:
            expected = self.falls_per_step * run.steps
            if run.falls > expected + self.z * np.sqrt(expected) + 1:
                return False
            if run.tracking < self.tracking - self.tracking_drop:
                return False
        rate = run.falls / run.steps
        self.falls_per_step = rate if self.falls_per_step is None else min(self.falls_per_step, rate)
        self.tracking = run.tracking if self.tracking is None else max(self.tracking, run.tracking)
        return True


def keep_or_go_back(
    gate: RealGate, run: RealCollection, alg, kept: dict, iteration: int
) -> tuple[bool, dict]:
    """Judge the update iteration - 1 made (now in `alg`, rsl-rl's PPO) by its `run` on the gate's
    robots: keep a copy of it (policy and optimizer, with the run's figures), or load the kept one
    back. Copies both ways, so that later updates never write into what is kept."""
    if gate.judge(run):
        return True, {**copy.deepcopy(alg.save()), **gate_figures(run), "made_by_iteration": iteration - 1}
    alg.load(copy.deepcopy(kept), None, True)
    return False, kept


def gate_figures(run: RealCollection) -> dict:
    """What a kept policy did on the gate's robots (plain numbers: loop states load weights_only)."""
    return {"gate_falls_per_step": run.falls / run.steps, "gate_tracking": float(run.tracking)}


def safer(candidate: dict, safest: dict) -> dict:
    """Of two kept policies, the one that fell less on the gate's robots (the same robots for both;
    equal falls: the better tracking, then the newer). Why the loop exports this one and not simply
    the last kept: a gate within 2 std accepts, step by step, updates each a little worse than the
    best. In the nineteenth family loop the last kept policy fell 85 of 100 times with weak motors
    on the suite, the one with the fewest gate falls 50, the starting policy 67 (models/README.md)."""
    if candidate["gate_falls_per_step"] != safest["gate_falls_per_step"]:
        return candidate if candidate["gate_falls_per_step"] < safest["gate_falls_per_step"] else safest
    return candidate if candidate["gate_tracking"] >= safest["gate_tracking"] else safest


def collect_real(env: BatchedAnymalEnv, policy, steps: int, buffer: ReplayBuffer) -> RealCollection:
    """Run `policy` on the real (simulated) robots; every finished piece of trajectory goes to the
    buffer (with each robot's parameters, read before the step that may reset it, when the buffer
    keeps them)."""
    n = env.num_envs
    recorder = TrajectoryRecorder(buffer, n)
    falls, tracking = 0, 0.0
    obs = env.observation()
    for _ in range(steps):
        state, contacts, robot_params = env.state.copy(), env.contacts.copy(), env.robot_params.copy()
        targets = raw_to_targets(np.asarray(policy(obs.copy()), dtype=np.float64))
        out = env.step(targets)
        falls += int(out.terminated.sum())
        tracking += float(tracking_reward(out.terms).sum())
        recorder.add(state, targets, contacts, robot_params, out.terminated | out.truncated)
        obs = out.obs
    recorder.flush_all()
    return RealCollection(recorder.pop_pieces(), n * steps, falls, tracking / max(n * steps, 1))


def model_error_on(model, pieces: list[dict[str, np.ndarray]], learner: LearnerConfig) -> float | None:
    """Relative AR error over the forecast after the history on newly collected pieces (Fig. 8)."""
    robot_params = [p["robot_params"] for p in pieces] if model.robot_param_dim else None
    held = trajectory_tensors(
        [p["state"] for p in pieces], [p["action"] for p in pieces], learner.window, robot_params
    )
    if held is None:
        return None
    return heldout_error(model, {k: v.to(model.device) for k, v in held.items()}, learner.history)["mean"]


def real_robots(cfg: MBPOConfig, num_envs: int, seed: int) -> BatchedAnymalEnv:
    """The loop's real (simulated) robots: pushed, new commands every `real_command_resample_s`, a new
    robot of the family at every reset with `domain_randomization`."""
    return BatchedAnymalEnv(
        EnvConfig(
            num_envs=num_envs,
            seed=seed,
            pushes=PushConfig(enabled=True),
            commands=CommandConfig(resample_time_s=cfg.real_command_resample_s),
            randomization=TRAINING_RANGES if cfg.domain_randomization else None,
            termination_penalty=cfg.imagination.termination_penalty,  # as PPO's imagined robots
        )
    )


def run_gate_robots(cfg: MBPOConfig, policy, buffer: ReplayBuffer) -> RealCollection:
    """`policy` on the gate's robots, the same for every policy judged (`MBPOConfig.real_gate_robots`)."""
    env = real_robots(cfg, cfg.real_gate_robots, cfg.real_gate_seed)
    try:
        return collect_real(env, policy, cfg.real_gate_steps, buffer)
    finally:
        env.close()


LOOP_STATE = "loop_state.pt"
"""What `train_mbpo(resume=True)` continues from, in the loop's output folder (the first process's;
`loop_state_rank<R>.pt` another's: each holds its own collected data)."""


def loop_state_file(out: Path, rank: int) -> Path:
    """Process `rank`'s resume state in the loop's output folder."""
    return out / (LOOP_STATE if rank == 0 else f"loop_state_rank{rank}.pt")


def save_loop_state(
    path: Path,
    iteration: int,
    learner: WorldModelLearner,
    buffer: ReplayBuffer,
    runner: OnPolicyRunner,
    log: list,
    gate: RealGate | None,
    kept: dict | None,
    safest: dict | None,
    processes: int = 1,
) -> None:
    """Everything a resumed loop needs after `iteration`, in one file written atomically (a loop killed
    while writing resumes from the iteration before)."""
    state = {
        "iteration": iteration,
        "world_model": learner.model.state_dict(),
        "learner_optimizer": learner.optimizer.state_dict(),
        "collected": buffer.collected_tensors(),
        "runner": {**runner.alg.save(), "iter": runner.current_learning_iteration},
        "log_rows": log,
        "processes": processes,
    }
    if gate is not None:
        state["gate"] = {"falls_per_step": gate.falls_per_step, "tracking": gate.tracking}
        state["kept_runner"] = kept
        state["safest_runner"] = safest
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def learner_config(cfg: MBPOConfig, pretrained: dict) -> LearnerConfig:
    """The world model's pretraining loss, at the loop's learning rate (and history/forecast if set)."""
    learner = LearnerConfig.from_dict(pretrained)
    learner.learning_rate, learner.lr_schedule = cfg.wm_learning_rate, "constant"
    learner.history = cfg.history if cfg.history is not None else learner.history
    learner.horizon = cfg.horizon if cfg.horizon is not None else learner.horizon
    return learner


def train_mbpo(
    cfg: MBPOConfig,
    world_model: str | Path,
    pretrain: str | Path | None,
    out_dir: str | Path,
    export_path: str | Path | None = None,
    command: str = "",
    init_from: str | Path | None = None,
    resume: bool = False,
) -> dict | None:
    """Run the loop; logs and checkpoints go to out_dir; optionally export the policy to ONNX.

    `init_from` (an exported policy) starts the actor from that policy instead of from scratch.
    `real_transitions` counts every real transition the result depends on: the pretraining data of
    the world model, the transitions collected online and those behind `init_from`.
    `resume` continues from the last finished iteration in out_dir (`loop_state.pt`: world model,
    its optimizer, the collected data, policy and PPO optimizer, the log) up to `cfg.iterations`; the
    collecting robots and the buffer's sampling are seeded anew from the iteration it resumes at.
    Under `torchrun`, the summary comes from the first process (None from the others).
    """
    parallel = start(cfg.device)
    if parallel.world_size > 1 and cfg.real_gate_z > 0:
        raise ValueError(
            "the real-data gate judges in one process: train-mbpo --real-gate-z without torchrun"
        )
    main = parallel.is_main
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parallel.seed(cfg.seed)  # the networks are the first process's (DDP and rsl-rl broadcast them)
    torch.set_num_threads(cfg.threads)
    own_seed = parallel.own_seed(cfg.seed)  # real robots and buffer sampling of this process
    state_file = loop_state_file(out, parallel.rank)
    resumed = (
        torch.load(state_file, map_location="cpu", weights_only=True)
        if resume and state_file.exists()
        else None
    )
    if resumed is not None and resumed.get("processes", 1) != parallel.world_size:
        raise ValueError(
            f"{state_file} comes from {resumed.get('processes', 1)} processes: resume with as many"
        )
    if resume and resumed is None:
        print(f"nothing to resume in {out}: starting from iteration 0")
    first_iteration = resumed["iteration"] + 1 if resumed else 0
    # a process killed between the first process's save and its own would resume an iteration apart
    parallel.agree(first_iteration, "the iteration to resume at (the loop states of the processes)")
    model, entries = load_checkpoint(world_model)
    if resumed:
        model.load_state_dict(resumed["world_model"])
    model.to(parallel.device)  # before the learner builds its optimizer (and DDP broadcasts the model)
    learner = WorldModelLearner(
        model, learner_config(cfg, entries.get("train_config", {})), parallel=parallel
    )
    buffer = ReplayBuffer(
        ArrayDataset(pretrain) if pretrain else None,
        seed=own_seed + first_iteration,
        with_robot_params=model.robot_param_dim > 0,
    )
    if resumed:
        learner.optimizer.load_state_dict(resumed["learner_optimizer"])
        buffer.add_collected(resumed["collected"])
    # the real robots: those that collect between PPO's rounds, or those inside PPO's rollouts
    real_env = real_robots(cfg, cfg.real_ppo_envs or cfg.real_envs, own_seed + first_iteration)
    runner_cfg = runner_config(TrainConfig(ppo=cfg.ppo, seed=cfg.seed))
    runner_cfg["logger"] = "tensorboard"
    if main:  # beside every iteration's policy_<it>.pt, so that `rwm export-policy` exports any of them
        (out / "runner_config.json").write_text(json.dumps(runner_cfg, indent=2))
    collection = None  # the online part of the buffer starts before the first imagination, as in the paper
    if resumed is None:
        stand = lambda o: np.zeros((len(o), 12))  # noqa: E731 - the standing pose, before any policy exists
        collection = collect_real(real_env, stand, learner.cfg.window, buffer)
    imagination = ImaginationEnv(
        model, buffer, replace(cfg.imagination, seed=parallel.own_seed(cfg.imagination.seed))
    )
    ppo_env, real_in_ppo = imagination, None
    if cfg.real_ppo_envs > 0:
        real_in_ppo = AnymalVecEnv(real_env.cfg, real_env, TrajectoryRecorder(buffer, real_env.num_envs))
        ppo_env = ImaginedAndRealEnv(imagination, real_in_ppo)
    runner = DataParallelRunner(ppo_env, runner_cfg, str(out / "ppo") if main else None, parallel)
    prior_transitions = 0
    if init_from is not None:
        prior_transitions = OnnxPolicy(init_from).real_transitions
    if resumed:  # what runner.load does, without unpickling code (weights_only)
        runner.alg.load(resumed["runner"], None, True)
        runner.current_learning_iteration = resumed["runner"]["iter"]
        print(f"resumed from {state_file} at iteration {first_iteration}")
    elif init_from is not None:
        load_actor_from_onnx(runner.alg.actor, init_from)
        warm_up_critic(runner, cfg.critic_warmup)
        if real_in_ppo is not None:  # the warm-up's real transitions are the next round's new data
            real_in_ppo.recorder.flush_all()
    gate = RealGate(cfg.real_gate_z, cfg.real_gate_tracking_drop) if cfg.real_gate_z > 0 else None
    # the last policy the gate accepted (PPO's state with it, its figures on the gate's robots and the
    # iteration whose update made it: -1, the starting policy), what a rejected update goes back to;
    # and of all kept policies the one that fell least there, what the loop exports (`safer`)
    kept = {**copy.deepcopy(runner.alg.save()), "made_by_iteration": -1} if gate else None
    safest = kept
    gate_run = None
    if resumed is not None and ("gate" in resumed) != (gate is not None):
        with_or_without = "without" if gate is not None else "with"
        raise ValueError(f"{state_file} comes from a loop {with_or_without} the real-data gate: resume it so")
    if gate is not None and resumed is not None:
        gate.falls_per_step, gate.tracking = resumed["gate"]["falls_per_step"], resumed["gate"]["tracking"]
        if "safest_runner" not in resumed:
            raise ValueError(
                f"{state_file} comes from a gated loop that kept no figures of its policies: start anew"
            )
        kept, safest = resumed["kept_runner"], resumed["safest_runner"]
    elif gate is not None:  # the starting policy on the gate's robots sets the first reference
        gate_run = run_gate_robots(cfg, deterministic_policy(runner), buffer)
        if not gate.judge(gate_run):
            run = f"{gate_run.steps} steps, tracking {gate_run.tracking}"
            raise RuntimeError(f"the starting policy's run on the gate's robots is not usable: {run}")
        kept.update(gate_figures(gate_run))
    writer = SummaryWriter(str(out / "tensorboard")) if main else None
    log_rows: list[dict] = list(resumed["log_rows"]) if resumed else []
    began = time.time() - (log_rows[-1]["wall_s"] if log_rows else 0.0)
    config = {**asdict(cfg), "world_model_learner": learner.cfg.as_dict(), "processes": parallel.world_size}
    if main:
        (out / "mbpo_config.json").write_text(json.dumps(config, indent=2, default=str))
    for it in range(first_iteration, cfg.iterations):
        policy = deterministic_policy(runner)
        candidate_kept = None
        if it > 0:
            if real_in_ppo is not None:  # what the real robots in PPO's rollouts did since the last round
                collection = RealCollection(real_in_ppo.recorder.pop_pieces(), *real_in_ppo.pop_figures())
            else:
                collection = collect_real(real_env, policy, cfg.real_steps, buffer)
            if gate is not None:
                gate_run = run_gate_robots(cfg, policy, buffer)
                candidate_kept, kept = keep_or_go_back(gate, gate_run, runner.alg, kept, it)
                safest = safer(kept, safest) if candidate_kept else safest
        error_new = model_error_on(model, collection.pieces, learner.cfg)
        for _ in range(cfg.wm_iterations):
            learner.update(buffer.sample(parallel.share(cfg.wm_batch), learner.cfg.window))
        model.eval()
        imagination.pop_reward_mean()
        runner.learn(
            num_learning_iterations=cfg.ppo_iterations, init_at_random_ep_len=(it == 0 and init_from is None)
        )
        imagined_reward = imagination.pop_reward_mean()
        if real_in_ppo is not None:
            real_in_ppo.recorder.flush_all()
        collected_rows = parallel.sum(buffer.collected_rows)
        if not main:  # the first process alone evaluates, logs and saves; each keeps its own state,
            parallel.barrier()  # written after the first process's
            save_loop_state(
                state_file, it, learner, buffer, runner, [], gate, kept, safest, parallel.world_size
            )
            continue
        policy = deterministic_policy(runner)
        true = evaluate_policy(
            policy,
            OBS_DIM_WITH_LAST_ACTION,
            PolicyEvalConfig(episodes=cfg.eval_episodes, seed=1000 + it),
        )
        row = {
            "iteration": it,
            "real_transitions": prior_transitions + buffer.base_rows + collected_rows,
            "collected_transitions": collected_rows,
            "imagined_reward_per_step": imagined_reward,
            "true_tracking_reward": true["tracking_reward_normalized"],
            "true_falls": true["falls"],
            "model_error_new_data": error_new,
            # None where no real robot ran since the last round (the first iteration of a resumed loop
            # with the real robots in PPO's rollouts: their unfinished round died with the process)
            "collecting_falls_per_1000_steps": round(collection.falls_per_1000_steps, 3)
            if collection.steps
            else None,
            "collecting_tracking": round(collection.tracking, 4) if collection.steps else None,
        }
        if gate is not None:
            row["gate_falls_per_1000_steps"] = round(gate_run.falls_per_1000_steps, 3)
            row["gate_tracking"] = round(gate_run.tracking, 4)
            row["previous_update_kept"] = candidate_kept
        for name in cfg.eval_variants:
            on_variant = evaluate_policy(
                policy,
                OBS_DIM_WITH_LAST_ACTION,
                PolicyEvalConfig(episodes=cfg.eval_episodes, seed=1000 + it, variant=variant_named(name)),
            )
            row[f"true_tracking_{name}"] = on_variant["tracking_reward_normalized"]
            row[f"true_falls_{name}"] = on_variant["falls"]
        row["wall_s"] = round(time.time() - began, 1)
        log_rows.append(row)
        for k, v in row.items():
            if k != "iteration" and v is not None:
                writer.add_scalar(f"mbpo/{k}", v, it)
        print(json.dumps(row), flush=True)
        with (out / "mbpo_log.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in log_rows for k in r)))
            w.writeheader()
            w.writerows(log_rows)
        runner.save(str(out / f"policy_{it}.pt"))  # not in ppo/: rsl-rl saves model_<PPO iteration> there
        save_checkpoint(
            model, out / "world_model.pt", iteration=it, train_config=entries.get("train_config", {})
        )
        save_loop_state(
            state_file, it, learner, buffer, runner, log_rows, gate, kept, safest, parallel.world_size
        )
        parallel.barrier()
    real_env.close()
    collected_rows = parallel.sum(buffer.collected_rows)
    replicas = runner.replica_max_abs_diff(*model.parameters())
    stop(parallel)
    if not main:
        return None
    writer.close()
    plot_mbpo(log_rows, out / "mbpo.png")
    real_transitions = prior_transitions + buffer.base_rows + collected_rows
    summary = {
        "log_dir": str(out),
        "iterations": cfg.iterations,
        "processes": parallel.world_size,
        "real_transitions": real_transitions,
        "collected_transitions": collected_rows,
        "wall_time_s": round(time.time() - began, 1),
        "last": log_rows[-1],
    }
    if parallel.world_size > 1:
        summary["replica_max_abs_diff"] = replicas
    if gate is not None:  # the last update was never tried on real robots: export a kept policy
        runner.alg.load(safest, None, True)
        summary["kept_policy"] = {"made_by_iteration": kept["made_by_iteration"]}
        summary["exported_policy"] = {  # the kept policy that fell least on the gate's robots
            "made_by_iteration": safest["made_by_iteration"],
            "gate_falls_per_1000_steps": round(1000 * safest["gate_falls_per_step"], 3),
            "gate_tracking": round(safest["gate_tracking"], 4),
        }
        summary["gate_reference"] = {  # the best of every kept run, not necessarily the kept policy's
            "falls_per_1000_steps": round(1000 * gate.falls_per_step, 3),
            "tracking": round(gate.tracking, 4),
        }
    if export_path is not None:
        meta = {
            "source": "mbpo",
            "real_transitions": real_transitions,
            "iterations": cfg.iterations,
        }
        if init_from is not None:
            meta["init_from"] = str(init_from)
        if gate is not None:
            meta["kept_iteration"] = safest["made_by_iteration"]
        summary.update(
            export_runner_policy(runner, export_path, {**meta, "seed": cfg.seed, "command": command})
        )
    return summary


def plot_mbpo(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [r["iteration"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, key, title in zip(
        axes,
        ("imagined_reward_per_step", "true_tracking_reward", "model_error_new_data"),
        ("imagined reward / step", "true tracking reward (sim)", "model AR error on new data"),
        strict=True,
    ):
        ax.plot(it, [np.nan if r[key] is None else r[key] for r in rows], "o-")
        ax.set(xlabel="MBPO iteration", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
