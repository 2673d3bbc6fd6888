"""`rwm` command line: data collection, PPO, world-model training and evaluation, export."""

from __future__ import annotations

import argparse
import json
import math
import sys


def _collect(args: argparse.Namespace) -> int:
    from rwm.data.collect import collect_bag, collect_dataset

    controller = args.controller
    if args.policy:
        from rwm.export.policy_onnx import OnnxPolicy
        from rwm.rl.policy_controller import BatchPolicyController, PolicyController

        policy = OnnxPolicy(args.policy)
        if args.dataset:
            controller = BatchPolicyController(policy, args.action_noise, seed=args.seed)
        else:
            controller = PolicyController(policy, policy.obs_dim, args.action_noise)
    if args.dataset:
        summary = collect_dataset(
            args.out,
            steps=args.steps,
            num_envs=args.num_envs,
            controller=controller,
            seed=args.seed,
            pushes=not args.no_pushes,
            robot=args.robot,
            episode_length_s=args.episode_length,
        )
    else:
        cmd = tuple(args.cmd) if args.cmd else None
        summary = collect_bag(
            args.out,
            controller=controller,
            duration_s=args.duration,
            seed=args.seed,
            storage=args.storage,
            robot=args.robot,
            cmd=cmd,
        )
    summary["controller"] = args.policy or args.controller
    summary["action_noise"] = args.action_noise if args.policy else None
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _bag_recover(args: argparse.Namespace) -> int:
    from rwm.data.bag_recovery import recover_bag

    failed = 0
    for path in args.bags:
        try:
            recovery = recover_bag(path, args.out if len(args.bags) == 1 else None)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot recover: {e}")
            failed += 1
            continue
        if recovery.kept is None:
            print(f"{path}: complete (it has metadata.yaml): nothing to recover")
        else:
            print(recovery)
        failed += recovery.bag is None
    return 1 if failed else 0


def _load_bag(args: argparse.Namespace) -> int:
    from rwm.data.bag_loader import load_bags

    trajectories, report = load_bags(args.bags)
    print(report)
    print(f"{len(trajectories)} trajectories, {sum(len(t) for t in trajectories)} rows at 50 Hz")
    return 0 if trajectories else 1


def _train_ppo(args: argparse.Namespace) -> int:
    from rwm.runners.ppo import TrainConfig, train_ppo
    from rwm.sim.batched_env import EnvConfig, PushConfig
    from rwm.sim.commands import CommandConfig

    env = EnvConfig(
        num_envs=args.num_envs,
        seed=args.seed,
        pushes=PushConfig(enabled=True),
        commands=CommandConfig(resample_time_s=args.resample_time),
        termination_penalty=args.termination_penalty,
    )
    cfg = TrainConfig(env=env, max_iterations=args.iterations, seed=args.seed)
    summary = train_ppo(
        cfg,
        args.log_dir,
        resume=args.resume,
        export_path=args.export,
        command="rwm " + " ".join(sys.argv[1:]),
        init_from=args.init_from,
    )
    print(json.dumps(summary, indent=2))
    return 0


def _export_policy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rwm.export.policy_onnx import actor_from_checkpoint, export_policy

    ckpt = Path(args.checkpoint)
    runner_cfg = json.loads((ckpt.parent / "runner_config.json").read_text())
    actor = actor_from_checkpoint(ckpt, runner_cfg, args.obs_dim)
    it = int(ckpt.stem.split("_")[-1]) + 1 if ckpt.stem.split("_")[-1].isdigit() else None
    meta = {
        "source": args.source,
        "checkpoint": ckpt.name,
        "iterations": it,
        "real_transitions": args.real_transitions,
    }
    err = export_policy(actor, args.out, meta)
    print(json.dumps({"onnx": args.out, "parity_max_abs_err": err}))
    return 0


def _select_policy(args: argparse.Namespace) -> int:
    """Evaluate checkpoints on a validation seed and export the best (fewest falls, then tracking)."""
    import tempfile
    from pathlib import Path

    from rwm.evaluation.policy_eval import PolicyEvalConfig, evaluate_policy
    from rwm.export.policy_onnx import OnnxPolicy, actor_from_checkpoint, export_policy

    log_dir = Path(args.log_dir)
    runner_cfg = json.loads((log_dir / "runner_config.json").read_text())
    train_cfg = json.loads((log_dir / "train_config.json").read_text())
    ckpts = sorted(log_dir.glob("model_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    ckpts = [c for c in ckpts if int(c.stem.split("_")[1]) >= args.first]
    if not ckpts:
        raise SystemExit(f"no checkpoint model_<it>.pt with it >= {args.first} in {log_dir}")
    cfg = PolicyEvalConfig(episodes=args.episodes, seed=args.seed, episode_length_s=args.episode_length)
    num_envs, steps = train_cfg["env"]["num_envs"], train_cfg["ppo"]["num_steps_per_env"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in ckpts:
            it = int(ckpt.stem.split("_")[1])
            meta = {
                "source": "ppo",
                "checkpoint": ckpt.name,
                "iterations": it + 1,
                "seed": train_cfg["seed"],
                "real_transitions": (it + 1) * num_envs * steps,
                "selected_on": {"episodes": args.episodes, "seed": args.seed},
            }
            path = Path(tmp) / f"{ckpt.stem}.onnx"
            export_policy(actor_from_checkpoint(ckpt, runner_cfg, args.obs_dim), path, meta)
            result = evaluate_policy(OnnxPolicy(path), args.obs_dim, cfg)
            print(json.dumps({"checkpoint": ckpt.name, **result}), flush=True)
            results.append((result["falls"], -result["tracking_reward_normalized"], it, path, result))
        _, _, it, path, result = min(results, key=lambda r: r[:3])
        Path(args.out).write_bytes(path.read_bytes())
    print(json.dumps({"selected": f"model_{it}.pt", "out": args.out, "validation": result}, indent=2))
    return 0


def _wm_config(args: argparse.Namespace):
    from rwm.runners.world_model import WorldModelTrainConfig
    from rwm.training.latent_regularization import LatentNoise

    return WorldModelTrainConfig(
        arch=getattr(args, "arch", "rwm"),
        history=args.history,
        horizon=args.horizon,
        decay=args.decay,
        learning_rate=args.lr,
        lr_schedule=args.lr_schedule,
        batch_size=args.batch_size,
        iterations=args.iterations,
        eval_interval=args.eval_interval,
        seed=args.seed,
        threads=args.threads,
        latent_noise=LatentNoise(sigma=args.latent_sigma, mu=args.latent_mu),
        jacobian_weight=getattr(args, "jacobian_weight", 0.0),
    )


def _train_wm(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rwm.data.array_dataset import ArrayDataset
    from rwm.models.factory import load_checkpoint
    from rwm.runners.world_model import train_world_model

    cfg, init = _wm_config(args), None
    if args.init:  # the checkpoint's architecture and normalization, fresh optimizer state
        init, extra = load_checkpoint(args.init)
        trained = extra.get("train_config", {})
        cfg = replace(cfg, arch=trained.get("arch", cfg.arch), model=trained.get("model", cfg.model))
    heldout = ArrayDataset(args.heldout) if args.heldout else None
    summary = train_world_model(cfg, ArrayDataset(args.data), heldout, args.out, init_model=init)
    print(json.dumps(summary, indent=2))
    return 0


def _eval_wm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rwm.data.array_dataset import ArrayDataset
    from rwm.evaluation.heldout import heldout_tensors
    from rwm.evaluation.plots import plot_error_vs_step, plot_latent_drift, plot_noise
    from rwm.evaluation.world_model_suite import SuiteConfig, evaluate_world_models
    from rwm.models.factory import load_checkpoint

    models = {}
    for item in args.model:
        name, _, path = item.rpartition("=")
        models[name or Path(path).parent.name] = load_checkpoint(path)[0]
    held = heldout_tensors(ArrayDataset(args.heldout), args.length)
    results = evaluate_world_models(models, held, SuiteConfig(history=args.history, seed=args.seed))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_error_vs_step(results, out / "error_vs_step.png")
    names = list(models)
    plot_noise(results, out / "noise.png", tuple(names[:2]) if len(names) > 1 else None)
    plot_latent_drift(results, out / "latent_drift.png")
    summary = {name: entry["mean"] for name, entry in results["models"].items()}
    print(json.dumps({"hold_last": results["hold_last"]["mean"], **summary, "out": str(out)}, indent=2))
    return 0


def _export_wm(args: argparse.Namespace) -> int:
    from rwm.export.world_model_onnx import export_world_model
    from rwm.models.factory import load_checkpoint

    model, extra = load_checkpoint(args.checkpoint)
    meta = {"source": args.source, "checkpoint": str(args.checkpoint), "iteration": extra.get("iteration")}
    err = export_world_model(model, args.out, meta)
    print(json.dumps({"onnx": args.out, "rollout_parity_max_abs_err": err}))
    return 0


def _average_wm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rwm.models.factory import average_checkpoints, save_checkpoint

    model, extra = average_checkpoints(args.checkpoints)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, args.out, **extra)
    print(json.dumps({"checkpoint": args.out, "averaged_from": extra["averaged_from"]}))
    return 0


def _wm_table(args: argparse.Namespace) -> int:
    from rwm.experiments.world_model_table import markdown_table, run_table

    results = run_table(
        args.data,
        args.heldout,
        args.out,
        _wm_config(args),
        args.jacobian_weight,
        args.variants or None,
        average_last=args.average_last,
    )
    print(markdown_table(results))
    return 0


def _wm_seeds(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rwm.experiments.world_model_table import summarize_seeds

    summarize_seeds(args.tables, args.out)
    print((Path(args.out) / "seeds.md").read_text())
    return 0


def _wm_sweep(args: argparse.Namespace) -> int:
    from rwm.experiments.horizon_sweep import run_sweep

    sweep = run_sweep(args.data, args.heldout, args.out, _wm_config(args), args.histories, args.horizons)
    print(json.dumps(sweep["cells"], indent=1))
    return 0


def _train_mbpo(args: argparse.Namespace) -> int:
    from rwm.rl.imagination_env import ImaginationConfig
    from rwm.runners.mbpo import MBPOConfig, train_mbpo
    from rwm.runners.ppo import PPOConfig

    cfg = MBPOConfig(
        iterations=args.iterations,
        real_envs=args.real_envs,
        real_steps=args.real_steps,
        real_command_resample_s=args.real_resample_time,
        wm_iterations=args.wm_iterations,
        ppo_iterations=args.ppo_iterations,
        imagination=ImaginationConfig(
            num_envs=args.imagined_envs,
            episode_steps=args.rollout_steps,
            termination_penalty=args.termination_penalty,
            sample_temperature=args.sample_temperature,
            command_resample_steps=args.command_resample_steps,
            max_tilt_gravity_z=-math.cos(math.radians(args.fall_tilt_deg)),
            seed=args.seed,
        ),
        ppo=PPOConfig(init_std=args.init_std),
        seed=args.seed,
    )
    summary = train_mbpo(
        cfg, args.world_model, args.pretrain, args.out, args.export, command="rwm " + " ".join(sys.argv[1:])
    )
    print(json.dumps(summary, indent=2))
    return 0


def _fall_tilt(args: argparse.Namespace) -> int:
    from rwm.data.array_dataset import ArrayDataset
    from rwm.evaluation.fall_tilt import fall_tilt_statistics

    print(json.dumps(fall_tilt_statistics(ArrayDataset(args.data), args.thresholds), indent=1))
    return 0


def _imagine_policy(args: argparse.Namespace) -> int:
    import torch

    from rwm.data.array_dataset import ArrayDataset
    from rwm.evaluation.imagined_policy import compare_with_standing
    from rwm.export.policy_onnx import OnnxPolicy
    from rwm.models.factory import load_checkpoint
    from rwm.rl.imagination_env import ImaginationConfig
    from rwm.storage.replay_buffer import ReplayBuffer

    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.world_model)
    data = ArrayDataset(args.data)
    cfg = ImaginationConfig(
        num_envs=args.robots, online_fraction=0.0, sample_temperature=args.temperature, seed=args.seed
    )
    results = compare_with_standing(
        model, lambda: ReplayBuffer(data, seed=args.seed), OnnxPolicy(args.policy), cfg, args.steps
    )
    print(json.dumps({"temperature": args.temperature, "steps": args.steps, **results}, indent=2))
    return 0


def _eval_policy(args: argparse.Namespace) -> int:
    from rwm.evaluation.policy_eval import PolicyEvalConfig, evaluate_policy
    from rwm.export.policy_onnx import OnnxPolicy

    policy = OnnxPolicy(args.policy)
    cfg = PolicyEvalConfig(
        episodes=args.episodes, episode_length_s=args.episode_length, seed=args.seed, robot=args.robot
    )
    result = {
        "policy": args.policy,
        **evaluate_policy(policy, policy.obs_dim, cfg),
        "real_transitions_used": policy.metadata.get("real_transitions"),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rwm", description="Robotic World Model tools for ANYmal D")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "collect", help="run a controller in simulation and record a rosbag2 or an array dataset"
    )
    p.add_argument("--out", required=True, help="output bag or dataset directory (must not exist)")
    p.add_argument("--controller", default="gait", help="stand | perturb | gait")
    p.add_argument("--policy", help="drive the robot with this ONNX policy instead of --controller")
    p.add_argument("--action-noise", type=float, default=0.0, help="policy: std of noise on raw actions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--robot", default="anymal_d", choices=["anymal_d", "anymal_c"])
    p.add_argument("--duration", type=float, default=60.0, help="bag: simulated seconds")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="bag storage plugin")
    p.add_argument("--cmd", type=float, nargs=3, metavar=("VX", "VY", "WZ"), help="bag: fixed /cmd_vel")
    p.add_argument(
        "--dataset", action="store_true", help="write the compact array dataset from the batched env"
    )
    p.add_argument("--steps", type=int, default=10_000, help="dataset: environment steps (50 Hz)")
    p.add_argument("--num-envs", type=int, default=64, help="dataset: parallel robots")
    p.add_argument("--no-pushes", action="store_true", help="dataset: disable random pushes")
    p.add_argument("--episode-length", type=float, default=20.0, help="dataset: episode length, s")
    p.set_defaults(func=_collect)

    p = sub.add_parser("train-ppo", help="model-free PPO (rsl-rl) on the batched simulation")
    p.add_argument("--log-dir", default="runs/ppo", help="checkpoints, TensorBoard logs, configs")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --log-dir")
    p.add_argument("--init-from", help="start this stage from an earlier stage's checkpoint")
    p.add_argument("--resample-time", type=float, default=10.0, help="new command every this many s")
    p.add_argument("--termination-penalty", type=float, default=0.0, help="reward subtracted on a fall")
    p.add_argument("--export", help="write the final policy to this ONNX file")
    p.set_defaults(func=_train_ppo)

    p = sub.add_parser("export-policy", help="export a PPO checkpoint to ONNX (normalization inside)")
    p.add_argument("checkpoint", help="model_<it>.pt; runner_config.json must lie beside it")
    p.add_argument("--out", required=True)
    p.add_argument("--obs-dim", type=int, default=48)
    p.add_argument("--source", default="ppo")
    p.add_argument("--real-transitions", type=int, help="real transitions its training used")
    p.set_defaults(func=_export_policy)

    p = sub.add_parser("select-policy", help="pick the best checkpoint on a validation seed, export it")
    p.add_argument("--log-dir", default="runs/ppo")
    p.add_argument("--first", type=int, default=0, help="consider checkpoints from this iteration on")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=777, help="validation seed (not eval-policy's 12345)")
    p.add_argument("--episode-length", type=float, default=20.0)
    p.add_argument("--obs-dim", type=int, default=48)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_select_policy)

    def wm_training_args(p: argparse.ArgumentParser, iterations: int, lr: float, batch: int) -> None:
        p.add_argument("--data", required=True, help="array dataset (rwm collect --dataset)")
        needs_heldout = p.prog.endswith(("table", "sweep"))
        p.add_argument("--heldout", required=needs_heldout, help="held-out array dataset")
        p.add_argument("--out", required=True, help="output directory")
        p.add_argument("--history", type=int, default=32, help="M")
        p.add_argument("--horizon", type=int, default=8, help="N (1 = teacher forcing)")
        p.add_argument("--decay", type=float, default=1.0, help="forecast decay alpha")
        p.add_argument("--lr", type=float, default=lr)
        p.add_argument(
            "--lr-schedule", default="constant", choices=["constant", "cosine"], help="cosine: annealed to 0"
        )
        p.add_argument("--batch-size", type=int, default=batch)
        p.add_argument("--iterations", type=int, default=iterations)
        p.add_argument("--eval-interval", type=int, default=200)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=2, help="torch threads")
        p.add_argument("--latent-sigma", type=float, default=0.0, help="latent noise std during training")
        p.add_argument("--latent-mu", type=float, default=0.0, help="latent noise drift during training")

    p = sub.add_parser("train-wm", help="train a world model on an array dataset")
    wm_training_args(p, 2000, 1e-4, 1024)
    p.add_argument("--arch", default="rwm", choices=["rwm", "mlp", "rssm", "transformer"])
    p.add_argument("--jacobian-weight", type=float, default=0.0, help="lambda of the Jacobian penalty")
    p.add_argument("--init", help="continue training this checkpoint (its architecture replaces --arch)")
    p.set_defaults(func=_train_wm)

    p = sub.add_parser("train-mbpo", help="MBPO-PPO: PPO in RWM imagination, real data collected online")
    p.add_argument("--world-model", required=True, help="pretrained world-model checkpoint (.pt)")
    p.add_argument("--pretrain", help="the array dataset it was pretrained on (replay buffer start)")
    p.add_argument("--out", default="runs/mbpo")
    p.add_argument("--export", help="write the final policy to this ONNX file")
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--real-envs", type=int, default=32, help="robots collecting real data per iteration")
    p.add_argument("--real-steps", type=int, default=100, help="steps each collects per iteration")
    p.add_argument(
        "--real-resample-time",
        type=float,
        default=10.0,
        help="the collecting robots' new command every this many s",
    )
    p.add_argument("--wm-iterations", type=int, default=50, help="world-model updates per iteration")
    p.add_argument("--ppo-iterations", type=int, default=20, help="PPO updates in imagination per iteration")
    p.add_argument("--imagined-envs", type=int, default=512)
    p.add_argument("--rollout-steps", type=int, default=100, help="imagined episode length")
    p.add_argument(
        "--command-resample-steps",
        type=int,
        default=0,
        help="new command every this many imagined steps within a rollout (0: one per rollout)",
    )
    p.add_argument(
        "--init-std", type=float, default=1.0, help="initial action noise of the policy (raw action units)"
    )
    p.add_argument(
        "--termination-penalty", type=float, default=0.0, help="reward subtracted on an imagined fall"
    )
    p.add_argument(
        "--fall-tilt-deg", type=float, default=60.0, help="an imagined base tilt beyond this is a fall"
    )
    p.add_argument(
        "--sample-temperature",
        type=float,
        default=0.5,
        help="scale of the model's std when imagined states are drawn (0: its mean, 1: its distribution)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train_mbpo)

    p = sub.add_parser("eval", help="world-model evaluation suite on held-out trajectories (JSON + PNG)")
    p.add_argument("--heldout", required=True)
    p.add_argument("--model", action="append", required=True, help="NAME=checkpoint.pt (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--history", type=int, default=32)
    p.add_argument("--length", type=int, default=400, help="trajectory length used")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_eval_wm)

    p = sub.add_parser("export-wm", help="export one RWM step to ONNX (checked over a 100-step rollout)")
    p.add_argument("checkpoint", help="world-model checkpoint (.pt) of rwm train-wm / wm-table")
    p.add_argument("--out", required=True)
    p.add_argument("--source", default="rwm")
    p.set_defaults(func=_export_wm)

    p = sub.add_parser("average-wm", help="average the weights of checkpoints of one world-model run")
    p.add_argument("checkpoints", nargs="+", help="checkpoints (.pt) of the same run, e.g. its last three")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_average_wm)

    p = sub.add_parser("wm-table", help="train and compare RWM and the baselines (results table + PNG)")
    wm_training_args(p, 1000, 1e-3, 256)
    p.add_argument("--jacobian-weight", type=float, default=1e-3, help="lambda for the +JR variant")
    p.add_argument("--variants", nargs="*", help="subset of the table's rows")
    p.add_argument(
        "--average-last",
        type=int,
        default=1,
        help="score each run with the mean weights of its last K checkpoints",
    )
    p.set_defaults(func=_wm_table)

    p = sub.add_parser("wm-seeds", help="mean and spread over seeds of wm-table results (goals on the means)")
    p.add_argument("tables", nargs="+", help="wm-table output directories, one per seed")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_wm_seeds)

    p = sub.add_parser("wm-sweep", help="history x horizon sweep of RWM: error and training time")
    wm_training_args(p, 300, 1e-3, 256)
    p.add_argument("--histories", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 4, 8])
    p.set_defaults(func=_wm_sweep)

    p = sub.add_parser(
        "imagine-policy", help="a policy vs standing still in a world model's imagination (fit for MBPO?)"
    )
    p.add_argument("policy", help="ONNX policy exported by rwm")
    p.add_argument("--world-model", required=True, help="world-model checkpoint (.pt)")
    p.add_argument("--data", required=True, help="array dataset the imagined robots start from")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature of the states")
    p.add_argument("--robots", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_imagine_policy)

    p = sub.add_parser(
        "fall-tilt", help="base tilt of walking vs before falls (MBPO's imagined fall threshold)"
    )
    p.add_argument("data", help="array dataset from rwm collect --dataset")
    p.add_argument("--thresholds", type=float, nargs="+", default=[15.0, 20.0, 25.0, 30.0, 60.0], help="deg")
    p.set_defaults(func=_fall_tilt)

    p = sub.add_parser("eval-policy", help="evaluate an ONNX policy: 100 episodes of 20 s, fixed seed")
    p.add_argument("policy", help="ONNX policy exported by rwm")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--episode-length", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--robot", default="anymal_d", choices=["anymal_d", "anymal_c"])
    p.add_argument("--json", help="also write the summary here")
    p.set_defaults(func=_eval_policy)

    p = sub.add_parser("load-bag", help="load rosbag2 files on the contract topics and report what was found")
    p.add_argument("bags", nargs="+")
    p.set_defaults(func=_load_bag)
    p = sub.add_parser(
        "bag-recover",
        help="salvage bags whose recorder died (truncated MCAP, uncommitted sqlite3): every complete chunk "
        "into a valid bag with metadata.yaml; the original is kept as <name>.truncated",
    )
    p.add_argument("bags", nargs="+", help="bag directories without metadata.yaml, or bare .mcap/.db3 files")
    p.add_argument("--out", help="where the recovered bag goes (one bag only; default: in its place)")
    p.set_defaults(func=_bag_recover)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
