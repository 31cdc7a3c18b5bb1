"""Importance reweighting of generator samples to the Boltzmann distribution.

A sample ``x`` drawn from the generator density ``p_X`` gets the weight
``w = exp(-u(x)) / p_X(x)``, known up to a constant; ``log w = -u - log p_X``.
All functions take log weights (numpy arrays or tensors, shape (n,)) and work in
float64.  ``-inf`` log weights (failed energies) count as zero weight.
Errors are bootstrap standard deviations over resampled sample sets: they see only the
samples drawn, so read them with the diagnostics of :mod:`openmm_bg.analysis.diagnostics`
(Pareto k-hat, effective samples per state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "Estimate",
    "FreeEnergyProfile",
    "log_importance_weights",
    "normalized_weights",
    "kish_ess",
    "weighted_mean",
    "free_energy_profile",
    "state_free_energy_difference",
]


class Estimate(NamedTuple):
    """An estimate and its standard error (same units)."""

    value: float
    error: float


def _as_1d(a, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, shape (n,), got {a.shape}")
    return a


def _check_log_weights(log_w) -> np.ndarray:
    log_w = _as_1d(log_w, "log_w")
    if log_w.size == 0:
        raise ValueError("log_w is empty")
    if np.isnan(log_w).any() or np.isposinf(log_w).any():
        raise ValueError(f"log_w must be finite or -inf; it holds {int(np.isnan(log_w).sum())} NaN and {int(np.isposinf(log_w).sum())} +inf")
    if np.isneginf(log_w).all():
        raise ValueError("every log weight is -inf: no sample has a finite energy")
    return log_w


def log_importance_weights(energy, log_prob) -> np.ndarray:
    """``log w = -u - log p_X``, shape (n,); samples with ``u = +inf`` get ``-inf``.

    Parameters
    ----------
    energy : array, shape (n,), kT
        Reduced target energies.
    log_prob : array, shape (n,)
        Generator log densities at the same samples.
    """
    u = _as_1d(energy, "energy")
    log_p = _as_1d(log_prob, "log_prob")
    if u.shape != log_p.shape:
        raise ValueError(f"energy and log_prob must have the same shape, got {u.shape} and {log_p.shape}")
    if np.isnan(u).any() or np.isnan(log_p).any():
        raise ValueError("energy and log_prob must not contain NaN; failed energies are +inf")
    with np.errstate(invalid="ignore"):
        return np.where(np.isposinf(u), -np.inf, -u - log_p)


def normalized_weights(log_w) -> np.ndarray:
    """Weights that sum to one, computed stably from log weights; shape (n,)."""
    log_w = _check_log_weights(log_w)
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def kish_ess(log_w) -> float:
    """Kish effective sample size as a fraction of the sample size, ``(sum w)^2 / (n sum w^2)``.

    Returns a number in ``(0, 1]``; 1 means all weights are equal.
    """
    w = normalized_weights(log_w)
    return float(1.0 / (w.size * np.sum(w * w)))


def weighted_mean(values, log_w) -> float:
    """Importance-weighted expectation ``sum w_i O_i / sum w_i``.

    Parameters
    ----------
    values : array, shape (n,)
    log_w : array, shape (n,)
    """
    values = _as_1d(values, "values")
    w = normalized_weights(log_w)
    if values.shape != w.shape:
        raise ValueError(f"values and log_w must have the same shape, got {values.shape} and {w.shape}")
    return float(np.sum(w[w > 0] * values[w > 0]))


def _bootstrap_indices(n: int, n_bootstrap: int, seed: int | np.random.Generator | None):
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    for _ in range(n_bootstrap):
        yield rng.integers(0, n, size=n)


@dataclass
class FreeEnergyProfile:
    """A free-energy profile ``F(r) = -log p(r)`` along a coordinate, in kT.

    ``p`` is the normalised probability density of the coordinate, so profiles from
    different estimators compare without any shift.

    Attributes
    ----------
    bin_edges : ndarray, shape (n_bins + 1,)
    bin_centers : ndarray, shape (n_bins,)
    free_energy : ndarray, shape (n_bins,), kT; ``inf`` in bins without weight
    error : ndarray, shape (n_bins,), kT; bootstrap standard error, ``nan`` where undefined
    counts : ndarray, shape (n_bins,)
        Number of samples in each bin.
    """

    bin_edges: np.ndarray
    bin_centers: np.ndarray
    free_energy: np.ndarray
    error: np.ndarray
    counts: np.ndarray


def _profile(r: np.ndarray, w: np.ndarray, edges: np.ndarray) -> np.ndarray:
    index = np.digitize(r, edges) - 1
    inside = (index >= 0) & (index < edges.size - 1)
    mass = np.bincount(index[inside], weights=w[inside], minlength=edges.size - 1)
    with np.errstate(divide="ignore"):
        return -np.log(mass / (w.sum() * np.diff(edges)))


def free_energy_profile(
    coordinate,
    log_w,
    bins: int | np.ndarray = 50,
    range: tuple[float, float] | None = None,
    n_bootstrap: int = 100,
    seed: int | np.random.Generator | None = 0,
) -> FreeEnergyProfile:
    """Reweighted free-energy profile along a coordinate with bootstrap errors.

    Parameters
    ----------
    coordinate : array, shape (n,)
        Value of the coordinate for each sample.
    log_w : array, shape (n,)
        Log importance weights; use zeros for samples that are already Boltzmann distributed.
    bins : int or array of edges
    range : (float, float), optional
        Lower and upper edge when ``bins`` is an int; default the data range.
    n_bootstrap : int
        Number of bootstrap resamples for the error (0 for none).
    seed : int or numpy Generator

    Returns
    -------
    FreeEnergyProfile
    """
    r = _as_1d(coordinate, "coordinate")
    log_w = _check_log_weights(log_w)
    if r.shape != log_w.shape:
        raise ValueError(f"coordinate and log_w must have the same shape, got {r.shape} and {log_w.shape}")
    if not np.isfinite(r).all():
        raise ValueError("coordinate holds non-finite values")
    edges = np.histogram_bin_edges(r, bins=bins, range=range)
    w = np.exp(log_w - log_w.max())
    f = _profile(r, w, edges)
    counts = np.histogram(r, bins=edges)[0]
    error = np.full(f.shape, np.nan)
    if n_bootstrap > 1:
        boot = np.array([_profile(r[i], w[i], edges) for i in _bootstrap_indices(r.size, n_bootstrap, seed)])
        finite = np.isfinite(boot)
        # Bins that some resamples leave empty have no meaningful error; report nan there.
        all_finite = finite.all(axis=0)
        error[all_finite] = boot[:, all_finite].std(axis=0, ddof=1)
    return FreeEnergyProfile(edges, 0.5 * (edges[1:] + edges[:-1]), f, error, counts)


def _delta_f(in_a: np.ndarray, in_b: np.ndarray, w: np.ndarray) -> float:
    """``-log(sum_B w / sum_A w)``; ``+inf`` / ``-inf`` when B / A holds no weight, ``nan`` when neither does."""
    mass_a, mass_b = float(w[in_a].sum()), float(w[in_b].sum())
    if mass_a == 0.0 or mass_b == 0.0:
        # a bootstrap resample can miss every sample of a small state; say so without a RuntimeWarning
        return float("nan") if mass_a == mass_b else (math.inf if mass_b == 0.0 else -math.inf)
    return math.log(mass_a) - math.log(mass_b)


def state_free_energy_difference(
    in_a,
    in_b,
    log_w,
    n_bootstrap: int = 200,
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """Free-energy difference ``F_B - F_A = -log(sum_B w / sum_A w)`` in kT, with a bootstrap error.

    Parameters
    ----------
    in_a, in_b : bool array, shape (n,)
        Indicator functions of the two states evaluated on the samples.
    log_w : array, shape (n,)
        Log importance weights (zeros for Boltzmann-distributed samples).
    n_bootstrap : int
    seed : int or numpy Generator

    Returns
    -------
    Estimate
        ``(value, error)`` in kT.  The error is ``inf`` when some bootstrap resample holds
        no weight in a state (the state has too few samples for any error); ``nan`` for
        fewer than 2 resamples.

    Raises
    ------
    ValueError
        If a state holds no sample with a nonzero weight.
    """
    log_w = _check_log_weights(log_w)
    in_a = np.asarray(in_a, dtype=bool)
    in_b = np.asarray(in_b, dtype=bool)
    if in_a.shape != log_w.shape or in_b.shape != log_w.shape:
        raise ValueError(f"state indicators must have shape {log_w.shape}, got {in_a.shape} and {in_b.shape}")
    w = np.exp(log_w - log_w.max())
    for name, ind in (("A", in_a), ("B", in_b)):
        if not (w[ind] > 0).any():
            raise ValueError(f"state {name} holds no sample with a finite weight ({int(ind.sum())} samples in it)")
    value = _delta_f(in_a, in_b, w)
    boot = np.array([_delta_f(in_a[i], in_b[i], w[i]) for i in _bootstrap_indices(w.size, n_bootstrap, seed)])
    if boot.size < 2:
        return Estimate(value, float("nan"))
    # Resamples that leave a state without weight have an infinite difference.  Dropping
    # them would keep only the lucky resamples and shrink the error; the honest error of
    # an estimate that a resample can make infinite is unbounded.
    error = float(boot.std(ddof=1)) if np.isfinite(boot).all() else math.inf
    return Estimate(value, error)
