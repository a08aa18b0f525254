"""Figures of the interpretability analyses (PAPER.md Fig. 1d–e, Fig. 5, §4.4–4.8); drawing only, every
number comes from :mod:`modicl.analysis.measures`. Each function writes PNG and PDF and returns the paths."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib import colormaps
from torch import Tensor

from ..figures import save_figure, subplots


def _save(fig, path: Path) -> list[Path]:
    return save_figure(fig, path, dpi=120)


def attention_maps(patterns: list[Tensor], names: list[list[str]], path: Path, max_pos: int = 48) -> list[Path]:
    """Every layer × head pattern of batch element 0 over the first ``max_pos`` positions (masked
    entries blank). patterns: per layer [B, H, T, T]; names: per layer, per head, a label."""
    L, H = len(patterns), patterns[0].shape[1]
    fig, axes = subplots(L, H, figsize=(2.6 * H, 2.6 * L), squeeze=False)
    for layer, pat in enumerate(patterns):
        for h in range(H):
            a = pat[0, h, :max_pos, :max_pos].float().clone()
            a[torch.ones_like(a, dtype=torch.bool).triu(1)] = float("nan")
            ax = axes[layer][h]
            im = ax.imshow(a.numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"L{layer}H{h}: {names[layer][h]}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="attention probability")
    fig.suptitle("attention patterns (query down, key across; tokens x y z x y z …)", fontsize=9)
    return _save(fig, path)


def pca_scatter(proj: Tensor, pairs: Tensor, p: int, path: Path, title: str) -> list[Path]:
    """Top-2 PCA projection of the p² pairs, coloured by x, each point annotated 'x,y'."""
    fig, ax = subplots(figsize=(7, 7))
    cmap = colormaps["hsv"]
    colors = [cmap(int(x) / p) for x in pairs[:, 0]]
    ax.scatter(proj[:, 0].numpy(), proj[:, 1].numpy(), c=colors, s=12)
    if p <= 31:
        for (x, y), (u, v) in zip(pairs.tolist(), proj.tolist()):
            ax.annotate(f"{x},{y}", (u, v), fontsize=5, alpha=0.7)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def embedding_scatter(proj: Tensor, path: Path, title: str) -> list[Path]:
    """Top-2 PCA projection of the token embeddings, each annotated with its number."""
    fig, ax = subplots(figsize=(5, 5))
    ax.scatter(proj[:, 0].numpy(), proj[:, 1].numpy(), s=14)
    for n, (u, v) in enumerate(proj.tolist()):
        ax.annotate(str(n), (u, v), fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def similarity_matrix(sim: Tensor, path: Path, title: str) -> list[Path]:
    """A cosine-similarity ("kaleidoscope") matrix over pairs in lexicographic order."""
    fig, ax = subplots(figsize=(6, 6))
    im = ax.imshow(sim.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("pair index p·x + y")
    return _save(fig, path)


def kshot_grids(grid: dict[int, dict[str, Tensor]], path: Path, title: str) -> list[Path]:
    """Fig. 5 layout: a column per shot count; rows model correct, ratio matching, model − RM; x down, y across."""
    shots = sorted(grid)
    fig, axes = subplots(3, len(shots), figsize=(3 * len(shots), 9), squeeze=False)
    for j, k in enumerate(shots):
        g = grid[k]
        for i, (key, cmap, lo) in enumerate(
            (("model", "Greys", 0), ("ratio_matching", "Greys", 0), ("difference", "bwr", -1))
        ):
            ax = axes[i][j]
            ax.imshow(g[key].float().numpy(), cmap=cmap, vmin=lo, vmax=1)
            ax.set_xlabel("y", fontsize=8)
            if j == 0:
                ax.set_ylabel(
                    {
                        "model": "model correct (black)\nx",
                        "ratio_matching": "ratio matching solves (black)\nx",
                        "difference": "model − RM (red +1, blue −1)\nx",
                    }[key],
                    fontsize=8,
                )
        axes[0][j].set_title(f"{k}-shot: {float(g['accuracy']):.2f}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def algorithm_curves_plot(curves: dict[str, dict[str, list[float]]], path: Path) -> list[Path]:
    """k-shot accuracy of the model and the reference algorithms (left) and the model's agreement with
    each algorithm (right, the algorithmic shift), one line style per task set."""
    fig, (ax1, ax2) = subplots(1, 2, figsize=(11, 4))
    styles = ["-", "--", ":", "-."]
    for (setname, c), ls in zip(curves.items(), styles):
        k = range(len(c["model"]))
        for key, color in (
            ("model", "k"),
            ("ratio_matching", "tab:blue"),
            ("modular_regression", "tab:red"),
            ("bayes_id", "tab:green"),
        ):
            ax1.plot(k, c[key], ls, color=color, label=f"{key} ({setname})")
        for key, color in (
            ("agree_ratio_matching", "tab:blue"),
            ("agree_modular_regression", "tab:red"),
            ("agree_bayes_id", "tab:green"),
        ):
            ax2.plot(k, c[key], ls, color=color, label=f"{key.removeprefix('agree_')} ({setname})")
    ax1.set_ylabel("accuracy")
    ax2.set_ylabel("share of model predictions equal to the algorithm's")
    for ax in (ax1, ax2):
        ax.set_xlabel("shots k")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=6)
    return _save(fig, path)


def line_plot(values: dict[str, list[float]], path: Path, xlabel: str, ylabel: str, title: str) -> list[Path]:
    """One line per entry of ``values`` against its index."""
    fig, ax = subplots(figsize=(5.5, 3.8))
    for name, v in values.items():
        ax.plot(range(len(v)), v, "o-", label=name)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)
