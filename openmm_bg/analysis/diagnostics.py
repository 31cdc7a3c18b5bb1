"""Can importance weights be trusted?  Diagnostics a bootstrap error cannot replace.

A bootstrap resamples the samples at hand: it cannot see the configurations the
generator never drew.  When the generator is too narrow, the importance weights
``w = exp(-u) / p_X`` have a heavy right tail, a handful of samples carry most of the
weight, and both the estimate and its bootstrap error are unreliable (the error is
usually far too small).  Two numbers say so:

* :func:`pareto_khat`, the shape ``k`` of a generalized Pareto distribution fitted to
  the largest weights (Vehtari, Simpson, Gelman, Yao & Gabry, "Pareto smoothed
  importance sampling", JMLR 25, 1 (2024), arXiv:1507.02646).  The weights have
  ``1/k`` finite moments: ``k < 1/2`` means a finite variance.  Above
  :func:`pareto_khat_threshold` (0.7, lower for small samples) the self-normalised
  estimate cannot be trusted, whatever its bootstrap error says.
* :func:`state_ess`, the Kish effective sample size of the weights inside a state;
  a state with fewer than :data:`MIN_STATE_ESS` effective samples is described by
  too few draws to give a free energy.

:func:`weight_warnings` turns them into the plain messages a report prints;
:class:`UnreliableWeightsWarning` is the warning category the estimators emit.
Numpy only; log weights are arrays of shape (n,), ``-inf`` for a zero weight.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "UnreliableWeightsWarning",
    "MIN_STATE_ESS",
    "pareto_khat",
    "pareto_khat_threshold",
    "generalized_pareto_fit",
    "pareto_tail_size",
    "state_ess",
    "weight_warnings",
]

#: fewer effective samples than this inside a state make its free energy unreliable
MIN_STATE_ESS = 10.0

#: the weakly informative prior of Vehtari et al. on the shape: a Gaussian centred on
#: 1/2 worth this many observations (it stabilises the fit of short tails)
_PRIOR_SHAPE, _PRIOR_OBSERVATIONS = 0.5, 10.0


class UnreliableWeightsWarning(UserWarning):
    """The importance weights cannot be trusted: heavy tail (k-hat) or too few effective samples in a state."""


def _log_weights(log_w) -> np.ndarray:
    if hasattr(log_w, "detach"):
        log_w = log_w.detach().cpu().numpy()
    log_w = np.asarray(log_w, dtype=np.float64)
    if log_w.ndim != 1:
        raise ValueError(f"log weights must be one-dimensional, shape (n,), got {log_w.shape}")
    if np.isnan(log_w).any() or np.isposinf(log_w).any():
        raise ValueError(f"log weights must be finite or -inf; they hold {int(np.isnan(log_w).sum())} NaN and {int(np.isposinf(log_w).sum())} +inf")
    return log_w


def generalized_pareto_fit(exceedances) -> tuple[float, float]:
    """Shape and scale of a generalized Pareto distribution fitted to positive exceedances.

    The empirical-Bayes posterior mean of Zhang & Stephens (Technometrics 51, 316
    (2009)), then shrunk towards ``k = 1/2`` by the weakly informative prior of
    Vehtari et al. (2024), worth 10 observations.  The density is
    ``f(x) = (1/sigma) (1 + k x / sigma)^(-1/k - 1)`` for ``x >= 0``.

    Parameters
    ----------
    exceedances : array, shape (m,)
        Values above the threshold minus the threshold; all positive and finite, ``m >= 5``.

    Returns
    -------
    k : float
        Shape (``k > 0``: a power-law tail with ``1/k`` finite moments).
    sigma : float
        Scale, in the units of the exceedances (that of the fit before the prior on ``k``).
    """
    x = np.sort(np.asarray(exceedances, dtype=np.float64))
    m = x.size
    if m < 5 or not np.isfinite(x).all() or x[0] <= 0:
        raise ValueError(f"the fit needs at least 5 positive, finite exceedances; got {m} with minimum {x.min() if m else None}")
    # Zhang & Stephens write the density with b = -k / sigma; for a fixed b the
    # likelihood is maximised in closed form by k(b) = -mean(log(1 - b x)), so the
    # profile log-likelihood is m (log(b / k(b)) + k(b) - 1) (their k has the opposite sign).
    # The b-grid is made of quantiles of their data-dependent prior, hence equal prior
    # mass per point: the posterior weights are the normalised likelihoods.
    n_grid = 30 + int(math.sqrt(m))
    first_quartile = x[int(m / 4 + 0.5) - 1]
    j = np.arange(1, n_grid + 1)
    b = 1.0 / x[-1] + (1.0 - np.sqrt(n_grid / (j - 0.5))) / (3.0 * first_quartile)
    with np.errstate(divide="ignore", invalid="ignore"):
        k_of_b = -np.mean(np.log1p(-np.outer(b, x)), axis=1)
        log_likelihood = m * (np.log(b / k_of_b) + k_of_b - 1.0)
    usable = np.isfinite(log_likelihood)  # b = 0 exactly (an exponential tail) gives 0/0
    posterior = np.exp(log_likelihood[usable] - log_likelihood[usable].max())
    b_mean = float(np.sum(b[usable] * posterior) / posterior.sum())
    k_zs = float(-np.mean(np.log1p(-b_mean * x)))
    sigma = k_zs / b_mean if b_mean != 0 else float(np.mean(x))
    shape = -k_zs  # back to the usual sign: positive for a heavy tail
    shape = (m * shape + _PRIOR_OBSERVATIONS * _PRIOR_SHAPE) / (m + _PRIOR_OBSERVATIONS)
    return float(shape), float(sigma)


def pareto_tail_size(n: int) -> int:
    """Number of largest weights the fit uses: ``M = min(n / 5, 3 sqrt(n))``, rounded up (Vehtari et al.)."""
    return int(math.ceil(min(0.2 * n, 3.0 * math.sqrt(n))))


def pareto_khat(log_w) -> float:
    """The Pareto-smoothed importance-sampling diagnostic k-hat of a set of weights.

    Fits a generalized Pareto distribution (:func:`generalized_pareto_fit`) to the
    ``M`` = :func:`pareto_tail_size` largest weights, measured from the largest weight
    left out.  ``k-hat`` estimates how heavy the tail of the weight distribution is:
    below 0.5 the weights have a finite variance and the central limit theorem applies;
    above :func:`pareto_khat_threshold` (0.7) no error estimate of a self-normalised
    average can be trusted.

    Parameters
    ----------
    log_w : array, shape (n,)
        Unnormalised log importance weights of all samples drawn (``-inf`` for zero weight);
        ``n >= 25``.  Only differences matter.

    Returns
    -------
    float
        k-hat.  ``-inf`` when none of the ``M`` largest weights exceeds the threshold (the
        largest weights are all equal: a bounded, flat top, e.g. equal weights);
        ``nan`` when fewer than 5 do (too few distinct large weights to fit, e.g. when
        nearly every weight is zero), which must be read as "cannot be trusted".

    Raises
    ------
    ValueError
        Fewer than 25 samples, weights that are NaN or ``+inf``, or no finite weight.
    """
    log_w = _log_weights(log_w)
    n = log_w.size
    m = pareto_tail_size(n)
    if m < 5:
        raise ValueError(f"k-hat needs at least 25 samples (a tail of 5 weights); got {n}")
    if np.isneginf(log_w).all():
        raise ValueError("every log weight is -inf: no sample has a finite weight")
    ordered = np.sort(log_w)
    tail, threshold = ordered[n - m:], ordered[n - m - 1]
    if np.isneginf(threshold):
        exceedances = np.exp(tail - tail[-1])
    else:
        # w_i - w_t = w_t (exp(d_i) - 1) with d_i = log w_i - log w_t, relative to the largest
        # weight and in logs: over thousands of kT, w_t underflows while exp(d_i) overflows
        d = tail - threshold
        with np.errstate(over="ignore", divide="ignore"):
            log_expm1 = np.where(d > 30.0, d + np.log1p(-np.exp(-d)), np.log(np.expm1(d)))
        exceedances = np.exp(threshold - tail[-1] + log_expm1)
    exceedances = exceedances[exceedances > 0]
    if exceedances.size == 0:
        return float("-inf")
    if exceedances.size < 5:
        return float("nan")
    return generalized_pareto_fit(exceedances)[0]


def pareto_khat_threshold(n: int) -> float:
    """The k-hat above which ``n`` weights cannot be trusted: ``min(1 - 1 / log10(n), 0.7)`` (Vehtari et al.)."""
    if n <= 10:
        raise ValueError(f"the k-hat threshold needs more than 10 samples; got {n}")
    return min(1.0 - 1.0 / math.log10(n), 0.7)


def state_ess(log_w, in_state) -> float:
    """Kish effective sample size of the weights inside a state, ``(sum_S w)^2 / sum_S w^2``.

    Parameters
    ----------
    log_w : array, shape (n,)
        Unnormalised log importance weights.
    in_state : bool array, shape (n,)
        Indicator of the state.

    Returns
    -------
    float
        Between 1 and the number of samples in the state with nonzero weight; 0 when the
        state holds no weight.
    """
    log_w = _log_weights(log_w)
    in_state = np.asarray(in_state)
    if in_state.shape != log_w.shape or in_state.dtype != bool:
        raise ValueError(f"in_state must be a bool array of shape {log_w.shape}, got {in_state.dtype} {in_state.shape}")
    inside = log_w[in_state]
    if inside.size == 0 or np.isneginf(inside).all():
        return 0.0
    w = np.exp(inside - inside.max())  # relative to the largest in the state: nothing underflows that matters
    return float(w.sum() ** 2 / np.sum(w * w))


def weight_warnings(k_hat: float | None, n: int, state_ess: dict[str, float] | None = None, min_state_ess: float = MIN_STATE_ESS) -> list[str]:
    """The plain messages that say why weights cannot be trusted (empty when they can).

    Parameters
    ----------
    k_hat : float or None
        From :func:`pareto_khat` of all ``n`` weights (``nan``: could not be fitted;
        None: not computed, no message about it).
    n : int
        Number of samples drawn.
    state_ess : dict, optional
        State name -> effective samples in it (:func:`state_ess`).
    min_state_ess : float
        Fewer effective samples than this in a state make a warning.

    Returns
    -------
    list of str
        One sentence per problem, without a prefix.
    """
    messages = []
    if k_hat is None:
        pass
    elif math.isnan(k_hat):
        messages.append(
            "Pareto k-hat could not be fitted (fewer than 5 distinct large weights): a few samples carry the weight, "
            "the estimate and its bootstrap error cannot be trusted"
        )
    elif k_hat > pareto_khat_threshold(n):
        messages.append(
            f"Pareto k-hat {k_hat:.2f} > {pareto_khat_threshold(n):.2f}: the weights are heavy-tailed, a few samples dominate; "
            "the estimate and its bootstrap error cannot be trusted (the generator misses part of the Boltzmann distribution)"
        )
    for name, ess in (state_ess or {}).items():
        if ess < min_state_ess:
            messages.append(
                f"state {name} has {ess:.1f} effective samples (fewer than {min_state_ess:g}): "
                "its free energy and the bootstrap error are unreliable"
            )
    return messages
