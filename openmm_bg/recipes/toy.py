"""The method end to end on the 2-D toys, whose answers are known exactly.

Training data come from local Metropolis MC started in the deepest state only, the
toy analogue of an MD trajectory stuck in one basin.  The generator is trained by
example, then by example plus energy: the KL loss is taken at the reference
temperature and at higher ones, whose wider prior and flatter landscape let the
generator find the states the data never visited, and an RC loss spreads samples
along x1.  Reweighted samples then give the free-energy profile along x1 and the
free-energy difference between the states, compared with quadrature.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import integrate
import torch

from ..analysis import reweighting as rw
from ..generator.prior import NormalPrior
from ..energies.base import Energy
from ..energies.toys import DoubleWell, MuellerBrown, metropolis_samples
from ..flows import real_nvp
from ..generator.model import BoltzmannGenerator
from ..training.recipe import seeded_parameters
from ..training.threads import torch_threads
from ..training.trainer import Trainer, TrainingConfig

__all__ = ["ToySystem", "TOY_SYSTEMS", "ToyDemoSettings", "ToyDemoReport", "exact_binned_profile", "run_toy_demo", "plot_toy_demo"]

#: the exact profile is compared where it lies less than this far above its minimum (kT)
PROFILE_WINDOW = 8.0


@dataclass
class ToySystem:
    """A 2-D toy with two states and an exact reference.

    Attributes
    ----------
    energy : Energy
    start : tuple of float
        Where the training MC starts (the deepest minimum).
    mc_step : float
        Proposal width of the training MC.
    states : tuple of (name, indicator)
        Indicators map numpy ``x, y`` arrays to booleans; the first state holds the data.
    profile_range : tuple of float
        Range of x1 for the profile.
    plot_box : tuple of (lo, hi), (lo, hi)
    """

    energy: Energy
    start: tuple[float, float]
    mc_step: float
    states: tuple[tuple[str, Callable], tuple[str, Callable]]
    profile_range: tuple[float, float]
    plot_box: tuple[tuple[float, float], tuple[float, float]]
    #: a deep minimum inside each state, where samplers held in the state start
    state_starts: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))

    def exact_delta_f(self) -> float:
        """Exact ``F(second state) - F(first state)`` in kT."""
        if isinstance(self.energy, DoubleWell):
            return self.energy.state_free_energy_difference()
        pops = self.energy.state_populations(dict(self.states))
        (a, _), (b, _) = self.states
        return float(-np.log(pops[b] / pops[a]))


TOY_SYSTEMS: dict[str, ToySystem] = {
    "double-well": ToySystem(
        energy=DoubleWell(),
        start=(-1.75, 0.0),
        mc_step=0.3,
        states=(("x1 < 0", lambda x, y: x < 0), ("x1 > 0", lambda x, y: x > 0)),
        profile_range=(-2.5, 2.5),
        plot_box=((-3.0, 3.0), (-3.5, 3.5)),
        state_starts=((-1.75, 0.0), (1.65, 0.0)),
    ),
    "mueller-brown": ToySystem(
        energy=MuellerBrown(),
        start=(-0.558, 1.442),
        mc_step=0.06,
        states=(("y > 0.75 (A)", lambda x, y: y > 0.75), ("y < 0.75 (B, C)", lambda x, y: y <= 0.75)),
        profile_range=(-1.5, 1.1),
        plot_box=((-1.7, 1.3), (-0.5, 2.2)),
        state_starts=((-0.558, 1.442), (0.623, 0.028)),
    ),
}


@dataclass
class ToyDemoSettings:
    """Budget and architecture of a toy run.  The defaults are the full example."""

    system: str = "double-well"
    n_data: int = 5000
    n_blocks: int = 4
    hidden: tuple[int, ...] = (64, 64)
    ml_iterations: int = 1000
    kl_iterations: int = 2000
    batch_size: int = 256
    kl_batch_size: int = 512
    temperatures: tuple[float, ...] = (1.0, 3.0)
    w_rc: float = 1.0
    rc_bandwidth: float = 0.1
    n_samples: int = 100_000
    n_bins: int = 50
    n_bootstrap: int = 100
    seed: int = 0
    #: torch intra-op threads; networks this small run fastest on one (12x faster than two on a busy 2-core machine)
    torch_threads: int = 1

    @classmethod
    def reduced(cls, system: str = "double-well") -> "ToyDemoSettings":
        """A budget that runs in well under a minute on 2 cores."""
        return cls(system=system, n_data=2000, ml_iterations=300, kl_iterations=500, kl_batch_size=256, n_samples=20_000, n_bins=25, n_bootstrap=50)


@dataclass
class ToyDemoReport:
    """Figures of a toy run; free energies in kT."""

    settings: ToyDemoSettings
    delta_f: rw.Estimate
    delta_f_exact: float
    ess: float
    raw_fraction_second_state: float
    profile: rw.FreeEnergyProfile
    profile_exact: np.ndarray
    profile_window: np.ndarray
    max_profile_deviation: float
    max_profile_error: float
    energy_evaluations: int
    wall_time: float
    history: list = field(repr=False, default_factory=list)
    data: np.ndarray = field(repr=False, default=None)
    samples: np.ndarray = field(repr=False, default=None)
    #: the trained BoltzmannGenerator
    generator: object = field(repr=False, default=None)

    def summary(self) -> str:
        s = self.settings
        (a, _), (b, _) = TOY_SYSTEMS[s.system].states
        return "\n".join(
            [
                f"system                 {s.system}",
                f"samples                {s.n_samples}",
                f"Kish ESS               {100 * self.ess:.1f} %",
                f"raw samples in {b:<8} {100 * self.raw_fraction_second_state:.2f} %",
                f"F({b}) - F({a})  {self.delta_f.value:.3f} +- {self.delta_f.error:.3f} kT (bootstrap)",
                f"exact (quadrature)     {self.delta_f_exact:.3f} kT; deviation {self.delta_f.value - self.delta_f_exact:+.3f} kT",
                f"profile, bins < {PROFILE_WINDOW:g} kT  max |F - F_exact| = {self.max_profile_deviation:.3f} kT, "
                f"max standard error = {self.max_profile_error:.3f} kT over {int(self.profile_window.sum())} bins",
                f"energy evaluations     {self.energy_evaluations}",
                f"wall time              {self.wall_time:.1f} s",
            ]
        )


def exact_binned_profile(energy: DoubleWell | MuellerBrown, edges: np.ndarray, n_sub: int = 129) -> np.ndarray:
    """Exact free energy of each bin, ``-log((1/h) int_bin p(x1) dx1)``, in kT.

    A histogram estimates the bin-averaged density, which differs from the density
    at the bin centre by ``log(sinh(s h/2) / (s h/2))`` on a slope ``s``: 0.2 kT on
    the steep walls of the double well with ``h = 0.1``.  Comparisons use this.

    Parameters
    ----------
    edges : ndarray, shape (n_bins + 1,)
    """
    t = np.linspace(0.0, 1.0, n_sub)
    points = edges[:-1, None] + t[None, :] * np.diff(edges)[:, None]
    f = energy.free_energy_profile(points.ravel()).reshape(points.shape)
    shift = f.min()
    return -np.log(integrate.simpson(np.exp(-(f - shift)), x=t, axis=1)) + shift


def run_toy_demo(settings: ToyDemoSettings | None = None, progress: bool = True) -> ToyDemoReport:
    """Train a Boltzmann generator on a toy and compare its reweighted estimates with quadrature."""
    settings = settings or ToyDemoSettings()
    if settings.system not in TOY_SYSTEMS:
        raise ValueError(f"unknown toy system {settings.system!r}; known: {sorted(TOY_SYSTEMS)}")
    with torch_threads(settings.torch_threads):
        return _run_toy_demo(settings, progress)


def _run_toy_demo(settings: ToyDemoSettings, progress: bool) -> ToyDemoReport:
    toy = TOY_SYSTEMS[settings.system]
    t0 = time.perf_counter()
    n_chains = 100
    data = metropolis_samples(toy.energy, torch.tensor(toy.start), settings.n_data, step=toy.mc_step, n_chains=n_chains, seed=settings.seed)
    mc_evaluations = n_chains * (1 + 200 + -(-settings.n_data // n_chains) * 10)

    generator = seeded_parameters(lambda: BoltzmannGenerator(NormalPrior(2), real_nvp(2, settings.n_blocks, settings.hidden), toy.energy).double(), settings.seed)
    by_example = TrainingConfig(n_iterations=settings.ml_iterations, batch_size=settings.batch_size, w_ml=1.0, seed=settings.seed)
    stage1 = Trainer(generator, by_example, data=data)
    stage1.train(progress=progress)
    n = settings.kl_iterations
    by_energy = TrainingConfig(
        n_iterations=n,
        batch_size=settings.batch_size,
        kl_batch_size=settings.kl_batch_size,
        learning_rate=5e-4,
        w_ml=[[0, 1.0], [n, 0.1]],
        w_kl=1.0,
        w_rc=settings.w_rc,
        rc_bandwidth=settings.rc_bandwidth,
        temperatures=list(settings.temperatures),
        seed=settings.seed + 1,
    )
    stage2 = Trainer(generator, by_energy, data=data, reaction_coordinate=lambda x: x[:, 0])
    stage2.train(progress=progress)

    sample = generator.sample(settings.n_samples, generator=torch.Generator().manual_seed(settings.seed + 2)).numpy()
    x, y, log_w = sample["x"][:, 0], sample["x"][:, 1], sample["log_weight"]
    (_, in_a), (_, in_b) = toy.states
    delta_f = rw.state_free_energy_difference(in_a(x, y), in_b(x, y), log_w, n_bootstrap=settings.n_bootstrap, seed=settings.seed)
    edges = np.linspace(*toy.profile_range, settings.n_bins + 1)
    profile = rw.free_energy_profile(x, log_w, bins=edges, n_bootstrap=settings.n_bootstrap, seed=settings.seed)
    exact = exact_binned_profile(toy.energy, edges)
    window = exact - exact.min() < PROFILE_WINDOW
    deviation = np.abs(profile.free_energy - exact)[window]
    errors = profile.error[window]
    return ToyDemoReport(
        settings=settings,
        delta_f=delta_f,
        delta_f_exact=toy.exact_delta_f(),
        ess=rw.kish_ess(log_w),
        raw_fraction_second_state=float(np.mean(in_b(x, y))),
        profile=profile,
        profile_exact=exact,
        profile_window=window,
        max_profile_deviation=float(np.max(deviation)),
        max_profile_error=float(np.max(np.where(np.isnan(errors), np.inf, errors))),
        energy_evaluations=int(mc_evaluations + stage1.energy_evaluations + stage2.energy_evaluations + settings.n_samples),
        wall_time=time.perf_counter() - t0,
        history=stage1.history + stage2.history,
        data=data.numpy(),
        samples=np.stack([x, y, log_w], axis=1),
        generator=generator,
    )


def plot_toy_demo(report: ToyDemoReport, path: str | Path) -> Path:
    """Write a PNG: energy surface with data and samples, the profiles, and the loss curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    toy = TOY_SYSTEMS[report.settings.system]
    (x_lo, x_hi), (y_lo, y_hi) = toy.plot_box
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))

    ax = axes[0]
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, 200), np.linspace(y_lo, y_hi, 200))
    u = toy.energy(torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1))).numpy().reshape(gx.shape)
    u = u - u.min()
    ax.contourf(gx, gy, np.minimum(u, 20.0), levels=20, cmap="Greys_r")
    shown = report.samples[:3000]
    ax.scatter(shown[:, 0], shown[:, 1], s=2, c="tab:orange", alpha=0.5, label="generator samples")
    ax.scatter(report.data[:1000, 0], report.data[:1000, 1], s=2, c="tab:blue", alpha=0.5, label="training data (MC, one state)")
    ax.set(xlim=(x_lo, x_hi), ylim=(y_lo, y_hi), xlabel="x1", ylabel="x2", title=f"{report.settings.system}: energy (kT, capped at 20)")
    ax.legend(loc="upper right", fontsize=8, markerscale=4)

    ax = axes[1]
    prof = report.profile
    fine = np.linspace(*toy.profile_range, 400)
    exact_fine = toy.energy.free_energy_profile(fine)
    shift = exact_fine.min()
    raw = rw.free_energy_profile(report.samples[:, 0], np.zeros(len(report.samples)), bins=prof.bin_edges, n_bootstrap=0)
    ax.plot(fine, exact_fine - shift, "k-", lw=1.5, label="exact (quadrature)")
    ax.plot(raw.bin_centers, raw.free_energy - shift, "o", ms=3, color="tab:orange", alpha=0.6, label="generator, raw")
    ax.errorbar(prof.bin_centers, prof.free_energy - shift, yerr=prof.error, fmt="s", ms=3, color="tab:red", capsize=2, label="generator, reweighted")
    ax.axhline(PROFILE_WINDOW, color="grey", ls=":", lw=1)
    ax.set(xlabel="x1", ylabel="free energy (kT)", ylim=(-0.5, 14), title=f"profile: dF = {report.delta_f.value:.2f} +- {report.delta_f.error:.2f} (exact {report.delta_f_exact:.2f}), ESS {100 * report.ess:.0f} %")
    ax.legend(fontsize=8)

    ax = axes[2]
    hist = report.history
    it = np.arange(len(hist))
    for key, color in (("ml", "tab:blue"), ("kl", "tab:green"), ("rc", "tab:purple")):
        values = np.array([row.get(key, np.nan) for row in hist])
        ax.plot(it, values, color=color, lw=0.8, label=f"J_{key.upper()}")
    ax.axvline(report.settings.ml_iterations, color="grey", ls="--", lw=1)
    ax.set(xlabel="iteration", ylabel="loss", title="training: by example | by example + energy")
    ax.legend(fontsize=8)

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
