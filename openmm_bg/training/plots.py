"""The loss curves of a training run (losses.png of ``openmm-bg train`` and ``openmm-bg demo``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["plot_losses"]


def plot_losses(stages: Sequence[Sequence[dict]], path: str | os.PathLike, dpi: int = 110) -> Path:
    """Plot J_ML (with the held-out frames and the learning rate) and J_KL of training stages run one after another.

    Parameters
    ----------
    stages : sequence of histories
        Each a :attr:`openmm_bg.training.Trainer.history` (one dict per iteration, with
        ``lr`` and, where computed, ``ml``, ``ml_validation``, ``kl`` in nats / kT); the
        iterations are numbered on through the stages, each later stage's start dashed.
    path : path
        The PNG written.
    dpi : int

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [stage for stage in stages if stage]
    history = [row for stage in stages for row in stage]
    if not history:
        raise ValueError("no training history to plot")
    starts = np.cumsum([len(stage) for stage in stages])[:-1]
    it = np.arange(len(history))
    column = {key: np.array([row.get(key, np.nan) for row in history], dtype=float) for key in ("ml", "kl", "lr")}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")

    ax, ml = axes[0], column["ml"]
    ax.plot(it, ml, lw=0.6, color="tab:blue", alpha=0.5, label="J_ML per iteration")
    window, ok = max(1, len(it) // 50), np.isfinite(ml)
    if ok.any():
        with np.errstate(invalid="ignore"):
            smooth = np.convolve(np.where(ok, ml, 0.0), np.ones(window), "valid") / np.convolve(ok, np.ones(window), "valid")
        ax.plot(it[window - 1:], smooth, color="tab:blue", lw=1.5, label=f"running mean over {window}")
    held = [(i, row["ml_validation"]) for i, row in enumerate(history) if "ml_validation" in row]
    if held:
        ax.plot(*zip(*held), "o-", color="tab:red", ms=3, lw=1, label="held-out frames (end of each file)")
    shown = ml[len(ml) // 20:][np.isfinite(ml[len(ml) // 20:])]
    if shown.size:
        lo, hi = np.percentile(shown, [0.5, 99.5])
        ax.set_ylim(lo - 0.05 * (hi - lo) - 1e-9, hi + 0.05 * (hi - lo) + 1e-9)
    lr = ax.twinx()
    lr.plot(it, column["lr"], color="grey", lw=1, ls=":")
    lr.set(yscale="log", ylabel="learning rate (dotted)")
    ax.set(xlabel="iteration", ylabel="J_ML (negative log-likelihood of the data)", title="by example (y range: last 95 % of iterations)")

    ax, kl = axes[1], column["kl"]
    if np.isfinite(kl).any():
        ax.plot(it, kl, lw=0.8, color="tab:green", label="J_KL")
        ax.set(xlabel="iteration", ylabel="J_KL (reduced free energy of the generator, kT)", title="by energy")
    else:
        ax.text(0.5, 0.5, "no training by energy (w_kl = 0 throughout)", ha="center", va="center", transform=ax.transAxes)
        ax.set(xticks=[], yticks=[], title="by energy")
    for start in starts:
        for a in axes if np.isfinite(kl).any() else axes[:1]:
            a.axvline(start, color="k", ls="--", lw=1, label="next stage starts" if start == starts[0] else None)
    for a in axes:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8, loc="upper right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
