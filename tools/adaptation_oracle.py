"""What adaptation from a shifted robot's bags could reach at best: PPO in the *simulator* of that
very robot, from the deployed policy (its actor; a fresh critic warmed up first, as `rwm
adapt-policy` does), judged on the same validation episodes as `rwm adapt-policy` (nominal robot and
the shifted one, seed 4711). It uses the true dynamics and far more transitions than ten minutes of
bags hold (iterations x robots x 24), so a goal this run misses is out of reach of the bags too.
It runs `rwm adapt-policy`'s fine-tuning (`fine_tune_deployed`). Where it differs besides the
data: the simulator's fall rule ends episodes (not imagination's 20 degrees), the shifted robot's own
sensors (no added noise unless the variant has it), and rsl-rl's refit of the actor's observation
normalization (adaptation freezes it).
Not a product path: the robot's simulator does not exist for a real robot. With `--fraction F` only
that share of the robots is the shifted one and the rest come from the training family (what `rwm
adapt-policy --dynamics identified` trains on, with the true robot in place of the identified one).

    python tools/adaptation_oracle.py --variant motors_55 --iterations 40 [--out FILE.json]
    python tools/adaptation_oracle.py --variant friction_0.2 --fraction 0.25 --critic-warmup 20 \
        --frozen-normalization
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src" / "rwm")]

import torch  # noqa: E402

from rwm.export.runtime import OnnxPolicy  # noqa: E402
from rwm.rl.vec_env import AnymalVecEnv  # noqa: E402
from rwm.runners.adaptation import (  # noqa: E402
    AdaptConfig,
    fine_tune_deployed,
    training_mixture,
    validation_figures,
)
from rwm.runners.mbpo import deterministic_policy  # noqa: E402
from rwm.runners.ppo import PPOConfig  # noqa: E402
from rwm.sim.batched_env import EnvConfig, PushConfig  # noqa: E402
from rwm.sim.variants import NOMINAL, variant_named  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", required=True, help="the shifted robot (config/robot_variants.yaml)")
    ap.add_argument("--policy", default="models/anymal_d_ppo.onnx")
    ap.add_argument("--iterations", type=int, default=40, help="PPO iterations of the actor")
    ap.add_argument("--critic-warmup", type=int, default=10)
    ap.add_argument(
        "--fraction", type=float, default=1.0, help="share of the robots that are the shifted one (1: all)"
    )
    ap.add_argument(
        "--frozen-normalization", action="store_true", help="keep the actor's normalization (adapt-policy's)"
    )
    ap.add_argument("--num-envs", type=int, default=512)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--episodes", type=int, default=AdaptConfig.validation_episodes)
    ap.add_argument("--log-dir", default="runs/adaptation_oracle")
    ap.add_argument("--out", help="write the figures here (JSON)")
    args = ap.parse_args()
    adapt = AdaptConfig(
        critic_warmup=args.critic_warmup,
        iterations=args.iterations,
        freeze_normalization=args.frozen_normalization,
        validation_episodes=args.episodes,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    torch.set_num_threads(adapt.threads)
    variant = variant_named(args.variant)
    mixture = training_mixture(variant, args.fraction)
    env_cfg = EnvConfig(
        num_envs=args.num_envs,
        pushes=PushConfig(enabled=True),
        variant=variant,
        randomization=mixture if args.fraction < 1.0 else None,
        termination_penalty=adapt.imagination.termination_penalty,
        seed=args.seed,
    )
    env = AnymalVecEnv(env_cfg)
    start = time.time()
    runner = fine_tune_deployed(env, args.policy, adapt, f"{args.log_dir}/{args.variant}")
    wall_s = time.time() - start
    env.close()
    oracle, deployed = deterministic_policy(runner), OnnxPolicy(args.policy)
    steps = args.critic_warmup + args.iterations
    result = {
        "variant": args.variant,
        "policy": args.policy,
        "iterations": args.iterations,
        "critic_warmup": args.critic_warmup,
        "fraction": args.fraction,
        "frozen_normalization": args.frozen_normalization,
        "simulated_transitions": steps * PPOConfig.num_steps_per_env * args.num_envs,
        "train_wall_s": round(wall_s, 1),
        "seed": args.seed,
    }
    for name, robot in (("nominal", NOMINAL), (args.variant, variant)):
        result[name] = {
            "deployed": validation_figures(deployed, deployed.obs_dim, adapt, robot),
            "oracle": validation_figures(oracle, deployed.obs_dim, adapt, robot),
        }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
