"""Model-free PPO on the simulated ANYmal with rsl-rl's OnPolicyRunner (the paper's baseline).

Started by `torchrun --nproc_per_node W`, it trains data-parallel through rsl-rl's multi-GPU support:
each process simulates its own robots (`num_envs` each, its own seed), rsl-rl averages the gradients
and the adaptive learning rate's KL over the processes, and the first process alone logs, saves and
exports. Resuming needs the same number of processes and a log_dir they all see."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from rsl_rl.env import VecEnv
from rsl_rl.runners import OnPolicyRunner

from rwm.rl.vec_env import AnymalVecEnv
from rwm.sim.batched_env import EnvConfig, PushConfig
from rwm.training.distributed import Parallel, start, stop


@dataclass
class PPOConfig:
    """PPO hyper-parameters of the paper (A-C) and the runner's settings."""

    learning_rate: float = 1e-3
    schedule: str = "adaptive"
    desired_kl: float = 0.01
    gamma: float = 0.99
    lam: float = 0.95
    clip_param: float = 0.2
    entropy_coef: float = 0.005
    num_learning_epochs: int = 5
    num_mini_batches: int = 4
    value_loss_coef: float = 1.0
    max_grad_norm: float = 1.0
    hidden_dims: tuple[int, ...] = (128, 128, 128)
    activation: str = "elu"
    init_std: float = 1.0
    num_steps_per_env: int = 24
    save_interval: int = 50


@dataclass
class TrainConfig:
    """A PPO training run: environment, algorithm, length and seed."""

    env: EnvConfig = field(default_factory=lambda: EnvConfig(num_envs=256, pushes=PushConfig(enabled=True)))
    ppo: PPOConfig = field(default_factory=PPOConfig)
    max_iterations: int = 1500
    seed: int = 1
    torch_threads: int = 2
    device: str = "cpu"
    """Where rsl-rl's networks learn (cpu or cuda); the simulation runs on the CPU either way."""


def runner_config(cfg: TrainConfig) -> dict:
    """The dict rsl-rl's OnPolicyRunner expects."""
    p = cfg.ppo
    model = {
        "class_name": "MLPModel",
        "hidden_dims": list(p.hidden_dims),
        "activation": p.activation,
        "obs_normalization": True,
    }
    return {
        "seed": cfg.seed,
        "num_steps_per_env": p.num_steps_per_env,
        "save_interval": p.save_interval,
        "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
        "logger": "tensorboard",
        "multi_gpu": None,
        "actor": {
            **model,
            "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": p.init_std},
        },
        "critic": dict(model),
        "algorithm": {
            "class_name": "PPO",
            "learning_rate": p.learning_rate,
            "schedule": p.schedule,
            "desired_kl": p.desired_kl,
            "gamma": p.gamma,
            "lam": p.lam,
            "clip_param": p.clip_param,
            "entropy_coef": p.entropy_coef,
            "num_learning_epochs": p.num_learning_epochs,
            "num_mini_batches": p.num_mini_batches,
            "value_loss_coef": p.value_loss_coef,
            "max_grad_norm": p.max_grad_norm,
        },
    }


class DataParallelRunner(OnPolicyRunner):
    """rsl-rl's runner, its process group that of `rwm.training.distributed.start`: rsl-rl's own
    multi-GPU setup insists on one CUDA device per process and nccl, which leaves the CPU (gloo) and
    its tests out. What data-parallel training does stays rsl-rl's: the first process's networks and
    observation normalization broadcast at the start of every `learn()`, gradients and KL averaged in
    every update, logs and checkpoints from the first process. Within one `learn()` each process
    updates its own normalization statistics; the next `learn()` (the MBPO loop's next iteration)
    starts again from the first process's."""

    def __init__(self, env: VecEnv, train_cfg: dict, log_dir: str | None, parallel: Parallel) -> None:
        self.parallel = parallel
        super().__init__(env, train_cfg, log_dir=log_dir, device=str(parallel.device))

    def _configure_multi_gpu(self) -> None:
        p = self.parallel
        self.gpu_world_size, self.gpu_global_rank = p.world_size, p.rank
        self.gpu_local_rank = p.device.index or 0
        self.is_distributed = p.world_size > 1
        self.cfg["multi_gpu"] = (
            {"global_rank": p.rank, "local_rank": self.gpu_local_rank, "world_size": p.world_size}
            if self.is_distributed
            else None
        )

    def replica_max_abs_diff(self, *more: torch.Tensor) -> float:
        """Largest difference of any actor or critic parameter (and of `more`, such as a world model's)
        from the first process's (every process calls it): 0 when the replicas stayed one model."""
        return self.parallel.max_abs_diff_from_first(
            [*self.alg.actor.parameters(), *self.alg.critic.parameters(), *more]
        )


def latest_checkpoint(log_dir: Path) -> Path | None:
    """The highest-numbered model_<it>.pt in log_dir."""
    ckpts = sorted(log_dir.glob("model_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    return ckpts[-1] if ckpts else None


def _stage_start(init_from: str | Path | None) -> int:
    """The iteration a stage starts at: after its initial checkpoint's, or 0."""
    if init_from is None or Path(init_from).suffix == ".onnx":
        return 0
    return int(torch.load(init_from, map_location="cpu", weights_only=True)["iter"]) + 1


def transitions_used(iterations: int, num_envs: int, num_steps_per_env: int, processes: int = 1) -> int:
    """Real simulator transitions consumed by `iterations` PPO iterations of `processes` processes with
    `num_envs` robots each."""
    return iterations * num_envs * num_steps_per_env * processes


def train_ppo(
    cfg: TrainConfig,
    log_dir: str | Path,
    resume: bool = False,
    export_path: str | Path | None = None,
    command: str = "",
    init_from: str | Path | None = None,
) -> dict | None:
    """Train (or resume) PPO; checkpoints and TensorBoard logs go to log_dir; optionally export ONNX.

    `init_from` starts a new stage (its own log_dir, possibly another environment config) from a
    checkpoint of an earlier one (iterations continue from that checkpoint's count), or from an
    exported ONNX policy (its actor; the critic learns from scratch, iterations count from 0; the
    export's `real_transitions` then adds the file's own, every real transition the result depends on).

    Returns a summary (iterations, transitions, wall time, parity error of the export); under
    `torchrun`, in the first process only (None in the others).
    """
    parallel = start(cfg.device)
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    parallel.seed(cfg.seed)  # the networks are broadcast from the first process at the start
    torch.set_num_threads(cfg.torch_threads)
    env = AnymalVecEnv(replace(cfg.env, seed=parallel.own_seed(cfg.env.seed)))
    runner = DataParallelRunner(env, runner_config(cfg), str(log_dir) if parallel.is_main else None, parallel)
    done_iterations = 0
    start_iteration = _stage_start(init_from)
    ckpt = latest_checkpoint(log_dir) if resume else None
    if ckpt is not None and (log_dir / "train_config.json").exists():
        ran_with = json.loads((log_dir / "train_config.json").read_text()).get("processes", 1)
        if ran_with != parallel.world_size:
            raise ValueError(f"{log_dir} was trained by {ran_with} processes: resume it with as many")
    if ckpt is None and init_from is not None and Path(init_from).suffix == ".onnx":
        from rwm.export.policy_onnx import load_actor_from_onnx  # noqa: PLC0415

        load_actor_from_onnx(runner.alg.actor, init_from)
        print(f"actor from {init_from}; critic and optimizer start fresh")
    elif ckpt is None and init_from is not None:
        ckpt = Path(init_from)
    if ckpt is not None:  # what runner.load does, without unpickling code (weights_only)
        loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
        runner.alg.load(loaded, None, True)
        runner.current_learning_iteration = loaded["iter"]
        done_iterations = runner.current_learning_iteration + 1
        runner.current_learning_iteration = done_iterations
        print(f"resumed from {ckpt} at iteration {done_iterations}")
    # the curriculum's clock continues where the stage stopped (a resumed run does not restart it),
    # and the robots built at step 0 are drawn again from the ranges of that step
    env.env.total_steps = (done_iterations - start_iteration) * cfg.ppo.num_steps_per_env
    if env.env.total_steps and cfg.env.randomization_ramp_steps:
        env.env.reset_all()
    if parallel.is_main:
        written = {**asdict(cfg), "processes": parallel.world_size}
        (log_dir / "train_config.json").write_text(json.dumps(written, indent=2, default=str))
        (log_dir / "runner_config.json").write_text(json.dumps(runner_config(cfg), indent=2))
    remaining = cfg.max_iterations - done_iterations
    began = time.time()
    if remaining > 0:
        runner.learn(num_learning_iterations=remaining, init_at_random_ep_len=(ckpt is None))
    env.close()
    replica_diff = runner.replica_max_abs_diff()
    stop(parallel)
    if not parallel.is_main:
        return None
    summary = {
        "log_dir": str(log_dir),
        "iterations": cfg.max_iterations,
        "seed": cfg.seed,
        "num_envs": cfg.env.num_envs,
        "processes": parallel.world_size,
        "transitions": transitions_used(
            cfg.max_iterations, cfg.env.num_envs, cfg.ppo.num_steps_per_env, parallel.world_size
        ),
        "wall_time_s_this_run": round(time.time() - began, 1),
    }
    if parallel.world_size > 1:
        summary["replica_max_abs_diff"] = replica_diff
    if export_path is not None:
        prior = 0
        if init_from is not None and Path(init_from).suffix == ".onnx":
            from rwm.export.runtime import OnnxPolicy  # noqa: PLC0415

            prior = OnnxPolicy(init_from).real_transitions
        real = prior + summary["transitions"]
        meta = {"source": "ppo", "real_transitions": real, "iterations": cfg.max_iterations}
        summary.update(
            export_runner_policy(runner, export_path, {**meta, "seed": cfg.seed, "command": command})
        )
    return summary


def warm_up_critic(runner: OnPolicyRunner, iterations: int) -> None:
    """PPO iterations that train only the critic (the actor's parameters frozen, its observation
    normalization put back after); the learning rate, which rsl-rl's adaptive schedule raises while
    the actor does not move, is put back too."""
    if iterations <= 0:
        return
    alg = runner.alg
    frozen = [p for p in alg.actor.parameters() if p.requires_grad]
    normalizer = {k: v.clone() for k, v in alg.actor.obs_normalizer.state_dict().items()}
    learning_rate = alg.learning_rate
    for p in frozen:
        p.requires_grad_(False)
    try:
        runner.learn(num_learning_iterations=iterations, init_at_random_ep_len=True)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        alg.actor.obs_normalizer.load_state_dict(normalizer)  # rsl-rl updates it in every update()
        alg.learning_rate = learning_rate
        for group in alg.optimizer.param_groups:
            group["lr"] = learning_rate


def export_runner_policy(runner: OnPolicyRunner, path: str | Path, metadata: dict) -> dict:
    """Export the runner's current actor to ONNX with `metadata` (source, real transitions, seed,
    command); returns the file and its parity error for the run's summary."""
    from rwm.export.policy_onnx import export_policy

    return {
        "onnx": str(path),
        "onnx_parity_max_abs_err": export_policy(runner.alg.get_policy(), path, metadata),
    }
