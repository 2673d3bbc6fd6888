"""PNG figures of the world-model evaluation (matplotlib, no display needed)."""

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
