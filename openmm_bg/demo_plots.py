"""Figures of an ``openmm-bg demo`` run (:class:`openmm_bg.pipeline.DemoReport`).

:func:`plot_demo` writes the Ramachandran plots of the MD data and of the raw and
reweighted generator samples, the loss curves (with the held-out loss) and the
distribution of the log weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .pipeline import DemoReport

__all__ = ["plot_demo"]


def plot_demo(report: "DemoReport", output_dir: str | Path) -> dict[str, Path]:
    """Write ramachandran.png (when the system has phi and psi), losses.png and log_weights.png."""
    import matplotlib

    from .pipeline import OUTPUT_FILES

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    paths = {}
    s = report.settings
    finite = np.isfinite(report.log_weight)
    relative = np.where(finite, report.log_weight - (report.log_weight[finite].max() if finite.any() else 0.0), -np.inf)
    weights = np.exp(relative)
    ess = f"Kish ESS {100 * report.kish_ess:.2f} %"

    def save(fig, key):
        fig.savefig(output / OUTPUT_FILES[key], dpi=110)
        plt.close(fig)
        paths[key] = output / OUTPUT_FILES[key]

    if report.data_phi_psi is not None:
        cap, edges = 10.0, np.linspace(-180.0, 180.0, 61)
        panels = [
            (report.data_phi_psi, None, f"MD training data ({report.n_frames} frames)"),
            (report.sample_phi_psi, None, f"generator, raw ({report.n_written} samples)"),
            (report.sample_phi_psi, weights, f"generator, reweighted ({ess})"),
        ]
        fig, axes = plt.subplots(1, 3, figsize=(15, 5), sharey=True, layout="constrained")
        for ax, (angles, w, title) in zip(axes, panels):
            h = np.histogram2d(*np.degrees(angles).T, bins=[edges, edges], weights=w)[0]
            with np.errstate(divide="ignore"):
                f = -np.log(h / h.sum()) if h.sum() > 0 else np.full(h.shape, np.inf)
            f = np.ma.masked_where(h <= 0, np.minimum(f - f[h > 0].min(), cap) if (h > 0).any() else f)
            mesh = ax.pcolormesh(edges, edges, f.T, vmin=0.0, vmax=cap, cmap="viridis")
            ax.axvline(0.0, color="k", ls="--", lw=1)
            ax.set(xlim=(-180, 180), ylim=(-180, 180), xticks=range(-180, 181, 90), yticks=range(-180, 181, 90),
                   xlabel="phi (degrees)", title=title, facecolor="0.93", aspect="equal")
        axes[0].set_ylabel("psi (degrees)")
        fig.colorbar(mesh, ax=axes, shrink=0.8, label=f"free energy (kT), capped at {cap:g}; grey: empty")
        fig.suptitle(f"{report.system}: -log density on {len(edges) - 1}x{len(edges) - 1} bins; dashed: phi = 0")
        save(fig, "ramachandran")

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
    history = report.history_ml + report.history_kl
    it = np.arange(len(history))
    ml = np.array([row.get("ml", np.nan) for row in history], dtype=float)
    ax = axes[0]
    ax.plot(it, ml, lw=0.6, color="tab:blue", alpha=0.5, label="J_ML per iteration")
    window, ok = max(1, len(it) // 50), np.isfinite(ml)
    with np.errstate(invalid="ignore"):
        smooth = np.convolve(np.where(ok, ml, 0.0), np.ones(window), "valid") / np.convolve(ok, np.ones(window), "valid")
    ax.plot(it[window - 1:], smooth, color="tab:blue", lw=1.5, label=f"running mean over {window}")
    held = [(i, row["ml_validation"]) for i, row in enumerate(history) if "ml_validation" in row]
    if held:
        ax.plot(*zip(*held), "o-", color="tab:red", ms=3, lw=1, label="held-out frames (end of each file)")
    shown = ml[len(ml) // 20:][np.isfinite(ml[len(ml) // 20:])]
    if shown.size:
        lo, hi = np.percentile(shown, [0.5, 99.5])
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    lr = ax.twinx()
    lr.plot(it, [row["lr"] for row in history], color="grey", lw=1, ls=":")
    lr.set(yscale="log", ylabel="learning rate (dotted)")
    ax.set(xlabel="iteration", ylabel="J_ML (negative log-likelihood of the data)", title=("J_ML over both stages" if report.history_kl else "stage 1: by example") + " (y range: last 95 % of iterations)")
    ax = axes[1]
    if report.history_kl:
        kl = np.array([row.get("kl", np.nan) for row in report.history_kl], dtype=float)
        ax.plot(it[len(report.history_ml):], kl, lw=0.8, color="tab:green", label="J_KL")
        ax.set(xlabel="iteration", ylabel="J_KL (reduced free energy of the generator, kT)", title="stage 2: by example and energy")
        for a in axes:
            a.axvline(len(report.history_ml), color="k", ls="--", lw=1, label="stage 2 starts")
    else:
        ax.text(0.5, 0.5, "stage 2 (by example and energy) skipped:\nkl.n_iterations = 0", ha="center", va="center", transform=ax.transAxes)
        ax.set(xticks=[], yticks=[], title="stage 2: by example and energy")
    for a in axes:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8, loc="upper right")
    save(fig, "losses")

    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    values = relative[finite]
    lo = min(max(float(np.percentile(values, 0.5)), -100.0), -1.0) if values.size else -1.0
    bins = np.linspace(lo, 0.0, 61)
    for mask, name, color in ((report.in_a, s.state_a, "tab:blue"), (report.in_b, s.state_b, "tab:orange")):
        v = relative[mask & finite]
        ax.hist(v[v >= lo], bins=bins, histtype="step", lw=1.8, color=color, label=f"{name}: {int(mask.sum())} samples ({int((v < lo).sum())} below {lo:.0f})")
    ax.set(yscale="log", xlabel="log importance weight - max (finite weights)", ylabel="samples",
           title=f"{report.system}: log weights of {report.n_samples} samples; {ess}")
    ax.legend(fontsize=9, loc="upper left")
    save(fig, "log_weights")
    return paths
