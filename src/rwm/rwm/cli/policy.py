"""`rwm` commands for policies: PPO and MBPO-PPO training, export, selection, evaluation, imagination,
adaptation from bags and identification of the robot in them."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from rwm.cli.common import device_option, invocation, positive_int


def _train_ppo(args: argparse.Namespace) -> int:
    from rwm.runners.ppo import PPOConfig, TrainConfig, train_ppo
    from rwm.sim.batched_env import EnvConfig, PushConfig
    from rwm.sim.commands import CommandConfig
    from rwm.sim.reward import RewardConfig
    from rwm.sim.variants import TRAINING_RANGES

    env = EnvConfig(
        num_envs=args.num_envs,
        seed=args.seed,
        pushes=PushConfig(enabled=True),
        commands=CommandConfig(resample_time_s=args.resample_time, standing_fraction=args.standing_fraction),
        termination_penalty=args.termination_penalty,
        reward=RewardConfig(stand_still=args.stand_still_weight),
        randomization=TRAINING_RANGES if args.domain_randomization else None,
        randomization_ramp_steps=args.randomization_ramp * PPOConfig.num_steps_per_env,
    )
    ppo = PPOConfig(init_std=args.init_std)
    cfg = TrainConfig(
        env=env,
        ppo=ppo,
        max_iterations=args.iterations,
        seed=args.seed,
        torch_threads=args.threads,
        device=args.device,
    )
    summary = train_ppo(
        cfg,
        args.log_dir,
        resume=args.resume,
        export_path=args.export,
        command=invocation(),
        init_from=args.init_from,
    )
    if summary is not None:  # under torchrun, the first process reports
        print(json.dumps(summary, indent=2))
    return 0


def _export_policy(args: argparse.Namespace) -> int:
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
    """Evaluate checkpoints on a validation seed (and robot variants) and export the best: fewest falls,
    then the best tracking (over the variants: their sum of falls and mean tracking). With
    --max-drift, a checkpoint that does not stand still at zero command ranks after every one that does."""
    import tempfile

    from rwm.evaluation.policy_eval import (
        PolicyEvalConfig,
        evaluate_on_variants,
        evaluate_policy,
        evaluate_standing,
    )
    from rwm.export.policy_onnx import OnnxPolicy, actor_from_checkpoint, export_policy
    from rwm.runners.ppo import transitions_used

    def validate(policy: OnnxPolicy) -> dict:
        if not args.variants:
            result = evaluate_policy(policy, args.obs_dim, cfg)
        else:
            per_variant = evaluate_on_variants(policy, args.obs_dim, args.variants, cfg, nominal_seeds=1)
            tracking = [r["tracking_reward_normalized"] for r in per_variant.values()]
            result = {
                "falls": sum(r["falls"] for r in per_variant.values()),
                "tracking_reward_normalized": round(sum(tracking) / len(tracking), 4),
                "per_variant": {
                    k: (r["falls"], r["tracking_reward_normalized"]) for k, r in per_variant.items()
                },
            }
        if args.max_drift is not None:
            standing = evaluate_standing(
                policy, args.obs_dim, replace(cfg, episodes=20, episode_length_s=60.0)
            )
            result["standing_drift_m_per_min"] = standing["drift_m_median"]
            result["falls"] += standing["falls"]
        return result

    def drifts(result: dict) -> bool:
        drift = result.get("standing_drift_m_per_min")
        return drift is not None and drift > args.max_drift

    log_dir = Path(args.log_dir)
    runner_cfg = json.loads((log_dir / "runner_config.json").read_text())
    train_cfg = json.loads((log_dir / "train_config.json").read_text())
    ckpts = sorted(log_dir.glob("model_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    ckpts = [c for c in ckpts if int(c.stem.split("_")[1]) >= args.first]
    if not ckpts:
        raise SystemExit(f"no checkpoint model_<it>.pt with it >= {args.first} in {log_dir}")
    cfg = PolicyEvalConfig(episodes=args.episodes, seed=args.seed, episode_length_s=args.episode_length)
    num_envs, steps = train_cfg["env"]["num_envs"], train_cfg["ppo"]["num_steps_per_env"]
    processes = train_cfg.get("processes", 1)  # num_envs is each process's under torchrun
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in ckpts:
            it = int(ckpt.stem.split("_")[1])
            meta = {
                "source": "ppo",
                "checkpoint": ckpt.name,
                "iterations": it + 1,
                "seed": train_cfg["seed"],
                "real_transitions": args.prior_transitions
                + transitions_used(it + 1, num_envs, steps, processes),
                "selected_on": {"episodes": args.episodes, "seed": args.seed, "variants": args.variants},
            }
            path = Path(tmp) / f"{ckpt.stem}.onnx"
            export_policy(actor_from_checkpoint(ckpt, runner_cfg, args.obs_dim), path, meta)
            result = validate(OnnxPolicy(path))
            print(json.dumps({"checkpoint": ckpt.name, **result}), flush=True)
            rank = (drifts(result), result["falls"], -result["tracking_reward_normalized"], it)
            results.append((rank, path, result))
        (*_, it), path, result = min(results, key=lambda r: r[0])
        Path(args.out).write_bytes(path.read_bytes())
    print(json.dumps({"selected": f"model_{it}.pt", "out": args.out, "validation": result}, indent=2))
    return 0


def _eval_policy(args: argparse.Namespace) -> int:
    from rwm.evaluation.policy_eval import PolicyEvalConfig, evaluate_policy
    from rwm.export.policy_onnx import OnnxPolicy

    policy = OnnxPolicy(args.policy)
    cfg = PolicyEvalConfig(
        episodes=args.episodes, episode_length_s=args.episode_length, seed=args.seed, robot=args.robot
    )
    if args.json:  # before minutes of evaluation, not after
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    if args.variants:
        return _eval_on_variants(args, policy, cfg)
    if args.standing:
        figures = _eval_standing(args, policy, cfg)
    else:
        figures = evaluate_policy(policy, policy.obs_dim, cfg)
    result = {
        "policy": args.policy,
        **figures,
        "real_transitions_used": policy.metadata.get("real_transitions"),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


def _eval_standing(args: argparse.Namespace, policy, cfg) -> dict:
    """The standing figures, of the bare policy or through the policy node's control loop."""
    from dataclasses import asdict

    from rwm.control.policy_loop import Mode
    from rwm.control.safety import SafetyConfig
    from rwm.control.simulated import SimulatedControlLoops
    from rwm.evaluation.policy_eval import evaluate_standing

    if not args.control_loop:
        return evaluate_standing(policy, policy.obs_dim, cfg, walk_s=args.walk_first)
    loops = SimulatedControlLoops(policy, policy.obs_dim, cfg.episodes, SafetyConfig(), cfg.robot)
    figures = evaluate_standing(policy, policy.obs_dim, cfg, walk_s=args.walk_first, controller=loops)
    return {**figures, "control_loop": asdict(loops.safety), "robots_held_at_end": loops.count_in(Mode.STAND)}


def _eval_on_variants(args: argparse.Namespace, policy, cfg) -> int:
    from rwm.evaluation.policy_eval import evaluate_on_variants, plot_variants, variants_table
    from rwm.sim.variants import load_variants

    all_names = list(load_variants(args.variants_file, beyond_training=False))
    names = all_names if args.variants == ["all"] else args.variants
    new_controller = None
    if args.control_loop:
        from rwm.control.safety import SafetyConfig
        from rwm.control.simulated import SimulatedControlLoops

        def new_controller() -> SimulatedControlLoops:
            return SimulatedControlLoops(policy, policy.obs_dim, cfg.episodes, SafetyConfig(), cfg.robot)

    results = evaluate_on_variants(
        policy,
        policy.obs_dim,
        names,
        cfg,
        nominal_seeds=args.nominal_seeds,
        variants_file=args.variants_file,
        new_controller=new_controller,
    )
    table = variants_table(results)
    print(table)
    if args.json:
        out = Path(args.json)
        summary = {
            "policy": args.policy,
            "real_transitions_used": policy.metadata.get("real_transitions"),
            "control_loop": bool(args.control_loop),
        }
        out.write_text(json.dumps({**summary, "variants": results}, indent=1) + "\n")
        out.with_suffix(".md").write_text(table)
        plot_variants(results, str(out.with_suffix(".png")), Path(args.policy).stem)
    return 0


def _identify_robot(args: argparse.Namespace) -> int:
    import time

    from rwm.cli.common import bag_directories
    from rwm.data.bag_loader import load_bags
    from rwm.robot.mjcf import build_robot
    from rwm.sim.identification import IdentificationConfig, identify_robot

    trajectories, report = load_bags(bag_directories(args.bags))
    if report.problems or report.skipped:
        print(f"bag loading: {report}", file=sys.stderr)
    given = {k: v for k, v in (("windows", args.windows), ("horizon", args.horizon)) if v is not None}
    cfg = IdentificationConfig(seed=args.seed, **given)
    start = time.time()
    found = identify_robot(build_robot(), [(t.state, t.action, t.contacts) for t in trajectories], cfg)
    out = {
        "variant": asdict(found.variant),
        "replay_error": found.error,
        "nominal_replay_error": found.nominal_error,
        "evaluations": found.evaluations,
        "rows": sum(len(t) for t in trajectories),
        "wall_s": round(time.time() - start, 1),
        "curves": found.curves,
        "config": asdict(cfg),
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


def _adapt_policy(args: argparse.Namespace) -> int:
    from rwm.cli.common import bag_directories
    from rwm.runners.adaptation import AdaptConfig, adapt_policy
    from rwm.sim.variants import variant_named

    bags = bag_directories(args.bags)
    cfg = AdaptConfig(
        critic_warmup=args.critic_warmup,
        iterations=args.iterations,
        uncertainty_penalty=args.uncertainty_penalty,
        init_std=args.init_std,
        learning_rate=args.lr,
        freeze_normalization=not args.refit_normalization,
        imagination=replace(
            AdaptConfig().imagination,
            episode_steps=args.rollout_steps or AdaptConfig().imagination.episode_steps,
            member_per_robot=args.member_per_robot,
            **_fall_starts(args),
        ),
        seed=args.seed,
        validation_episodes=args.episodes,
        threads=args.threads,
        device=args.device,
        dynamics=args.dynamics,
        identified_fraction=args.identified_fraction,
    )
    if args.dynamics == "imagination" and not args.world_model:
        raise SystemExit("adapt-policy: --world-model is required for --dynamics imagination")
    if args.dynamics == "identified" and (args.world_model or args.pretrain):
        print("adapt-policy: --world-model and --pretrain serve imagination only; ignored", file=sys.stderr)
    check = (args.check_variant, variant_named(args.check_variant)) if args.check_variant else None
    result = adapt_policy(args.policy, args.world_model, bags, args.versions_dir, cfg, args.pretrain, check)
    text = json.dumps({**asdict(result), "config": asdict(cfg)}, indent=1, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if result.accepted else 1


def _train_mbpo(args: argparse.Namespace) -> int:
    from rwm.rl.imagination_env import ImaginationConfig
    from rwm.robot.frames import gravity_z_at_tilt
    from rwm.runners.mbpo import MBPOConfig, train_mbpo
    from rwm.runners.ppo import PPOConfig
    from rwm.sim.variants import TRAINING_RANGES

    cfg = MBPOConfig(
        iterations=args.iterations,
        real_envs=args.real_envs,
        real_steps=args.real_steps,
        real_ppo_envs=args.real_ppo_envs,
        real_command_resample_s=args.real_resample_time,
        domain_randomization=args.domain_randomization,
        wm_iterations=args.wm_iterations,
        ppo_iterations=args.ppo_iterations,
        imagination=ImaginationConfig(
            num_envs=args.imagined_envs,
            episode_steps=args.rollout_steps,
            termination_penalty=args.termination_penalty,
            sample_temperature=args.sample_temperature,
            command_resample_steps=args.command_resample_steps,
            max_tilt_gravity_z=gravity_z_at_tilt(args.fall_tilt_deg),
            obs_noise=TRAINING_RANGES.obs_noise if args.domain_randomization else 0.0,
            uncertainty_penalty=args.uncertainty_penalty,
            start_max_tilt_deg=args.start_max_tilt_deg,
            **_fall_starts(args),
            knee_contact_terminates=args.fall_on_knee_contact,
            seed=args.seed,
        ),
        ppo=PPOConfig(init_std=args.init_std),
        critic_warmup=args.critic_warmup,
        real_gate_z=args.real_gate_z,
        real_gate_tracking_drop=args.real_gate_tracking_drop,
        real_gate_robots=args.real_gate_robots,
        real_gate_steps=args.real_gate_steps,
        eval_variants=tuple(args.eval_variant),
        seed=args.seed,
        device=args.device,
    )
    summary = train_mbpo(
        cfg,
        args.world_model,
        args.pretrain,
        args.out,
        args.export,
        command=invocation(),
        init_from=args.init_from,
        resume=args.resume,
    )
    if summary is not None:  # under torchrun, the first process reports
        print(json.dumps(summary, indent=2))
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
        num_envs=args.robots,
        online_fraction=0.0,
        sample_temperature=args.temperature,
        start_max_tilt_deg=args.start_max_tilt_deg,
        **_fall_starts(args),
        knee_contact_terminates=args.fall_on_knee_contact,
        seed=args.seed,
    )
    results = compare_with_standing(
        model,
        lambda: ReplayBuffer(data, seed=args.seed, with_robot_params=model.robot_param_dim > 0),
        OnnxPolicy(args.policy),
        cfg,
        args.steps,
    )
    print(json.dumps({"temperature": args.temperature, "steps": args.steps, **results}, indent=2))
    return 0


def _fall_tilt(args: argparse.Namespace) -> int:
    from rwm.data.array_dataset import ArrayDataset
    from rwm.evaluation.fall_tilt import fall_tilt_statistics

    print(json.dumps(fall_tilt_statistics(ArrayDataset(args.data), args.thresholds), indent=1))
    return 0


def _fall_start_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fall-start-fraction",
        type=float,
        default=0.0,
        help="share of imagined robots started from a real history after which that robot fell (tilted "
        "past the fall tilt within --fall-start-lookahead steps; none found: started as any other)",
    )
    p.add_argument(
        "--fall-start-lookahead",
        type=positive_int,
        help="steps after a history within which its robot must have fallen (default: ImaginationConfig's)",
    )


def _fall_starts(args: argparse.Namespace) -> dict:
    """`ImaginationConfig` fields of `_fall_start_options`."""
    given = {"fall_start_lookahead": args.fall_start_lookahead} if args.fall_start_lookahead else {}
    return {"fall_start_fraction": args.fall_start_fraction, **given}


def _imagined_start_and_fall_options(p: argparse.ArgumentParser) -> None:
    """Where imagined robots start and what ends their episodes (`ImaginationConfig`)."""
    p.add_argument(
        "--start-max-tilt-deg",
        type=float,
        default=0.0,
        help="start imagined robots only from histories within this tilt throughout (0: any)",
    )
    _fall_start_options(p)
    p.add_argument(
        "--fall-on-knee-contact",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a knee contact the model is sure of ends an imagined episode as a fall (off where the "
        "robots' data has knee contacts in walking: `rwm fall-tilt DATA`)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands."""
    p = sub.add_parser("train-ppo", help="model-free PPO (rsl-rl) on the batched simulation")
    p.add_argument("--log-dir", default="runs/ppo", help="checkpoints, TensorBoard logs, configs")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--num-envs", type=int, default=256, help="simulated robots (per process under torchrun)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (per process under torchrun)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --log-dir")
    p.add_argument(
        "--init-from", help="start this stage from an earlier stage's checkpoint, or an ONNX policy's actor"
    )
    p.add_argument("--init-std", type=float, default=1.0, help="exploration std the actor starts with")
    p.add_argument(
        "--randomization-ramp",
        type=int,
        default=0,
        help="--domain-randomization: iterations over which the ranges widen from the nominal robot",
    )
    p.add_argument("--resample-time", type=float, default=10.0, help="new command every this many s")
    device_option(
        p,
        "where the networks learn (simulation: CPU); `torchrun --nproc_per_node W -m rwm.cli train-ppo ...` "
        "trains data-parallel over W processes (gloo on the CPU, nccl on GPUs)",
    )
    p.add_argument(
        "--standing-fraction",
        type=float,
        default=0.0,
        help="share of commands that are zero (Isaac Lab's standing robots), so the policy learns to stand",
    )
    p.add_argument(
        "--stand-still-weight",
        type=float,
        default=0.0,
        help="reward weight of the joints' distance from the standing pose at zero command (< 0; paper: 0)",
    )
    p.add_argument("--termination-penalty", type=float, default=0.0, help="reward subtracted on a fall")
    p.add_argument("--export", help="write the final policy to this ONNX file")
    p.add_argument(
        "--domain-randomization",
        action="store_true",
        help="a new robot every episode (payload, friction, motors, joint friction, delay) and sensor noise: "
        "rwm.sim.variants.TRAINING_RANGES",
    )
    p.set_defaults(func=_train_ppo)

    p = sub.add_parser("export-policy", help="export a PPO checkpoint to ONNX (normalization inside)")
    p.add_argument(
        "checkpoint", help="model_<it>.pt or train-mbpo's policy_<it>.pt, with runner_config.json beside it"
    )
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
    p.add_argument(
        "--prior-transitions",
        type=int,
        default=0,
        help="real transitions behind the policy this stage started from (counted in the metadata)",
    )
    p.add_argument("--episode-length", type=float, default=20.0)
    p.add_argument("--obs-dim", type=int, default=48)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--variants", nargs="+", help="validate on these robot variants too (never the evaluation's seeds)"
    )
    p.add_argument(
        "--max-drift",
        type=float,
        help="m per minute: a checkpoint whose base drifts further at zero command (median of 20 robots, "
        "60 s) ranks after all that do not",
    )
    p.set_defaults(func=_select_policy)

    p = sub.add_parser("eval-policy", help="evaluate an ONNX policy: 100 episodes of 20 s, fixed seed")
    p.add_argument("policy", help="ONNX policy exported by rwm")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--episode-length", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--robot", default="anymal_d", choices=["anymal_d", "anymal_c"])
    p.add_argument("--json", help="also write the summary here")
    p.add_argument(
        "--variants",
        nargs="+",
        help="the robot-variant suite: 'all' or names from config/robot_variants.yaml (table, and with "
        "--json also <json>.md and <json>.png)",
    )
    p.add_argument("--nominal-seeds", type=int, default=5, help="--variants: seeds of the nominal robot")
    p.add_argument(
        "--standing",
        action="store_true",
        help="zero command throughout: how far each base drifts over --episode-length (issue 19's figure)",
    )
    p.add_argument(
        "--walk-first",
        type=float,
        default=0.0,
        help="--standing: first walk this long under a training command, then stand (s, of --episode-length)",
    )
    p.add_argument(
        "--control-loop",
        action="store_true",
        help="--standing or --variants: through the policy node's control loop (soft start, command ramp, "
        "stand hold) with its default settings, not the bare policy",
    )
    p.add_argument("--variants-file", help="named variants (default: config/robot_variants.yaml)")
    p.set_defaults(func=_eval_policy)

    p = sub.add_parser(
        "identify-robot",
        help="which simulated robot the bags came from: replay their joint targets from their states "
        "(rwm.sim.identification)",
    )
    p.add_argument("--bags", nargs="+", required=True, help="bag directories, or directories holding bags")
    p.add_argument("--windows", type=positive_int, help="logged states replayed from (default 192)")
    p.add_argument("--horizon", type=positive_int, help="policy steps per replay (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the result here")
    p.set_defaults(func=_identify_robot)

    p = sub.add_parser(
        "adapt-policy",
        help="fine-tune the deployed policy from bags (MOPO-PPO in an ensemble's imagination, or PPO in the "
        "simulator of the robot identified in them), validate in simulation, write "
        "policy_versions/policy_v<N>.onnx",
    )
    p.add_argument("--policy", default="models/anymal_d_ppo.onnx", help="the deployed ONNX policy")
    p.add_argument(
        "--dynamics",
        choices=("imagination", "identified"),
        default="imagination",
        help="imagination: MOPO-PPO in --world-model; identified: PPO in the simulator of the robot the bags "
        "identify, mixed with the training family",
    )
    p.add_argument(
        "--identified-fraction",
        type=float,
        default=0.25,
        help="identified: share of the simulated robots that are the identified robot",
    )
    p.add_argument(
        "--world-model", help="world-model checkpoint (.pt), an ensemble refined on the bags (imagination)"
    )
    p.add_argument("--bags", nargs="+", required=True, help="bag directories, or directories holding bags")
    p.add_argument("--pretrain", help="array dataset mixed into the starting histories (20 %%)")
    p.add_argument("--versions-dir", default="policy_versions")
    p.add_argument(
        "--critic-warmup", type=int, default=20, help="PPO iterations training only the critic first"
    )
    p.add_argument("--iterations", type=int, default=60, help="PPO iterations of the actor after them")
    p.add_argument("--uncertainty-penalty", type=float, default=1.0, help="MOPO's lambda")
    p.add_argument("--init-std", type=float, default=0.3, help="exploration std of the deployed actor")
    p.add_argument("--lr", type=float, default=3e-4, help="PPO's initial learning rate")
    p.add_argument(
        "--rollout-steps", type=positive_int, help="imagined episode length (default: AdaptConfig's, 100)"
    )
    p.add_argument(
        "--member-per-robot",
        action="store_true",
        help="each imagined robot steps on one ensemble member drawn at its reset (default: their mean)",
    )
    _fall_start_options(p)
    p.add_argument(
        "--refit-normalization",
        action="store_true",
        help="let the actor's observation normalization refit on the imagined data (default: frozen)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--episodes", type=int, default=50, help="simulated validation episodes per robot")
    p.add_argument("--check-variant", help="also report both policies on this simulated robot variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the result here")
    device_option(p, "where imagination and PPO run (validation: CPU)")
    p.set_defaults(func=_adapt_policy)

    p = sub.add_parser("train-mbpo", help="MBPO-PPO: PPO in RWM imagination, real data collected online")
    p.add_argument("--world-model", required=True, help="pretrained world-model checkpoint (.pt)")
    p.add_argument("--pretrain", help="the array dataset it was pretrained on (replay buffer start)")
    p.add_argument("--out", default="runs/mbpo")
    p.add_argument("--export", help="write the final policy to this ONNX file")
    p.add_argument(
        "--iterations", type=int, default=40, help="iterations in all (a resumed loop runs up to it)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last finished iteration in --out (loop_state.pt)",
    )
    p.add_argument(
        "--eval-variant",
        action="append",
        default=[],
        metavar="NAME",
        help="judge each iteration's policy on this robot variant too (repeatable)",
    )
    p.add_argument("--real-envs", type=int, default=32, help="robots collecting real data per iteration")
    p.add_argument("--real-steps", type=int, default=100, help="steps each collects per iteration")
    p.add_argument(
        "--real-ppo-envs",
        type=int,
        default=0,
        help="real robots inside every PPO rollout beside the imagined ones (MBPO's real ratio); their "
        "transitions feed the model in place of --real-envs x --real-steps",
    )
    p.add_argument(
        "--real-resample-time",
        type=float,
        default=10.0,
        help="the collecting robots' new command every this many s",
    )
    p.add_argument(
        "--domain-randomization",
        action="store_true",
        help="collect from a new randomized robot every episode; sensor noise on imagined observations",
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
    p.add_argument(
        "--init-from",
        help="start the actor from this exported policy (its real transitions are counted), not from scratch",
    )
    p.add_argument(
        "--critic-warmup",
        type=int,
        default=20,
        help="--init-from: PPO iterations training only the critic first",
    )
    p.add_argument(
        "--uncertainty-penalty",
        type=float,
        default=0.0,
        help="MOPO-PPO (RWM-U): imagined reward minus this times the ensemble's disagreement (0: MBPO-PPO)",
    )
    p.add_argument(
        "--real-gate-z",
        type=float,
        default=0.0,
        help="keep a PPO update only if, on the gate's real robots, it falls no more than the best kept "
        "policy within this many Poisson std and tracks within --real-gate-tracking-drop of it; --export "
        "writes the kept policy that fell least there (0: keep all)",
    )
    p.add_argument(
        "--real-gate-robots", type=int, default=32, help="the gate's robots (the same for every policy)"
    )
    p.add_argument(
        "--real-gate-steps", type=int, default=300, help="steps each gate robot runs from its reset"
    )
    p.add_argument(
        "--real-gate-tracking-drop",
        type=float,
        default=0.02,
        help="with --real-gate-z: the most an update's tracking may fall below the best kept tracking",
    )
    _imagined_start_and_fall_options(p)
    p.add_argument("--seed", type=int, default=0)
    device_option(
        p,
        "where the world model, imagination and PPO run (the collecting robots: CPU); `torchrun "
        "--nproc_per_node W -m rwm.cli train-mbpo ...` runs the loop data-parallel over W processes, each "
        "with --real-envs robots and --imagined-envs imagined ones of its own (not with --real-gate-z)",
    )
    p.set_defaults(func=_train_mbpo)

    p = sub.add_parser(
        "imagine-policy", help="a policy vs standing still in a world model's imagination (fit for MBPO?)"
    )
    p.add_argument("policy", help="ONNX policy exported by rwm")
    p.add_argument("--world-model", required=True, help="world-model checkpoint (.pt)")
    p.add_argument("--data", required=True, help="array dataset the imagined robots start from")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature of the states")
    _imagined_start_and_fall_options(p)
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
