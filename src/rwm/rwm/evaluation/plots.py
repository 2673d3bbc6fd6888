"""PNG figures of the world-model evaluation and of a stack run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_error_vs_step(results: dict, path: str | Path) -> None:
    """Relative error per forecast step, every model and hold-last."""
    fig, ax = plt.subplots(figsize=(7, 4))
    curves = {k: v["per_step"] for k, v in results["models"].items()}
    curves["hold-last"] = results["hold_last"]["per_step"]
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name, ls="--" if name == "hold-last" else "-")
    ax.set(xlabel="forecast step (0.02 s)", ylabel="relative error", yscale="log")
    ax.set_title("Autoregressive error")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_noise(results: dict, path: str | Path, pair: tuple[str, str] | None = None) -> None:
    """Left: mean error against noise std per model. Right (paper Fig. 4): per-step error of a pair of
    models (solid vs dashed) at each noise level."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, entry in results["models"].items():
        sigmas = [0.0, *map(float, entry["noise"])]
        left.plot(sigmas, [entry["mean"], *(v["mean"] for v in entry["noise"].values())], "o-", label=name)
    left.set(xlabel="noise std (normalized)", ylabel="mean relative error", yscale="log")
    left.legend(fontsize=7)
    if pair:
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(results["models"][pair[0]]["noise"])))
        for style, name in zip(("-", "--"), pair, strict=True):
            for color, (sigma, v) in zip(colors, results["models"][name]["noise"].items(), strict=True):
                right.plot(v["per_step"], style, color=color, label=f"{name} σ={sigma}")
        right.set(xlabel="forecast step", ylabel="relative error", yscale="log")
        right.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_latent_drift(results: dict, path: str | Path) -> None:
    """Mean error against the drift of latent perturbations (second paper, Fig. 1)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, entry in results["models"].items():
        if entry["latent_drift"]:
            mus = [float(k) for k in entry["latent_drift"]]
            ax.plot(mus, [v["mean"] for v in entry["latent_drift"].values()], "o-", label=name)
    ax.set(
        xlabel="latent drift μ per step",
        ylabel="mean relative error",
        yscale="log",
        title="Error under latent perturbation",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_heatmaps(sweep: dict, path: str | Path) -> None:
    """M x N sweep (paper Fig. 5): error (left) and training time per iteration (right)."""
    hs, ns = sweep["histories"], sweep["horizons"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((axes[0], "error", "relative AR error"), (axes[1], "s_per_iteration", "training s/iteration"))
    for ax, key, title in panels:
        grid = np.array([[sweep["cells"][f"{m}x{n}"][key] for n in ns] for m in hs])
        im = ax.imshow(grid, cmap="viridis_r" if key == "error" else "magma_r")
        ax.set(
            xticks=range(len(ns)),
            xticklabels=ns,
            yticks=range(len(hs)),
            yticklabels=hs,
            xlabel="forecast horizon N",
            ylabel="history M",
            title=title,
        )
        for i in range(len(hs)):
            for j in range(len(ns)):
                ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_velocity_tracking(
    time_s: np.ndarray,
    command: np.ndarray,
    measured: np.ndarray,
    modes: list[tuple[float, str]],
    path: str | Path,
) -> None:
    """Commanded against measured vx, vy and yaw rate over a run, the policy's mode changes marked."""
    fig, axes = plt.subplots(3, 1, figsize=(10, 6.5), sharex=True)
    labels = ("vx (m/s)", "vy (m/s)", "yaw rate (rad/s)")
    for k, (ax, label) in enumerate(zip(axes, labels, strict=True)):
        ax.plot(time_s, command[:, k], color="k", lw=1.2, label="commanded")
        ax.plot(time_s, measured[:, k], color="tab:blue", lw=0.9, label="measured")
        ax.set_ylabel(label)
        for t, mode in modes:
            ax.axvline(t, color="tab:red", lw=0.8, ls=":")
            if k == 0:
                ax.annotate(mode, (t, 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="tab:red",
                            rotation=90, va="top", ha="right")  # fmt: skip
    axes[0].legend(fontsize=8, loc="lower right")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(
        "Velocity tracking (odometry against /cmd_vel); dotted: policy mode changes (1 Hz diagnostics)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(latency_ms: np.ndarray, path: str | Path) -> None:
    """Histogram of state stamp to joint command at the robot, with p50, p99 and the maximum."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.hist(latency_ms, bins=80, color="tab:blue", log=True)
    for q, style in ((50, "-"), (99, "--")):
        v = float(np.percentile(latency_ms, q))
        ax.axvline(v, color="k", ls=style, lw=1, label=f"p{q} {v:.2f} ms")
    ax.axvline(float(latency_ms.max()), color="tab:red", lw=1, label=f"max {latency_ms.max():.2f} ms")
    ax.set(xlabel="state stamp -> joint command at the robot (ms)", ylabel="commands")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
