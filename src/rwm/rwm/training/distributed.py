"""Where a training run computes (CPU or a CUDA device) and, under `torchrun`, which share of it this
process has: data-parallel training with PyTorch's DistributedDataParallel (gloo on the CPU, nccl on
GPUs). In `rwm train-wm` every process draws the same global batch and trains on its own slice of
it; DDP averages the gradients. Where the loss draws no noise (teacher forcing, no latent noise), W
processes take the steps one process takes on the whole batch, up to the order of floating-point
sums; where it does (the sampled predictions fed back), each process draws its own, so they match in
distribution. PPO and the MBPO loop give each process robots of its own (`Parallel.own_seed`)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEVICES = ("cpu", "cuda")

PROCESS_SEED_STRIDE = 100_003


@dataclass(frozen=True)
class Parallel:
    """This process's place in the run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    def share(self, batch_size: int) -> int:
        """How many rows of a global batch each process takes."""
        if batch_size % self.world_size:
            raise ValueError(f"batch size {batch_size} does not split over {self.world_size} processes")
        return batch_size // self.world_size

    def shard(self, batch_size: int) -> slice:
        """This process's rows of a global batch."""
        part = self.share(batch_size)
        return slice(self.rank * part, (self.rank + 1) * part)

    def own_seed(self, seed: int) -> int:
        """This process's seed for what it draws on its own (noise, robots, samples): the run's seed in
        the first process, far from it in the others, so that no other process's draws are the run's
        evaluation seeds (1000 + iteration, 777, 12345)."""
        return seed + PROCESS_SEED_STRIDE * self.rank

    def seed(self, seed: int) -> None:
        """Seed torch's generator per process: each draws its own noise for its slice of the batch."""
        torch.manual_seed(self.own_seed(seed))

    def agree(self, value: int, what: str) -> None:
        """Raise in every process unless all hold the same `value` (every process must call it)."""
        if self.world_size == 1:
            return
        t = torch.tensor([value, -value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if int(t[0]) != -int(t[1]):
            raise ValueError(f"the processes disagree on {what}: from {-int(t[1])} to {int(t[0])}")

    def barrier(self) -> None:
        """Wait until every process is here."""
        if self.world_size > 1:
            dist.barrier()

    def sum(self, value: int) -> int:
        """`value` summed over the processes (every process must call it at the same point)."""
        if self.world_size == 1:
            return value
        t = torch.tensor(value, dtype=torch.int64, device=self.device)
        dist.all_reduce(t)
        return int(t)

    def max_abs_diff_from_first(self, tensors) -> float:
        """Largest difference of these tensors from the first process's copies (every process calls
        it, with tensors of the same shapes): 0 when the replicas are one model."""
        if self.world_size == 1:
            return 0.0
        mine = torch.cat([t.detach().flatten().float() for t in tensors])
        first = mine.clone()
        dist.broadcast(first, src=0)
        diff = (mine - first).abs().max()
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Figures averaged over the processes (every process must call it at the same point)."""
        if self.world_size == 1:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist(), strict=True))


def check_device(device: str) -> str:
    """`device` if this machine has it; a clear error (before any work) if not."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: one of {DEVICES}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device cuda, but torch {torch.__version__} sees no CUDA device")
    return device


def start(device: str) -> Parallel:
    """The run's device; started by `torchrun` (WORLD_SIZE > 1), also join its process group, each
    process on its local GPU under CUDA."""
    check_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Parallel(torch.device(device))
    local = int(os.environ["LOCAL_RANK"])
    where = torch.device("cuda", local) if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(where)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Parallel(where, dist.get_rank(), dist.get_world_size())


GLOO_DRAIN_S = 0.1
"""How long `stop` leaves the GIL free before the process group goes (gloo's threads need microseconds)."""


def stop(parallel: Parallel) -> None:
    """Leave the process group (after the run's last collective call).

    Why the barrier and the pause: gloo's worker thread frees a finished collective's tensors after the
    caller has moved on, and freeing one that Python made takes the GIL. The group's destructor joins
    that thread while holding the GIL (when DDP's reducer, its last owner, is freed), so the two could
    wait for each other forever: seen once in `tests/test_distributed_training.py`'s two MBPO processes
    (the second process's stack: `~Reducer` -> `~ProcessGroupGloo` -> `thread::join`, and the worker
    in `~AsyncAllreduceWork` waiting for the GIL). After the barrier no process has a collective
    left to run, and the pause lets the worker threads finish freeing them. A mitigation, not a proof:
    a machine that starves those threads for longer than the pause could still meet it."""
    if parallel.world_size > 1 and dist.is_initialized():
        dist.barrier()
        time.sleep(GLOO_DRAIN_S)
        dist.destroy_process_group()
