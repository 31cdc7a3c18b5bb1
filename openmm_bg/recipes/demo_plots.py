"""Figures of an ``openmm-bg demo`` run (:class:`openmm_bg.recipes.demo.DemoReport`).

:func:`plot_demo` writes the Ramachandran plots of the MD data and of the raw and
reweighted generator samples, the loss curves (with the held-out loss;
:func:`openmm_bg.training.plots.plot_losses`) and the distribution of the log weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .demo import DemoReport

__all__ = ["plot_demo"]


def plot_demo(report: "DemoReport", output_dir: str | Path) -> dict[str, Path]:
    """Write ramachandran.png (when the system has phi and psi), losses.png and log_weights.png."""
    import matplotlib

    from ..training.plots import plot_losses
    from .demo import OUTPUT_FILES

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

    paths["losses"] = plot_losses([report.history_ml, report.history_kl], output / OUTPUT_FILES["losses"], dpi=110)

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
