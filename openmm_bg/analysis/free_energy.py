r"""Free-energy estimators, in kT, returning :class:`~openmm_bg.analysis.reweighting.Estimate` (value, error).

* :func:`fep`: exponential averaging (Zwanzig), ``dF = -log <exp(-w)>``.
* :func:`bar`: Bennett's acceptance ratio between two states from forward and reverse works.
* :func:`bar_through_latent`: BAR between two *configurational* states A and B of the same
  thermodynamic state, through the latent Gaussian state Z (Noé, Olsson, Köhler & Wu,
  Science 365, eaaw1147 (2019)):
  ``F_B - F_A = (F_B - F_Z) - (F_A - F_Z)``.  A and B need not overlap in x; each overlaps Z.
* :func:`macrostate_free_energy`: ``F_B = -log int_B exp(-u) dx`` from generator samples
  alone, which needs only the prior's normalisation (M. Sadeghi, *Boltzmann Generators –
  Theory*, notes (2019), section 1.2.7).
* :func:`kl_bound`: ``F <= E_{p_X}[u + log p_X]``, the free energy of the generator's
  own distribution, an upper bound on the true one (Sadeghi (2019), section 1.1).
* :func:`mbar`: MBAR through pymbar for several thermodynamic states, as
  :class:`StateFreeEnergies` (an ``Estimate`` per state, as arrays).

BAR is solved here rather than through ``pymbar.other_estimators.bar``: states defined by
indicator functions give works of ``+inf`` for samples outside the state, where pymbar
gives up and returns 0.  Where works are finite, the two agree (see the tests).
Errors are bootstrap standard deviations unless stated otherwise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.optimize import brentq
from scipy.special import logsumexp

from .._validation import ensure_count
from .reweighting import Estimate, _as_1d

__all__ = ["fep", "bar", "latent_works", "bar_through_latent", "macrostate_free_energy", "kl_bound", "mbar", "StateFreeEnergies"]


def _works(w, name: str) -> np.ndarray:
    w = _as_1d(w, name)
    if w.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(w).any() or np.isneginf(w).any():
        raise ValueError(f"{name} must be finite or +inf (a sample outside the target state); it holds NaN or -inf")
    return w


def _fep_value(w: np.ndarray) -> float:
    return float(-(logsumexp(-w) - math.log(w.size)))


def _bootstrap(statistic, arrays: list[np.ndarray], n_bootstrap: int, seed, unbounded: bool = False) -> float:
    """Standard deviation of ``statistic`` over resamples of ``arrays`` (each resampled along its first axis).

    Resamples whose statistic is not finite are dropped, or with ``unbounded`` make the
    error ``inf`` (a resample that leaves an estimator without data says the error is unknown).
    """
    if ensure_count(n_bootstrap, "n_bootstrap", minimum=0) < 2:
        return float("nan")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    values = []
    for _ in range(n_bootstrap):
        resampled = [a[rng.integers(0, a.shape[0], a.shape[0])] for a in arrays]
        values.append(statistic(*resampled))
    values = np.asarray(values)
    if unbounded and not np.isfinite(values).all():
        return math.inf
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


def fep(work, n_bootstrap: int = 200, seed=0) -> Estimate:
    """Exponential averaging: ``dF = -log mean(exp(-w))`` for works ``w = u_target - u_sampled``.

    Parameters
    ----------
    work : array, shape (n,), kT
        Reduced works of samples drawn from the starting state; ``+inf`` for samples
        impossible in the target state.
    n_bootstrap : int
    seed : int or numpy Generator
    """
    w = _works(work, "work")
    if np.isposinf(w).all():
        raise ValueError("every work is +inf: no sample lies in the target state")
    return Estimate(_fep_value(w), _bootstrap(_fep_value, [w], n_bootstrap, seed))


def _bar_value(w_f: np.ndarray, w_r: np.ndarray) -> float:
    m = math.log(w_f.size / w_r.size)

    def imbalance(df: float) -> float:
        # log sum_F fermi(M + w_F - dF) - log sum_R fermi(-M + w_R + dF); increases with dF
        return logsumexp(-np.logaddexp(0.0, m + w_f - df)) - logsumexp(-np.logaddexp(0.0, -m + w_r + df))

    finite_f, finite_r = w_f[np.isfinite(w_f)], w_r[np.isfinite(w_r)]
    if finite_f.size == 0 or finite_r.size == 0:
        return float("nan")
    lo = min(finite_f.min(), -finite_r.max()) - 1.0
    hi = max(finite_f.max(), -finite_r.min()) + 1.0
    while imbalance(lo) > 0:
        lo -= 2 * (hi - lo)
    while imbalance(hi) < 0:
        hi += 2 * (hi - lo)
    return float(brentq(imbalance, lo, hi, xtol=1e-12, rtol=1e-14))


def bar(w_forward, w_reverse, n_bootstrap: int = 200, seed=0) -> Estimate:
    """Bennett acceptance ratio ``dF = F_1 - F_0`` from forward and reverse works.

    Parameters
    ----------
    w_forward : array, shape (n_0,), kT
        ``u_1(x) - u_0(x)`` for samples of state 0 (``+inf`` where state 1 excludes ``x``).
    w_reverse : array, shape (n_1,), kT
        ``u_0(x) - u_1(x)`` for samples of state 1.
    n_bootstrap : int
    seed : int or numpy Generator
    """
    w_f, w_r = _works(w_forward, "w_forward"), _works(w_reverse, "w_reverse")
    value = _bar_value(w_f, w_r)
    if not math.isfinite(value):
        raise ValueError("BAR needs at least one finite work in each direction: the two states do not overlap")
    return Estimate(value, _bootstrap(_bar_value, [w_f, w_r], n_bootstrap, seed))


def latent_works(u_x, u_z, ladj_xz) -> np.ndarray:
    """Works between the latent state Z and a configurational state.

    For a pair ``(x, z)`` related by the flow, the work of mapping a Z sample to ``x`` is
    ``u(x) - u_Z(z) + log|det dz/dx|``, and the work of mapping an ``x`` sample to ``z``
    is its negative.

    Parameters
    ----------
    u_x : array, shape (n,), kT
        Reduced energy of the configurational state at ``x`` (``+inf`` outside it).
    u_z : array, shape (n,), kT
        Prior energy at ``z`` including its normalisation, ``-log q_Z(z)``.
    ladj_xz : array, shape (n,)
        ``log|det dz/dx|`` at ``x``.

    Returns
    -------
    ndarray, shape (n,)
        Works from Z to the configurational state.
    """
    u_x, u_z, ladj = (_as_1d(a, n) for a, n in ((u_x, "u_x"), (u_z, "u_z"), (ladj_xz, "ladj_xz")))
    if not (u_x.shape == u_z.shape == ladj.shape):
        raise ValueError(f"u_x, u_z and ladj_xz must have the same shape, got {u_x.shape}, {u_z.shape}, {ladj.shape}")
    return u_x - u_z + ladj


def bar_through_latent(
    z_to_a,
    a_to_z,
    z_to_b,
    b_to_z,
    n_bootstrap: int = 200,
    seed=0,
) -> Estimate:
    """``F_B - F_A`` between two configurational states through the latent state Z.

    Parameters
    ----------
    z_to_a : array, shape (n_z,), kT
        Works from Z to A for generator samples (:func:`latent_works` with ``u_A``, which is
        ``+inf`` for samples outside A).
    a_to_z : array, shape (n_a,), kT
        Works from A to Z for samples of A (e.g. MD in A): ``-latent_works(u, u_Z, ladj)``.
    z_to_b, b_to_z : arrays
        The same for state B; ``z_to_b`` uses the same generator samples as ``z_to_a``.
    n_bootstrap : int
        Resamples of all three sample sets together, so that the shared Z samples'
        correlation enters the error.
    seed : int or numpy Generator
    """
    za, az, zb, bz = (_works(a, n) for a, n in ((z_to_a, "z_to_a"), (a_to_z, "a_to_z"), (z_to_b, "z_to_b"), (b_to_z, "b_to_z")))
    if za.shape != zb.shape:
        raise ValueError(f"z_to_a and z_to_b must come from the same generator samples, got shapes {za.shape} and {zb.shape}")

    pairs = np.stack([za, zb], axis=1)
    value = _latent_bar_value(pairs, az, bz)
    if not math.isfinite(value):
        raise ValueError("each state needs generator samples inside it and samples of its own: a BAR leg has no finite work")
    return Estimate(value, _bootstrap(_latent_bar_value, [pairs, az, bz], n_bootstrap, seed))


def _latent_bar_value(z_pairs: np.ndarray, a_to_z: np.ndarray, b_to_z: np.ndarray) -> float:
    """``F_B - F_A`` through Z: columns of ``z_pairs`` are the works from Z into A and into B of the same samples."""
    return _bar_value(z_pairs[:, 1], b_to_z) - _bar_value(z_pairs[:, 0], a_to_z)


def macrostate_free_energy(log_w, in_state=None, n_bootstrap: int = 200, seed=0) -> Estimate:
    """Absolute free energy of a macrostate, ``F_B = -log int_B exp(-u(x)) dx``, from generator samples.

    With normalised generator log densities, ``exp(log_w) = exp(-u) / p_X`` averages to the
    partition function over the samples in B (M. Sadeghi, *Boltzmann Generators – Theory*,
    notes (2019), eq. 39): no reference sample of any state is needed, only the prior's
    normalisation, which ``log_prob`` includes.

    Parameters
    ----------
    log_w : array, shape (n,)
        ``-u - log p_X`` with the *normalised* generator log density (as in
        :class:`~openmm_bg.generator.GeneratorSample`).
    in_state : bool array, shape (n,), optional
        Indicator of B; default the whole space.
    n_bootstrap : int
    seed : int or numpy Generator
    """
    log_w = _as_1d(log_w, "log_w")
    if np.isnan(log_w).any() or np.isposinf(log_w).any():
        raise ValueError("log_w must be finite or -inf")
    mask = np.ones(log_w.shape, bool) if in_state is None else np.asarray(in_state, bool)
    if mask.shape != log_w.shape:
        raise ValueError(f"in_state must have shape {log_w.shape}, got {mask.shape}")
    masked = np.where(mask, log_w, -np.inf)
    if np.isneginf(masked).all():
        raise ValueError("no generator sample with a finite weight lies in the state")
    return fep(-masked, n_bootstrap, seed)


def kl_bound(energy, log_prob, n_bootstrap: int = 200, seed=0) -> Estimate:
    """``E_{p_X}[u + log p_X]``: the generator's free energy, an upper bound on ``F = -log Z``.

    Equal to the true ``F`` only when the generator is exact; the gap is ``KL(p_X || mu)``.

    Parameters
    ----------
    energy : array, shape (n,), kT
    log_prob : array, shape (n,)
        Normalised generator log densities at the same samples.
    """
    u, log_p = _as_1d(energy, "energy"), _as_1d(log_prob, "log_prob")
    if u.shape != log_p.shape:
        raise ValueError(f"energy and log_prob must have the same shape, got {u.shape} and {log_p.shape}")
    values = u + log_p
    mean = lambda v: float(v.mean())
    return Estimate(mean(values), _bootstrap(mean, [values], n_bootstrap, seed))


class StateFreeEnergies(NamedTuple):
    """Free energies of K thermodynamic states relative to the first, with their errors.

    The per-state counterpart of :class:`~openmm_bg.analysis.reweighting.Estimate`:
    the same two fields, as arrays over the states.

    Attributes
    ----------
    value : ndarray, shape (K,), kT
        ``F_k - F_0``; ``value[0]`` is 0.
    error : ndarray, shape (K,), kT
        Standard errors of ``value``; ``error[0]`` is 0.
    """

    value: np.ndarray
    error: np.ndarray

    def difference(self, k: int) -> Estimate:
        """``F_k - F_0`` as an :class:`~openmm_bg.analysis.reweighting.Estimate`."""
        return Estimate(float(self.value[k]), float(self.error[k]))


def mbar(u_kn, N_k, n_bootstrap: int = 0, seed: int | None = 0) -> StateFreeEnergies:
    """MBAR free energies of K thermodynamic states relative to the first, through pymbar.

    Parameters
    ----------
    u_kn : array, shape (K, N), kT
        Reduced energy of every sample in every state.
    N_k : array, shape (K,)
        Samples drawn from each state, in the order of the columns of ``u_kn``.
    n_bootstrap : int
        With 0, pymbar's analytic errors; otherwise bootstrap errors over that many resamples.
    seed : int

    Returns
    -------
    StateFreeEnergies
        ``value`` (``F_k - F_0``) and ``error``, each shape (K,), kT.
    """
    import pymbar

    n_bootstrap = ensure_count(n_bootstrap, "n_bootstrap", minimum=0)
    u_kn = np.asarray(u_kn, dtype=np.float64)
    N_k = np.asarray(N_k, dtype=int)
    if u_kn.ndim != 2 or N_k.shape != (u_kn.shape[0],) or N_k.sum() != u_kn.shape[1]:
        raise ValueError(f"u_kn must have shape (K, sum(N_k)); got u_kn {u_kn.shape} and N_k {N_k.tolist()}")
    if not np.isfinite(u_kn).all():
        raise ValueError("u_kn holds non-finite reduced energies")
    solver = pymbar.MBAR(u_kn, N_k, n_bootstraps=n_bootstrap, rseed=seed)
    method = "bootstrap" if n_bootstrap > 1 else None  # None: pymbar's default analytic estimate
    result = solver.compute_free_energy_differences(uncertainty_method=method)
    return StateFreeEnergies(np.asarray(result["Delta_f"][0]), np.asarray(result["dDelta_f"][0]))
