"""World-model training speed: seconds per update for M=32, N=8, batch 1024 on 2 threads.

Compares the trainer (`WorldModelLearner.update`: the fused nn.GRU over the history, then N
autoregressive steps) with a straightforward loop that advances the GRU one step at a time over all
M + N steps, measured in the same run on the same batch. Prints JSON with the speed-up of each trainer
configuration (`LearnerConfig`) over that float32 loop: as the paper trains; with backpropagation
through only the last --history-grad-steps of the history; with `precision` bfloat16 (the forward
pass's matrix products in bfloat16 under autocast); and bfloat16 with `compile` (its compilation
time apart). The per-step loop in bfloat16 too, so that the precision's share of the speed-up shows.

In float32 both are bound by the GRU's matrix products on this CPU: `--profile` prints the GFLOP a step
takes in them and the rate inside them, against a plain matrix product of the GRU's shape. `--device
cuda` times the same on a GPU (each timing waits for the GPU's queued work), where the fused GRU call
pays. `--no-compile` leaves out the compiled trainer (about two minutes of compilation).
`--jacobian-weight W` adds the trainer with the generalization paper's Jacobian penalty, in float32 and
bfloat16 (the penalty's double backward cannot be compiled).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rwm.models.rwm import RobotWorldModel
from rwm.training.learner import LearnerConfig, WorldModelLearner, forward_precision
from rwm.training.losses import gaussian_nll


def per_step_loss(model: RobotWorldModel, s: torch.Tensor, a: torch.Tensor, c: torch.Tensor, m: int, n: int):
    """The same objective, every step (history included) through model.step."""
    h = model.initial_hidden(s.shape[0])
    for t in range(m - 1):
        _, _, _, h = model.step(s[:, t], a[:, t], h)
    mean, std, logits, h = model.step(s[:, m - 1], a[:, m - 1], h)
    loss = gaussian_nll(mean, std, s[:, m]).mean()
    for k in range(1, n):
        prev = mean + std * torch.randn_like(mean)
        mean, std, logits, h = model.step(prev, a[:, m + k - 1], h)
        loss = loss + gaussian_nll(mean, std, s[:, m + k]).mean()
    return loss / n


def gemm_figures(step, threads: int) -> dict:
    """The matrix products of one trainer step (profiled): GFLOP, seconds, GFLOP/s inside them; and the
    rate of one plain product of the GRU's recurrent shape (1024 x 256 x 768), float32 and bfloat16,
    for comparison."""
    with torch.profiler.profile(with_flops=True) as prof:
        step()
    events = [e for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm")]
    flop = sum(e.flops for e in events)
    seconds = sum(e.self_cpu_time_total for e in events) / 1e6
    x, w = torch.randn(1024, 256), torch.randn(256, 768)
    plain = timed(lambda: x @ w, 50)
    xb, wb = x.bfloat16(), w.bfloat16()
    plain_bf16 = timed(lambda: xb @ wb, 50)
    return {
        "gemm_gflop_per_step": round(flop / 1e9, 1),
        "gemm_s_per_step": round(seconds, 3),
        "gemm_gflop_per_s": round(flop / seconds / 1e9, 1),
        "plain_gemm_gflop_per_s": round(2 * 1024 * 256 * 768 / plain / 1e9, 1),
        "plain_gemm_bfloat16_gflop_per_s": round(2 * 1024 * 256 * 768 / plain_bf16 / 1e9, 1),
    }


def timed(fn, repeats: int, sync=lambda: None) -> float:
    """Mean seconds per call after a warm-up; `sync` waits for a GPU's queued work."""
    fn()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--history", type=int, default=32)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--history-grad-steps", type=int, default=8, help="the truncated trainer's")
    ap.add_argument("--profile", action="store_true", help="GFLOP and GFLOP/s of the matrix products")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled bfloat16 trainer")
    ap.add_argument(
        "--jacobian-weight",
        type=float,
        default=0.0,
        help="also time the trainer with the Jacobian penalty of this weight, float32 and bfloat16",
    )
    args = ap.parse_args()
    if args.profile and args.device != "cpu":
        ap.error("--profile reads the CPU's matrix products: --device cpu")
    sync = torch.cuda.synchronize if args.device == "cuda" else lambda: None
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = RobotWorldModel().to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    length = args.history + args.horizon
    s = torch.randn(args.batch, length, 45, device=args.device)
    a = torch.randn(args.batch, length, 12, device=args.device)
    c = (torch.rand(args.batch, length, 8, device=args.device) > 0.5).float()

    batch = {"state": s, "action": a, "contacts": c}

    def trainer(**options) -> WorldModelLearner:
        return WorldModelLearner(model, LearnerConfig(history=args.history, horizon=args.horizon, **options))

    def loop_step(precision: str = "float32") -> None:
        with forward_precision(s.device, precision):
            loss = per_step_loss(model, s, a, c, args.history, args.horizon)
        opt.zero_grad()
        loss.backward()
        opt.step()

    learners = {
        "": trainer(),
        "history_grad_steps": trainer(history_grad_steps=args.history_grad_steps),
        "bfloat16": trainer(precision="bfloat16"),
    }
    if args.jacobian_weight > 0:
        learners["jacobian"] = trainer(jacobian_weight=args.jacobian_weight)
        learners["bfloat16_jacobian"] = trainer(precision="bfloat16", jacobian_weight=args.jacobian_weight)
    figures = {}
    if not args.no_compile:
        learners["compiled_bfloat16"] = trainer(precision="bfloat16", compile=True)
        start = time.perf_counter()
        learners["compiled_bfloat16"].update(batch)
        sync()
        figures["compile_s"] = round(time.perf_counter() - start, 1)
    t_loop = timed(loop_step, args.repeats, sync)
    for name, learner in learners.items():
        t = timed(lambda learner=learner: learner.update(batch), args.repeats, sync)
        key = f"trainer_{name}_s_per_step" if name else "trainer_s_per_step"
        figures[key] = round(t, 3)
        figures[f"speedup_{name}" if name else "speedup"] = round(t_loop / t, 2)
    t_loop_bf16 = timed(lambda: loop_step("bfloat16"), args.repeats, sync)
    gemm = gemm_figures(lambda: learners[""].update(batch), args.threads) if args.profile else {}
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "batch": args.batch,
                "history": args.history,
                "horizon": args.horizon,
                "threads": args.threads,
                "per_step_loop_s_per_step": round(t_loop, 3),
                "per_step_loop_sequences_per_s": round(args.batch / t_loop, 1),
                "history_grad_steps": args.history_grad_steps,
                "jacobian_weight": args.jacobian_weight,
                **figures,
                "per_step_loop_bfloat16_s_per_step": round(t_loop_bf16, 3),
                **gemm,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
