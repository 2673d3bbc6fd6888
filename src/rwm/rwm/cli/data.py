"""`rwm` commands for data: simulated collection into bags and datasets, loading and recovering bags."""

from __future__ import annotations

import argparse
import json


def _collect(args: argparse.Namespace) -> int:
    from rwm.data.collect import collect_bag, collect_dataset
    from rwm.sim.commands import CommandConfig
    from rwm.sim.variants import TRAINING_RANGES, variant_named

    controller = args.controller
    if args.policy:
        from rwm.export.runtime import OnnxPolicy
        from rwm.rl.policy_controller import BatchPolicyController, PolicyController

        policy = OnnxPolicy(args.policy)
        if args.dataset:
            controller = BatchPolicyController(policy, args.action_noise, seed=args.seed)
        else:
            controller = PolicyController(policy, policy.obs_dim, args.action_noise)
    if args.dataset:
        if args.variant and args.domain_randomization:
            raise SystemExit(
                "rwm collect: --variant (one robot) and --domain-randomization (a family) exclude each other"
            )
        summary = collect_dataset(
            args.out,
            steps=args.steps,
            num_envs=args.num_envs,
            controller=controller,
            seed=args.seed,
            pushes=not args.no_pushes,
            robot=args.robot,
            episode_length_s=args.episode_length,
            num_threads=args.threads,
            randomization=TRAINING_RANGES if args.domain_randomization else None,
            variant=variant_named(args.variant) if args.variant else None,
            commands=CommandConfig(
                resample_time_s=args.resample_time, standing_fraction=args.standing_fraction
            ),
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
            variant=variant_named(args.variant or "nominal"),
        )
    summary["controller"] = args.policy or args.controller
    summary["action_noise"] = args.action_noise if args.policy else None
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _load_bag(args: argparse.Namespace) -> int:
    from rwm.data.bag_loader import load_bags

    trajectories, report = load_bags(args.bags)
    print(report)
    print(f"{len(trajectories)} trajectories, {sum(len(t) for t in trajectories)} rows at 50 Hz")
    return 0 if trajectories else 1


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


def _render(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rwm.data.motion import motion_from_bag, motion_from_dataset
    from rwm.evaluation.render import RenderConfig, render_video

    source = Path(args.source)
    if (source / "meta.json").is_file():
        motion = motion_from_dataset(source, args.fps, args.trajectory)
    else:
        motion = motion_from_bag(source, args.fps)
    cfg = RenderConfig(width=args.width, height=args.height, fps=args.fps)
    print(json.dumps(render_video(motion, args.out, args.robot, cfg)))
    return 0


def _merge_datasets(args: argparse.Namespace) -> int:
    from rwm.data.array_dataset import merge_datasets

    print(json.dumps(merge_datasets(args.datasets, args.out)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands."""
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
        "--variant",
        help="simulated robot (config/robot_variants.yaml), nominal if not given; "
        "a dataset of a named one stores its parameters",
    )
    p.add_argument(
        "--dataset", action="store_true", help="write the compact array dataset from the batched env"
    )
    p.add_argument("--steps", type=int, default=10_000, help="dataset: environment steps (50 Hz)")
    p.add_argument("--num-envs", type=int, default=64, help="dataset: parallel robots")
    p.add_argument(
        "--domain-randomization",
        action="store_true",
        help="dataset: a new robot at every reset from rwm.sim.variants.TRAINING_RANGES (a family)",
    )
    p.add_argument("--no-pushes", action="store_true", help="dataset: disable random pushes")
    p.add_argument("--threads", type=int, default=0, help="dataset: physics threads (0: one per core)")
    p.add_argument("--episode-length", type=float, default=20.0, help="dataset: episode length, s")
    p.add_argument(
        "--resample-time", type=float, default=10.0, help="dataset: a new command every this many s"
    )
    p.add_argument(
        "--standing-fraction", type=float, default=0.0, help="dataset: share of commands that are zero"
    )
    p.set_defaults(func=_collect)

    p = sub.add_parser(
        "merge-datasets", help="one array dataset of several (e.g. shards collected by parallel processes)"
    )
    p.add_argument("datasets", nargs="+", help="array datasets, merged in this order")
    p.add_argument("--out", required=True, help="output dataset directory (must not exist)")
    p.set_defaults(func=_merge_datasets)

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

    p = sub.add_parser(
        "render",
        help="render a bag (or an array dataset's trajectory) to MP4: the robot replayed in MuJoCo, "
        "camera following, commanded and measured velocity overlaid",
    )
    p.add_argument("source", help="bag directory on the contract topics, or array dataset directory")
    p.add_argument("--out", required=True, help="MP4 file")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--robot", default="anymal_d", choices=["anymal_d", "anymal_c"])
    p.add_argument("--trajectory", type=int, default=0, help="dataset: which trajectory")
    p.set_defaults(func=_render)
