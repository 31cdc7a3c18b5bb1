"""The free-energy difference of two states from importance weights, with the statistics a report needs.

A bootstrap error only sees the samples drawn; :func:`state_free_energy` therefore also
reports the Pareto k-hat of the weights and the effective samples in each state
(:mod:`openmm_bg.analysis.diagnostics`), and warns (:class:`UnreliableWeightsWarning`)
when they say the estimate cannot be trusted.  :func:`diagnostic_lines` formats them
as a report prints them.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .._validation import ensure_count
from .diagnostics import MIN_STATE_ESS, UnreliableWeightsWarning, pareto_khat, pareto_khat_threshold, pareto_tail_size, state_ess, weight_warnings
from .reweighting import kish_ess, state_free_energy_difference

__all__ = ["state_free_energy", "diagnostic_lines", "khat_line", "combine_trainings"]


def state_free_energy(
    log_weight: np.ndarray,
    in_a: np.ndarray,
    in_b: np.ndarray,
    *,
    n_out_of_domain: int = 0,
    n_bootstrap: int = 200,
    seed: int = 0,
    names: tuple[str, str] = ("A", "B"),
    min_state_ess: float = MIN_STATE_ESS,
    warn: bool = True,
) -> dict[str, Any]:
    """``F_B - F_A`` in kT from the samples' importance weights, with state statistics.

    Parameters
    ----------
    log_weight : array, shape (n,)
        Unnormalised log importance weights (``-inf`` for a failed energy).
    in_a, in_b : bool array, shape (n,)
        State indicators of the same samples.
    n_out_of_domain : int
        Further samples drawn but not kept (outside the coordinate domain, weight
        zero): they count in the ESS and take part in the bootstrap.
    n_bootstrap : int
        Resamples (over all samples drawn, out-of-domain ones included) for the error.
    seed : int
    names : (str, str)
        How messages call the states.
    min_state_ess : float
        Fewer effective samples in a state than this make a warning.
    warn : bool
        Also emit each warning as an :class:`UnreliableWeightsWarning` (a command that
        prints ``warnings`` itself turns this off).

    Returns
    -------
    dict
        ``delta_f_kT``, ``error_kT`` (bootstrap; ``inf`` when a resample leaves a state
        without weight), ``n_bootstrap``, ``kish_ess`` (fraction of all samples drawn),
        ``n_a``, ``n_b`` (samples in each state), ``ess_a``, ``ess_b`` (Kish effective
        sample sizes within each state), ``n_both`` (samples in both states),
        ``k_hat`` (Pareto k-hat of all weights drawn; ``nan`` if it could not be fitted,
        ``None`` for fewer than 25 samples), ``k_hat_threshold`` (above it the weights
        cannot be trusted; ``None`` likewise), ``reliable`` (no warning) and ``warnings``
        (list of str: why the estimate cannot be trusted, one sentence each).

    Raises
    ------
    ValueError
        When a state holds no sample with a finite weight.
    """
    in_a = np.asarray(in_a, dtype=bool)
    in_b = np.asarray(in_b, dtype=bool)
    log_w = np.asarray(log_weight, dtype=np.float64)
    n_out_of_domain = ensure_count(n_out_of_domain, "n_out_of_domain", minimum=0)
    n_requested = log_w.shape[0] + n_out_of_domain
    if in_a.shape != log_w.shape or in_b.shape != log_w.shape:
        raise ValueError(f"state indicators must have shape {log_w.shape}, got {in_a.shape} and {in_b.shape}")
    n_bootstrap = ensure_count(n_bootstrap, "n_bootstrap", minimum=2)
    finite = np.isfinite(log_w)
    # weights relative to the largest, as the estimator uses them; far below it they are zero in float64
    relative = np.exp(log_w - log_w[finite].max()) if finite.any() else np.zeros_like(log_w)
    stats: dict[str, Any] = {}
    for key, name, mask in (("a", names[0], in_a), ("b", names[1], in_b)):
        n_in, n_finite = int(mask.sum()), int((mask & finite).sum())
        if n_finite == 0:
            raise ValueError(
                f"state {name} contains no sample with a finite weight ({n_in} of {n_requested} samples lie in it"
                f"{', all with infinite energy' if n_in else ''}); the free-energy estimate would be meaningless"
            )
        if not (relative[mask] > 0).any():
            raise ValueError(
                f"state {name} contains no sample with a weight above 1e-308 of the largest ({n_in} of {n_requested} "
                "samples lie in it); its probability underflows and the free-energy estimate would be meaningless"
            )
        stats[f"n_{key}"] = n_in
        stats[f"ess_{key}"] = state_ess(log_w, mask)
    # zero-weight samples outside the coordinate domain take part in the bootstrap as they did in the draw
    pad = np.zeros(n_out_of_domain, dtype=bool)
    all_log_w = np.concatenate([log_w, np.full(n_out_of_domain, -np.inf)])
    estimate = state_free_energy_difference(
        np.concatenate([in_a, pad]), np.concatenate([in_b, pad]), all_log_w, n_bootstrap=n_bootstrap, seed=seed
    )
    # k-hat needs a tail of 5 weights; fewer samples than that say nothing about it
    enough = pareto_tail_size(n_requested) >= 5
    k_hat = pareto_khat(all_log_w) if enough else None
    messages = []
    if not enough:
        messages.append(f"only {n_requested} samples: too few to judge the weights (k-hat needs at least 25)")
    messages += weight_warnings(
        k_hat, n_requested, {names[0]: stats["ess_a"], names[1]: stats["ess_b"]}, min_state_ess=min_state_ess
    )
    if math.isinf(estimate.error):
        messages.append("the bootstrap error is unbounded: some resamples hold no weight in a state, which has too few samples")
    if warn:
        for message in messages:
            warnings.warn(message, UnreliableWeightsWarning, stacklevel=2)
    return {
        "delta_f_kT": float(estimate.value),
        "error_kT": float(estimate.error),
        "n_bootstrap": n_bootstrap,
        "kish_ess": kish_ess(all_log_w) if finite.any() else 0.0,
        **stats,
        "n_both": int((in_a & in_b).sum()),
        "k_hat": k_hat,
        "k_hat_threshold": pareto_khat_threshold(n_requested) if enough else None,
        "reliable": not messages,
        "warnings": messages,
    }


def khat_line(k_hat: float | None, n: int, width: int = 22) -> str:
    """One report line with the Pareto k-hat of ``n`` weights and how to read it (label padded to ``width`` characters)."""
    label = f"{'Pareto k-hat':<{width}}"
    if k_hat is None:
        return f"{label}not computed ({n} samples; it needs at least 25)"
    if math.isnan(k_hat):
        return f"{label}not fitted (fewer than 5 distinct large weights)"
    if k_hat == -math.inf:
        return f"{label}-inf (no tail: the largest weights are equal)"
    return f"{label}{k_hat:.2f} (weights trusted below {pareto_khat_threshold(n):.2f}; finite variance below 0.5)"


def diagnostic_lines(result: dict[str, Any], n: int, names: tuple[str, str] = ("A", "B")) -> list[str]:
    """The report lines of :func:`state_free_energy`'s diagnostics, one item a line.

    Parameters
    ----------
    result : dict
        Returned by :func:`state_free_energy`.
    n : int
        Samples drawn (those outside the coordinate domain included).
    names : (str, str)
        How the lines call the states.

    Returns
    -------
    list of str
        The k-hat line, one line per state with its samples and effective samples,
        then a ``warning`` line for each entry of ``result["warnings"]``.
    """
    lines = [khat_line(result["k_hat"], n)]
    for key, name in zip(("a", "b"), names):
        lines.append(f"{'state ' + key.upper():<22}{name}: {result[f'n_{key}']} samples, Kish ESS {result[f'ess_{key}']:.1f}")
    lines += [f"{'warning':<22}{message}" for message in result["warnings"]]
    return lines


def combine_trainings(values, errors) -> dict[str, float]:
    """One estimate from several independently trained generators, with an error that sees training variance.

    A generator's bootstrap error only sees its own samples: the part of configuration
    space it under-samples is invisible to it, and it changes from one training to the
    next.  Independently seeded trainings make that variance visible as their spread.

    Parameters
    ----------
    values : array_like, shape (n,)
        Each training's estimate (e.g. dF in kT), n >= 2.
    errors : array_like, shape (n,)
        Each one's own (bootstrap) error.

    Returns
    -------
    dict
        ``value``: the plain mean (the trainings are exchangeable); ``error_spread``: the
        standard error of the mean from the spread, scaled by Student's t for n - 1 degrees
        of freedom so that it is a one-sigma error even for few trainings; ``error_bootstrap``:
        the bootstrap errors propagated to the mean (infinite if one is); ``error``: the larger of the two;
        ``n``: the number of trainings.
    """
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if values.ndim != 1 or values.shape != errors.shape:
        raise ValueError(f"values and errors must be 1-D arrays of the same length, got shapes {values.shape} and {errors.shape}")
    if values.size < 2:
        raise ValueError(f"combining trainings needs at least 2 of them, got {values.size}")
    if not (np.isfinite(values).all() and (errors >= 0).all()):
        raise ValueError(f"values must be finite and errors non-negative, got {values.tolist()} and {errors.tolist()}")
    n = values.size
    t = float(stats.t.ppf(stats.norm.cdf(1.0), n - 1))
    spread = t * float(values.std(ddof=1)) / math.sqrt(n)
    bootstrap = float(math.sqrt((errors**2).sum()) / n)
    return {"value": float(values.mean()), "error": max(spread, bootstrap), "error_spread": spread, "error_bootstrap": bootstrap, "n": n}
