"""Does a world model's imagination show the falls the real robots have? For each policy and named
robot variant: the policy walks 64 simulated robots of that variant for 10 s episodes and its falls are
counted; then 256 imagined robots start from those robots' own upright histories and the same policy
walks them for 100 steps, the MBPO-PPO loop's rollouts (the loop's fall rule: a tilt beyond
`--fall-tilt-deg`, knee contacts not counted; stricter than the simulator's 60 degrees, but on these
robots a walking base stays under 10 degrees and most falls pass 20 degrees the step before:
`rwm fall-tilt DATA`). Both are given per 1 000 robot-steps. Imagination can only teach a policy to
avoid the falls it shows, and only prefer what it rewards: a model fit for MBPO-PPO on a family shows
more imagined falls, and less reward, where a policy really falls more.

    python tools/imagined_falls.py runs/wm_family_params/model.pt \\
        --policies models/anymal_d_mbpo.onnx models/anymal_d_ppo.onnx --variants nominal payload_15kg
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm")]

import torch  # noqa: E402

from rwm.data.array_dataset import ArrayDataset  # noqa: E402
from rwm.data.collect import collect_dataset  # noqa: E402
from rwm.evaluation.imagined_policy import imagined_rollout  # noqa: E402
from rwm.export.runtime import OnnxPolicy  # noqa: E402
from rwm.models.factory import load_checkpoint  # noqa: E402
from rwm.rl.imagination_env import ImaginationConfig  # noqa: E402
from rwm.rl.policy_controller import BatchPolicyController  # noqa: E402
from rwm.robot.frames import gravity_z_at_tilt  # noqa: E402
from rwm.sim.commands import CommandConfig  # noqa: E402
from rwm.sim.variants import variants_named  # noqa: E402
from rwm.storage.replay_buffer import ReplayBuffer  # noqa: E402

REAL_ROBOTS, REAL_STEPS, EPISODE_S = 64, 500, 10.0
IMAGINED_ROBOTS, IMAGINED_STEPS = 256, 100


def per_thousand(falls: int, steps: int) -> float:
    return round(1000.0 * falls / steps, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("world_model", help="world-model checkpoint (.pt)")
    p.add_argument("--policies", nargs="+", required=True, help="ONNX policies")
    p.add_argument("--variants", nargs="+", default=["nominal", "payload_15kg", "motors_75", "friction_0.4"])
    p.add_argument("--temperature", type=float, default=0.5, help="imagination's sampling temperature")
    p.add_argument("--fall-tilt-deg", type=float, default=20.0, help="imagined fall: tilt beyond this")
    p.add_argument("--fall-on-knee-contact", action="store_true", help="imagined fall: a sure knee contact")
    p.add_argument("--seed", type=int, default=77)
    p.add_argument("--out", help="also write the figures to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(2)
    model = load_checkpoint(args.world_model)[0]
    variants = variants_named(args.variants)
    rows = []
    for policy_path in args.policies:
        policy = OnnxPolicy(policy_path)
        for name, variant in variants.items():
            with tempfile.TemporaryDirectory() as tmp:
                real = collect_dataset(
                    Path(tmp) / "real",
                    steps=REAL_STEPS,
                    num_envs=REAL_ROBOTS,
                    controller=BatchPolicyController(policy, 0.0, seed=args.seed),
                    seed=args.seed,
                    episode_length_s=EPISODE_S,
                    variant=variant,
                    commands=CommandConfig(resample_time_s=4.0),
                )
                cfg = ImaginationConfig(
                    num_envs=IMAGINED_ROBOTS,
                    max_tilt_gravity_z=gravity_z_at_tilt(args.fall_tilt_deg),
                    knee_contact_terminates=args.fall_on_knee_contact,
                    sample_temperature=args.temperature,
                    obs_noise=variant.obs_noise,
                    start_max_tilt_deg=10.0,
                    online_fraction=0.0,
                    seed=args.seed,
                )
                data = ArrayDataset(Path(tmp) / "real")
                buffer = ReplayBuffer(data, seed=args.seed, with_robot_params=model.robot_param_dim > 0)
                torch.manual_seed(args.seed)
                imagined = imagined_rollout(model, buffer, policy, cfg, steps=IMAGINED_STEPS)
            row = {
                "policy": policy_path,
                "variant": name,
                "real_falls": real["falls"],
                "real_per_1000_steps": per_thousand(real["falls"], real["transitions"]),
                "imagined_falls": imagined["falls"],
                "imagined_per_1000_steps": per_thousand(imagined["falls"], IMAGINED_ROBOTS * IMAGINED_STEPS),
                "imagined_reward_per_step": imagined["reward_per_step"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {
        "world_model": args.world_model,
        "temperature": args.temperature,
        "fall_tilt_deg": args.fall_tilt_deg,
        "fall_on_knee_contact": args.fall_on_knee_contact,
        "seed": args.seed,
        "real": f"{REAL_ROBOTS} robots x {REAL_STEPS} steps, {EPISODE_S:g} s episodes, pushes on, "
        "falls by the simulator's rule (base contact, 60 deg tilt or a sunk base)",
        "imagined": f"{IMAGINED_ROBOTS} robots x {IMAGINED_STEPS} steps from upright histories",
        "rows": rows,
    }
    print("| policy | variant | falls per 1 000 steps: real | imagined | imagined reward per step |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = (Path(r["policy"]).name, r["variant"], r["real_per_1000_steps"], r["imagined_per_1000_steps"])
        cells += (r["imagined_reward_per_step"],)
        print("| " + " | ".join(map(str, cells)) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
