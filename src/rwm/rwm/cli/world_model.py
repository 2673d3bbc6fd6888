"""`rwm` commands for world models: training, evaluation, export, averaging, the table and sweeps."""

from __future__ import annotations

import argparse
import json
import sys

from rwm.cli.common import device_option


def _wm_config(args: argparse.Namespace, arch: str = "rwm", jacobian_weight: float = 0.0):
    from rwm.runners.world_model import WorldModelTrainConfig
    from rwm.training.latent_regularization import LatentNoise

    return WorldModelTrainConfig(
        arch=arch,
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
        device=args.device,
        latent_noise=LatentNoise(sigma=args.latent_sigma, mu=args.latent_mu),
        jacobian_weight=jacobian_weight,
        history_grad_steps=args.history_grad_steps,
        precision=args.precision,
        compile=args.compile,
    )


def _train_wm(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rwm.data.array_dataset import ArrayDataset
    from rwm.models.factory import load_checkpoint, with_ensemble
    from rwm.runners.world_model import train_world_model
    from rwm.sim.variants import ROBOT_PARAM_DIM

    cfg, init = _wm_config(args, args.arch, args.jacobian_weight), None
    if args.ensemble_size > 1:
        cfg = replace(cfg, model={**cfg.model, "ensemble_size": args.ensemble_size})
    if args.robot_params:
        if args.arch != "rwm" or args.init:
            raise SystemExit("--robot-params builds a fresh RWM (--arch rwm, no --init)")
        cfg = replace(cfg, model={**cfg.model, "robot_param_dim": ROBOT_PARAM_DIM})
    if args.init:  # the checkpoint's architecture and normalization, fresh optimizer state
        init, extra = load_checkpoint(args.init)
        trained = extra.get("train_config", {})
        model = {**trained.get("model", cfg.model)}
        if args.ensemble_size > 1:
            init = with_ensemble(init, args.ensemble_size)
            model["ensemble_size"] = args.ensemble_size
        cfg = replace(cfg, arch=trained.get("arch", cfg.arch), model=model)
    heldout = ArrayDataset(args.heldout) if args.heldout else None
    summary = train_world_model(cfg, ArrayDataset(args.data), heldout, args.out, init_model=init)
    if summary is not None:  # the first of data-parallel processes reports
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
    from rwm.data.array_dataset import ArrayDataset
    from rwm.evaluation.heldout import heldout_tensors
    from rwm.export.runtime import OnnxWorldModel
    from rwm.export.world_model_onnx import export_world_model
    from rwm.models.factory import load_checkpoint

    model, extra = load_checkpoint(args.checkpoint)
    meta = {"source": args.source, "checkpoint": str(args.checkpoint), "iteration": extra.get("iteration")}
    validation = heldout_tensors(ArrayDataset(args.heldout), args.length)
    err = export_world_model(model, args.out, {**meta, "validation": str(args.heldout)}, [validation])
    anomaly = OnnxWorldModel(args.out).metadata["anomaly"]
    print(json.dumps({"onnx": args.out, "rollout_parity_max_abs_err": err, "anomaly": anomaly}))
    return 0


def _eval_monitor(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from rwm.evaluation.monitor_eval import MonitorEvalConfig, evaluate_monitor, monitor_table
    from rwm.export.runtime import OnnxPolicy, OnnxWorldModel
    from rwm.sim.variants import load_variants

    if args.bags:
        return _eval_monitor_on_bags(args)
    policy, world_model = OnnxPolicy(args.policy), OnnxWorldModel(args.world_model)
    all_names = list(load_variants(args.variants_file, beyond_training=False))
    names = all_names if args.variants == ["all"] else args.variants
    cfg = MonitorEvalConfig(
        robots=args.robots,
        duration_s=args.duration,
        seed=args.seed,
        warmup_steps=args.warmup_steps,
        stand_first_s=args.stand_first,
    )
    if args.standing_fraction is not None:
        cfg = replace(cfg, standing_fraction=args.standing_fraction)
    new_controller = None
    if args.control_loop:
        from rwm.control.safety import SafetyConfig
        from rwm.control.simulated import SimulatedControlLoops

        def new_controller() -> SimulatedControlLoops:
            return SimulatedControlLoops(policy, policy.obs_dim, cfg.robots, SafetyConfig())

    results = evaluate_monitor(
        policy, policy.obs_dim, world_model, names, cfg, args.within, args.variants_file, new_controller
    )
    results = {"world_model": args.world_model, "policy": args.policy, **results}
    table = monitor_table(results)
    print(table)
    if args.json:
        out = Path(args.json)
        out.write_text(json.dumps(results, indent=1) + "\n")
        out.with_suffix(".md").write_text(table)
    return 0


def _eval_monitor_on_bags(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rwm.cli.common import bag_directories
    from rwm.data.bag_loader import load_bags, load_float_topic
    from rwm.evaluation.monitor_eval import monitor_on_bags
    from rwm.export.anomaly import ERROR_TOPIC
    from rwm.export.runtime import OnnxWorldModel

    bags = bag_directories(args.bags)
    trajectories, report = load_bags(bags)
    if not trajectories:
        print(f"no trajectories in {args.bags}:\n{report}", file=sys.stderr)
        return 1
    live = load_float_topic(bags, ERROR_TOPIC)
    results = monitor_on_bags(OnnxWorldModel(args.world_model), trajectories, args.warmup_steps, live)
    results = {"world_model": args.world_model, "bags": [str(b) for b in bags], **results}
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


def _refine_wm(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rwm.cli.common import bag_directories
    from rwm.runners.refinement import RefineConfig, refine_from_bags

    bags = bag_directories(args.bags)
    cfg = RefineConfig(
        iterations=args.iterations,
        validate_every=args.validate_every,
        learning_rate=args.lr,
        pretrain_fraction=args.pretrain_fraction,
        tolerance=args.tolerance,
        seed=args.seed,
        threads=args.threads,
    )
    result = refine_from_bags(args.checkpoint, bags, args.heldout, args.model_dir, cfg, args.pretrain)
    print(json.dumps(asdict(result), indent=1, default=str))
    return 0 if result.accepted else 1


def _average_wm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rwm.models.factory import average_checkpoints, save_checkpoint

    model, extra = average_checkpoints(args.checkpoints)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, args.out, **extra)
    print(json.dumps({"checkpoint": args.out, "averaged_from": extra["averaged_from"]}))
    return 0


def _ensemble_wm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rwm.models.factory import ensemble_checkpoints, save_checkpoint

    try:
        model, extra = ensemble_checkpoints(args.members)
    except ValueError as err:
        raise SystemExit(f"rwm ensemble-wm: {err}") from None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, args.out, **extra)
    print(json.dumps({"checkpoint": args.out, "members_from": extra["members_from"]}))
    return 0


def _wm_table(args: argparse.Namespace) -> int:
    if args.compile:
        raise SystemExit("rwm wm-table trains many models in one process: --compile is for rwm train-wm")
    from rwm.experiments.world_model_table import markdown_table, run_table

    results = run_table(
        args.data,
        args.heldout,
        args.out,
        _wm_config(args, jacobian_weight=args.jacobian_weight),
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
    if args.compile:
        raise SystemExit("rwm wm-sweep trains many models in one process: --compile is for rwm train-wm")
    from rwm.experiments.horizon_sweep import run_sweep

    sweep = run_sweep(args.data, args.heldout, args.out, _wm_config(args), args.histories, args.horizons)
    print(json.dumps(sweep["cells"], indent=1))
    return 0


def _training_options(
    p: argparse.ArgumentParser, iterations: int, lr: float, batch: int, heldout_required: bool
) -> None:
    """The options every world-model training command has (the loss, optimizer and run budget)."""
    p.add_argument("--data", required=True, help="array dataset (rwm collect --dataset)")
    p.add_argument("--heldout", required=heldout_required, help="held-out array dataset")
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
    p.add_argument("--threads", type=int, default=2, help="torch threads (per process under torchrun)")
    device_option(
        p,
        "where to train; `torchrun --nproc_per_node W -m rwm.cli ...` trains data-parallel over W "
        "processes (gloo on the CPU, nccl on GPUs), --batch-size being the global batch",
    )
    p.add_argument(
        "--history-grad-steps",
        type=int,
        default=0,
        help="backpropagate through only the last this many history steps (0: all M, the paper)",
    )
    p.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bfloat16"],  # rwm.training.learner.PRECISIONS: no torch at parse time
        help="bfloat16: the loss's matrix products in bfloat16 under autocast (weights and optimizer "
        "float32); about 2x faster on a CPU with AMX (docs/world_model/precision.md)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the loss (torch.compile; about 2 min at the first update; no Jacobian penalty)",
    )
    p.add_argument("--latent-sigma", type=float, default=0.0, help="latent noise std during training")
    p.add_argument("--latent-mu", type=float, default=0.0, help="latent noise drift during training")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands."""
    p = sub.add_parser("train-wm", help="train a world model on an array dataset")
    _training_options(p, 2000, 1e-4, 1024, heldout_required=False)
    p.add_argument("--arch", default="rwm", choices=["rwm", "mlp", "rssm", "transformer"])
    p.add_argument("--jacobian-weight", type=float, default=0.0, help="lambda of the Jacobian penalty")
    p.add_argument("--init", help="continue training this checkpoint (its architecture replaces --arch)")
    p.add_argument(
        "--ensemble-size",
        type=int,
        default=1,
        help="RWM-U: state-head members on the shared GRU (with --init, a trained RWM grows new members)",
    )
    p.add_argument(
        "--robot-params",
        action="store_true",
        help="give the model each simulated robot's parameters with every input (a randomized family's "
        "dataset, `collect --domain-randomization`); such a model steps only robots whose parameters "
        "are known, so it serves imagination, not the robot's monitor",
    )
    p.set_defaults(func=_train_wm)

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
    p.add_argument(
        "--heldout",
        default="models/anymal_d_heldout",
        help="validation trajectories (array dataset) the monitor's anomaly threshold is calibrated on",
    )
    p.add_argument("--length", type=int, default=400, help="steps of each validation trajectory used")
    p.set_defaults(func=_export_wm)

    p = sub.add_parser(
        "eval-monitor",
        help="the health monitor in simulation: silent on the nominal robot, how fast it flags the variants",
    )
    p.add_argument("world_model", help="exported world model (ONNX, with its calibrated anomaly rule)")
    p.add_argument("--policy", default="models/anymal_d_ppo.onnx", help="the policy walking the robots")
    p.add_argument("--variants", nargs="+", default=["all"], help="'all' or names of robot variants")
    p.add_argument("--variants-file", help="named variants (default: config/robot_variants.yaml)")
    p.add_argument("--robots", type=int, default=20, help="robots per variant")
    p.add_argument("--duration", type=float, default=30.0, help="seconds each robot walks")
    p.add_argument("--within", type=float, default=2.0, help="count alarms raised within this time (s)")
    p.add_argument(
        "--standing-fraction",
        type=float,
        help="share of the commands (one every 4 s) that are zero (default: MonitorEvalConfig's)",
    )
    p.add_argument(
        "--stand-first",
        type=float,
        default=0.0,
        help="seconds every robot stands before its first command (the main job's command sequence: 3)",
    )
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--json", help="write the results here (and the table beside it, .md)")
    p.add_argument(
        "--bags",
        nargs="+",
        help="instead of simulating: score these recorded bags (or directories of bags) as the node would",
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=0,
        help="steps not judged after a start (0: the model's rule's; the stack's node uses "
        "config/world_model.yaml's)",
    )
    p.add_argument(
        "--control-loop",
        action="store_true",
        help="drive the robots through the policy node's control loop (soft start, command ramp, stand "
        "hold) with its default settings, as the stack does, not the bare policy",
    )
    p.set_defaults(func=_eval_monitor)

    p = sub.add_parser(
        "refine-wm",
        help="refine a world model on bags (mixed with pretraining data), validate, write a version "
        "(what the trainer node does)",
    )
    p.add_argument("checkpoint", help="world-model checkpoint (.pt) to refine")
    p.add_argument("--bags", nargs="+", required=True, help="bag directories, or directories holding bags")
    p.add_argument(
        "--heldout", default="models/anymal_d_heldout", help="held-out set it must not get worse on"
    )
    p.add_argument("--pretrain", help="pretraining array dataset mixed into every batch")
    p.add_argument("--model-dir", default="model_versions", help="where versions rwm_v<N> go")
    p.add_argument(
        "--tolerance", type=float, default=0.0, help="accepted relative increase of the held-out set's error"
    )
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument(
        "--validate-every", type=int, default=25, help="score both held-out sets every N iterations"
    )
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--pretrain-fraction", type=float, default=0.5, help="share of each batch from --pretrain")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_refine_wm)

    p = sub.add_parser("average-wm", help="average the weights of checkpoints of one world-model run")
    p.add_argument("checkpoints", nargs="+", help="checkpoints (.pt) of the same run, e.g. its last three")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_average_wm)

    p = sub.add_parser(
        "ensemble-wm",
        help="one ensemble of RWMs trained apart (own GRU, own seed; the same data), for imagination "
        "and the monitor",
    )
    p.add_argument("members", nargs="+", help="checkpoints of single-head RWMs (rwm train-wm --seed S)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_ensemble_wm)

    p = sub.add_parser("wm-table", help="train and compare RWM and the baselines (results table + PNG)")
    _training_options(p, 1000, 1e-3, 256, heldout_required=True)
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
    _training_options(p, 300, 1e-3, 256, heldout_required=True)
    p.add_argument("--histories", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 4, 8])
    p.set_defaults(func=_wm_sweep)
