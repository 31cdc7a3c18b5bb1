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

#: a leg of the two-sided estimate whose BAR overlap (pymbar) is below this gets a warning;
#: pymbar's own guidance for the overlap of neighbouring states
MIN_BAR_OVERLAP = 0.03


def bar_overlap(forward_work: np.ndarray, reverse_work: np.ndarray) -> float:
    """pymbar's overlap (0 to 1) between two ensembles from BAR works in kT in each direction."""
    from pymbar.other_estimators import bar_overlap as overlap

    return float(overlap(np.asarray(forward_work, dtype=np.float64), np.asarray(reverse_work, dtype=np.float64)))

__all__ = [
    "state_free_energy",
    "two_sided_state_free_energy",
    "decorrelated",
    "diagnostic_lines",
    "khat_line",
    "combine_trainings",
    "repeat_standard_error",
]

#: fewer decorrelated samples of a state than this make a two-sided estimate's leg unreliable
MIN_STATE_SAMPLES = 10


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


def decorrelated(series, name: str = "series") -> tuple[np.ndarray, float]:
    """The uncorrelated subsample of a time series, and its statistical inefficiency.

    The statistical inefficiency ``g`` (integrated autocorrelation time, in frames) comes
    from pymbar's ``timeseries.statistical_inefficiency`` (Chodera, Swope, Pitera, Seok &
    Dill, J. Chem. Theory Comput. 3, 26 (2007)); every ``g``-th frame is then kept, so a
    bootstrap that treats the kept frames as independent sees the right error.

    Parameters
    ----------
    series : array_like, shape (n,)
        The observable in time order, finite or ``+inf``.  ``+inf`` entries are replaced by
        the largest finite value when ``g`` is estimated, and kept in the subsample.
    name : str
        How messages call it.

    Returns
    -------
    (ndarray, float)
        The kept entries and ``g`` (1 for a constant or a very short series).
    """
    from pymbar import timeseries

    values = np.asarray(series, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one time series, shape (n,), got {values.shape}")
    if np.isnan(values).any() or np.isneginf(values).any():
        raise ValueError(f"{name} must be finite or +inf; it holds NaN or -inf")
    finite = np.isfinite(values)
    if values.size < 3 or finite.sum() < 3:
        return values, 1.0
    probe = np.where(finite, values, values[finite].max())
    if np.ptp(probe) == 0.0:
        return values, 1.0
    g = float(timeseries.statistical_inefficiency(probe))
    kept = np.asarray(timeseries.subsample_correlated_data(probe, g=g), dtype=int)
    return values[kept], g


def two_sided_state_free_energy(
    log_weight: np.ndarray,
    in_a: np.ndarray,
    in_b: np.ndarray,
    state_log_weights_a,
    state_log_weights_b,
    *,
    n_out_of_domain: int = 0,
    decorrelate: bool = True,
    n_bootstrap: int = 200,
    seed: int = 0,
    names: tuple[str, str] = ("A", "B"),
    warn: bool = True,
) -> dict[str, Any]:
    """``F_B - F_A`` in kT by BAR between the generator and samples of each state (e.g. MD).

    Importance weights alone (:func:`state_free_energy`) only see what the generator draws:
    a part of a state that the generator misses, or samples too rarely, is invisible to
    their bootstrap error.  This estimate is two-sided.  Within each state S it solves
    Bennett's acceptance ratio between the generator restricted to S and the Boltzmann
    distribution restricted to S, with the generator's samples in S as one side and
    samples of S itself (an MD trajectory held in S, say) as the other, through the
    latent state Z (Noé, Olsson, Köhler & Wu, Science 365, eaaw1147 (2019)):

    ``F_B - F_A = (F_B - F_Z) - (F_A - F_Z)``.

    Where the generator under-samples a region that the state's own samples visit,
    those samples' works are large and the BAR error grows with the missing overlap
    (Shirts, Bair, Hooker & Pande, Phys. Rev. Lett. 91, 140601 (2003)).  The samples of a
    state need only come from the Boltzmann distribution restricted to it; they may be
    correlated in time, and are thinned to independent ones first (:func:`decorrelated`).

    Parameters
    ----------
    log_weight, in_a, in_b : arrays, shape (n,)
        The generator's samples as for :func:`state_free_energy`: unnormalised log
        importance weights ``-u(x) - log p_X(x)`` (``-inf`` for a failed energy) and state
        indicators.
    state_log_weights_a, state_log_weights_b : array or sequence of arrays
        For each state, the same log weights ``-u(x) - log p_X(x)`` of its own samples
        (all lying in the state), as one time series or a sequence of them (one per
        trajectory, each in time order).  ``+inf`` where the generator cannot reach a
        sample (``p_X(x) = 0``).
    n_out_of_domain : int
        Generator samples drawn but not kept (zero weight), as in :func:`state_free_energy`.
    decorrelate : bool
        Thin each time series to independent samples (default); False when they are
        independent already.
    n_bootstrap : int
        Resamples of the generator's samples and each state's samples together.
    seed : int
    names : (str, str)
    warn : bool
        Also emit the warnings as :class:`UnreliableWeightsWarning`.

    Returns
    -------
    dict
        ``delta_f_kT``, ``error_kT`` (bootstrap; ``inf`` when a resample leaves a leg without
        a finite work), ``n_bootstrap``, ``n_a``, ``n_b`` (generator samples in each state),
        ``samples_a``, ``samples_b`` (each state's own samples after thinning),
        ``inefficiency_a``, ``inefficiency_b`` (the largest statistical inefficiency of the
        state's series, in frames), ``k_hat_forward_a``, ``k_hat_reverse_a`` and the same for
        ``b`` (Pareto k-hat of each leg's two directions: the generator's weights over its
        samples in the state, and ``p_X / p`` over the state's own samples; None for fewer
        than 25 samples), ``generator_share_a``, ``generator_share_b`` (generator samples in
        the state per own sample after thinning), ``overlap_a``, ``overlap_b`` (pymbar's BAR
        overlap of each leg, 0 to 1), ``reliable`` and ``warnings``.

    Notes
    -----
    BAR weighs each direction by its sample count.  With many more samples of a state than
    generator samples in it, a leg leans on the reverse direction, whose ratios ``p_X / p``
    are often heavy-tailed: the generator puts mass where the state's samples rarely go (the
    edge of a state, say).  The leg is then biased low by finite sampling, by several
    bootstrap errors on Mueller-Brown's rare state with 20,000 generator samples (a few
    hundred in the state) against tens of thousands of its own.  Drawing generator samples
    until each state holds about as many as it has own independent samples removes the
    bias there (``benchmarks/calibration.py``); a warning says so when the reverse k-hat is
    above its threshold and the generator's samples in the state are the fewer.

    A heavy tail of the generator's own weights (the forward k-hat) does not by itself
    spoil a leg: BAR counts each sample through a Fermi function, at most 1, so no single
    sample dominates.  On the toy target of ``tests/test_two_sided.py`` (generators of width
    0.3 to 20, 6 to 12 seeds each) the forward k-hat exceeded its threshold for every narrow
    generator while every estimate stayed within 2 errors of the exact answer; so did 24
    flagged runs of the toys' calibration (``benchmarks/results/calibration``).  What a leg
    needs is overlap between the generator's samples in the state and the state's own
    samples: the warning fires when pymbar's BAR overlap of a leg is below
    :data:`MIN_BAR_OVERLAP` (``overlap_a``, ``overlap_b``).

    Raises
    ------
    ValueError
        Mismatched shapes, NaN, or a state without generator samples or own samples.
    """
    from .free_energy import _bootstrap, _latent_bar_value

    in_a = np.asarray(in_a, dtype=bool)
    in_b = np.asarray(in_b, dtype=bool)
    log_w = np.asarray(log_weight, dtype=np.float64)
    if log_w.ndim != 1 or in_a.shape != log_w.shape or in_b.shape != log_w.shape:
        raise ValueError(f"log_weight, in_a and in_b must be 1-D of the same shape, got {log_w.shape}, {in_a.shape} and {in_b.shape}")
    if np.isnan(log_w).any() or np.isposinf(log_w).any():
        raise ValueError("the generator's log weights must be finite or -inf (a failed energy); they hold NaN or +inf")
    n_out_of_domain = ensure_count(n_out_of_domain, "n_out_of_domain", minimum=0)
    n_bootstrap = ensure_count(n_bootstrap, "n_bootstrap", minimum=2)
    pad = np.full(n_out_of_domain, np.inf)
    # works from Z into each state for the generator's samples: -log w inside, +inf outside
    z_to = {key: np.concatenate([np.where(mask, -log_w, np.inf), pad]) for key, mask in (("a", in_a), ("b", in_b))}
    to_z, stats, messages = {}, {}, []
    for key, name, given in (("a", names[0], state_log_weights_a), ("b", names[1], state_log_weights_b)):
        several = isinstance(given, (list, tuple)) and len(given) > 0 and all(np.ndim(one) >= 1 for one in given)
        series = list(given) if several else [given]
        kept, g_max = [], 1.0
        for k, one in enumerate(series):
            one = np.asarray(one, dtype=np.float64)
            label = f"the samples of state {name}" + (f" (series {k})" if len(series) > 1 else "")
            if one.ndim != 1:
                raise ValueError(f"{label} must be a 1-D series of log weights, got shape {one.shape}")
            if np.isnan(one).any() or np.isneginf(one).any():
                raise ValueError(f"{label} must have log weights finite or +inf (outside the generator's reach); they hold NaN or -inf")
            thinned, g = decorrelated(one, label) if decorrelate else (one, 1.0)
            kept.append(thinned)
            g_max = max(g_max, g)
        works = np.concatenate(kept) if kept else np.empty(0)
        if works.size == 0:
            raise ValueError(f"state {name} has no samples of its own: a two-sided estimate needs some (e.g. MD held in the state)")
        n_gen = int(np.isfinite(z_to[key]).sum())
        if n_gen == 0:
            raise ValueError(f"state {name} holds no generator sample with a finite weight; BAR has nothing to overlap with")
        to_z[key] = works  # works from the state to Z: +log w
        stats.update({f"n_{key}": n_gen, f"samples_{key}": int(works.size), f"inefficiency_{key}": g_max})
        # heavy tails in either direction of a leg: generator weights over its samples in the state, and the
        # generator-to-Boltzmann density ratios exp(-work) over the state's own samples
        # BAR leans on the side with more samples.  Leaning on the state's own samples is harmless while
        # their ratios p_X / p are light-tailed; heavy-tailed, they bias the leg low by finite sampling,
        # and more generator samples in the state remove the bias (benchmarks/calibration.py).
        stats[f"generator_share_{key}"] = n_gen / works.size
        forward, reverse = -z_to[key][np.isfinite(z_to[key])], -works[np.isfinite(works)]
        for direction, log_ratios in (("forward", forward), ("reverse", reverse)):
            enough = pareto_tail_size(log_ratios.size) >= 5
            stats[f"k_hat_{direction}_{key}"] = pareto_khat(log_ratios) if enough else None
        k_hat = stats[f"k_hat_reverse_{key}"]
        threshold = pareto_khat_threshold(reverse.size) if k_hat is not None else math.inf
        if k_hat is not None and k_hat > threshold and n_gen < works.size:
            messages.append(
                f"state {name}: BAR leans on the state's {works.size} own samples against {n_gen} generator samples in it, and the "
                f"generator-to-Boltzmann density ratios over them are heavy-tailed (Pareto k-hat {k_hat:.2f}, above {threshold:.2f}): "
                f"finite-sample bias the bootstrap cannot see; draw about {math.ceil(works.size / n_gen)}x more generator samples"
            )
        # BAR works of the leg in kT: generator -> state on the generator's samples, state -> generator on its own
        overlap = bar_overlap(forward, -reverse) if forward.size and reverse.size else 0.0
        stats[f"overlap_{key}"] = overlap
        if overlap < MIN_BAR_OVERLAP:
            messages.append(
                f"state {name}: the generator's samples in it and the state's own samples barely overlap (BAR overlap {overlap:.3f}, "
                f"below {MIN_BAR_OVERLAP}): this leg of BAR and its bootstrap error cannot be trusted"
            )
        if works.size < MIN_STATE_SAMPLES:
            messages.append(f"state {name} has {works.size} independent samples of its own (fewer than {MIN_STATE_SAMPLES}): its leg of BAR is unreliable")
        if n_gen < MIN_STATE_SAMPLES:
            messages.append(f"state {name} holds {n_gen} generator samples (fewer than {MIN_STATE_SAMPLES}): its leg of BAR is unreliable")

    pairs = np.stack([z_to["a"], z_to["b"]], axis=1)
    value = _latent_bar_value(pairs, to_z["a"], to_z["b"])
    if not math.isfinite(value):
        raise ValueError("a leg of BAR has no finite work in one direction: the generator and a state's samples do not overlap at all")
    error = _bootstrap(_latent_bar_value, [pairs, to_z["a"], to_z["b"]], n_bootstrap, seed, unbounded=True)
    if math.isinf(error):
        messages.append("the bootstrap error is unbounded: some resamples leave a leg of BAR without a finite work")
    if warn:
        for message in messages:
            warnings.warn(message, UnreliableWeightsWarning, stacklevel=2)
    return {"delta_f_kT": float(value), "error_kT": error, "n_bootstrap": n_bootstrap, **stats, "reliable": not messages, "warnings": messages}


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


def repeat_standard_error(values, coverage: float = 0.95) -> float:
    """Standard error of the mean of independent repeats, widened for their small number.

    With n repeats the spread is itself uncertain, and mean +- z * (sd / sqrt(n)) covers
    less than the normal ``coverage``.  The error returned is ``sd / sqrt(n)`` times
    ``t(q, n - 1) / z(q)``, ``q = (1 + coverage) / 2``, so that +- z(q) errors (2 for 95 %)
    cover the mean with probability ``coverage`` under Student's t: x1.62 for 4 repeats at
    95 %, x1.15 for 10.

    Parameters
    ----------
    values : array_like, shape (n,), n >= 2
    coverage : float in (0, 1)
        The two-sided coverage the error is calibrated for (0.95: two errors; 0.6827: one).

    Returns
    -------
    float
    """
    from scipy import stats

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 2:
        raise ValueError(f"a standard error over repeats needs at least 2 of them, got {values.size}")
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    q = 0.5 * (1.0 + coverage)
    return float(values.std(ddof=1) / math.sqrt(values.size) * stats.t.ppf(q, values.size - 1) / stats.norm.ppf(q))


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
        of freedom so that +- 2 errors cover 95 % even for few trainings
        (:func:`repeat_standard_error`); ``error_bootstrap``:
        the bootstrap errors propagated to the mean (infinite if one is); ``error``: the larger of the two;
        ``n``: the number of trainings.
    """
    values = np.asarray(values, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if values.ndim != 1 or values.shape != errors.shape:
        raise ValueError(f"values and errors must be 1-D arrays of the same length, got shapes {values.shape} and {errors.shape}")
    if values.size < 2:
        raise ValueError(f"combining trainings needs at least 2 of them, got {values.size}")
    if not (np.isfinite(values).all() and (errors >= 0).all()):
        raise ValueError(f"values must be finite and errors non-negative, got {values.tolist()} and {errors.tolist()}")
    n = values.size
    spread = repeat_standard_error(values)
    bootstrap = float(math.sqrt((errors**2).sum()) / n)
    return {"value": float(values.mean()), "error": max(spread, bootstrap), "error_spread": spread, "error_bootstrap": bootstrap, "n": n}
