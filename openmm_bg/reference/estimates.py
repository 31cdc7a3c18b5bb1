"""Reference free energies and populations from parallel tempering and plain MD.

Errors come from the data, not from MBAR's asymptotic formula: time series of
parallel tempering are correlated over many iterations (a replica carries its
conformation through the ladder), so MBAR's analytic error is far too small.  We
use independent repeats and a block bootstrap over iterations, stratified by repeat.

Array names follow pymbar: ``u_kn`` reduced potentials of every sample ``n`` in every
state ``k`` (kT), ``N_k`` samples drawn from state ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._validation import ensure_count
from ..analysis.states import repeat_standard_error
from ..units import kt_kjmol

__all__ = [
    "mbar_log_populations",
    "TemperingFreeEnergy",
    "tempering_free_energy_difference",
    "block_average",
    "cold_replica_mean_energy",
    "combine_exact_estimates",
    "block_length_warning",
    "bootstrap_errors_by_block_length",
]


def mbar_log_populations(
    u_kn: np.ndarray, N_k: np.ndarray, indicators: np.ndarray, target_state: int = 0, initial_f_k: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Log-populations of sets of configurations in one thermodynamic state, by MBAR.

    Parameters
    ----------
    u_kn : ndarray, shape (n_states, n_samples), kT
        Reduced potential of every sample in every state; samples ordered by the state
        they were drawn from, ``N_k[0]`` from state 0 first.
    N_k : int ndarray, shape (n_states,)
    indicators : bool ndarray, shape (n_sets, n_samples)
        Membership of each sample in each set (e.g. each metastable state).
    target_state : int
        The thermodynamic state whose populations are wanted.
    initial_f_k : ndarray, shape (n_states,), optional
        Starting guess for the state free energies (speeds up bootstrap samples).

    Returns
    -------
    log_p : ndarray, shape (n_sets,)
        Natural log of the probability of each set in ``target_state``; ``-inf`` if no sample.
    f_k : ndarray, shape (n_states,), kT
        MBAR state free energies, relative to state 0.
    """
    from pymbar import MBAR

    u_kn = np.asarray(u_kn, dtype=np.float64)
    N_k = np.asarray(N_k, dtype=np.int64)
    indicators = np.atleast_2d(np.asarray(indicators, dtype=bool))
    if u_kn.ndim != 2 or u_kn.shape[0] != len(N_k) or u_kn.shape[1] != N_k.sum():
        raise ValueError(f"u_kn must have shape (len(N_k), sum(N_k)) = ({len(N_k)}, {N_k.sum()}), got {u_kn.shape}")
    if indicators.shape[1] != u_kn.shape[1]:
        raise ValueError(f"indicators must have {u_kn.shape[1]} columns (one per sample), got {indicators.shape}")
    mbar = MBAR(u_kn, N_k, initial_f_k=initial_f_k, verbose=False)
    f_k = np.asarray(mbar.f_k, dtype=np.float64)
    # log weight of each sample in the target state: -u_target - log sum_k N_k exp(f_k - u_k)
    log_denominator = _logsumexp(np.log(N_k)[:, None] + f_k[:, None] - u_kn, axis=0)
    log_w = -u_kn[target_state] - log_denominator
    log_w -= _logsumexp(log_w, axis=0)
    log_p = np.array([_logsumexp(log_w[mask], axis=0) if mask.any() else -np.inf for mask in indicators])
    return log_p, f_k


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    a = np.asarray(a)
    m = np.max(a, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


@dataclass
class TemperingFreeEnergy:
    """A free-energy difference from parallel-tempering repeats, with data-driven errors.

    Attributes
    ----------
    delta_f : float, kT
        ``F(B) - F(A) = -ln(p_B / p_A)`` in the target state, from all repeats pooled.
    bootstrap_error : float, kT
        Standard deviation over block-bootstrap resamples (blocks drawn within each repeat).
    repeat_estimates : ndarray, shape (n_repeats,), kT
        The same estimate from each repeat alone.
    repeat_error : float, kT
        Standard error of the mean of ``repeat_estimates`` (NaN with one repeat).
    block_length : int
        Iterations per bootstrap block.
    n_bootstrap : int
    n_samples_per_state : int
        Iterations used from each repeat (after discarding equilibration), times repeats.
    """

    delta_f: float
    bootstrap_error: float
    repeat_estimates: np.ndarray
    repeat_error: float
    block_length: int
    n_bootstrap: int
    n_samples_per_state: int
    bootstrap_samples: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    @property
    def error(self) -> float:
        """The larger of the bootstrap and repeat errors, kT: the one to quote."""
        return float(np.nanmax([self.bootstrap_error, self.repeat_error]))


def _pool(u_list, in_a_list, in_b_list, selections):
    """Stack the selected iterations of each repeat into MBAR's u_kn / N_k layout."""
    us, a_s, b_s = [], [], []
    for u, a, b, sel in zip(u_list, in_a_list, in_b_list, selections):
        us.append(u[sel])
        a_s.append(a[sel])
        b_s.append(b[sel])
    u = np.concatenate(us)  # (n_iter_total, n_states sampled, n_states evaluated)
    a = np.concatenate(a_s)
    b = np.concatenate(b_s)
    n_iter, n_states, _ = u.shape
    # sample (i, k) drawn from state k; order samples by state
    u_kn = u.transpose(2, 1, 0).reshape(n_states, n_states * n_iter)
    indicators = np.stack([a.T.reshape(-1), b.T.reshape(-1)])
    return u_kn, np.full(n_states, n_iter), indicators


def tempering_free_energy_difference(
    reduced_potentials: list[np.ndarray],
    in_a: list[np.ndarray],
    in_b: list[np.ndarray],
    *,
    target_state: int = 0,
    block_length: int = 500,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> TemperingFreeEnergy:
    """``F(B) - F(A)`` in one state of a parallel-tempering ladder, from one or more repeats.

    Parameters
    ----------
    reduced_potentials : list of ndarray, each shape (n_iterations_r, n_states, n_states), kT
        Per repeat, ``u[i, k, l]``: reduced potential in state ``l`` of the configuration
        in state ``k`` at iteration ``i`` (equilibration already removed).
    in_a, in_b : list of bool ndarray, each shape (n_iterations_r, n_states)
        Membership of the configuration in state ``k`` at iteration ``i`` in sets A and B.
    target_state : int
        Index of the thermodynamic state (e.g. the 300 K replica).
    block_length : int
        Bootstrap block length in iterations; choose it longer than the correlation time.
    n_bootstrap : int
    seed : int

    Returns
    -------
    TemperingFreeEnergy
    """
    block_length = ensure_count(block_length, "block_length")
    n_bootstrap = ensure_count(n_bootstrap, "n_bootstrap", 2)
    if not (len(reduced_potentials) == len(in_a) == len(in_b)) or not reduced_potentials:
        raise ValueError("reduced_potentials, in_a and in_b must be non-empty lists of the same length (one per repeat)")
    for r, (u, a, b) in enumerate(zip(reduced_potentials, in_a, in_b)):
        if u.ndim != 3 or u.shape[1] != u.shape[2] or a.shape != u.shape[:2] or b.shape != u.shape[:2]:
            raise ValueError(
                f"repeat {r}: expected u (n_iterations, n_states, n_states) and indicators (n_iterations, n_states), "
                f"got {u.shape}, {a.shape}, {b.shape}"
            )
        if len(u) < 2 * block_length:
            raise ValueError(f"repeat {r} has {len(u)} iterations, fewer than two blocks of {block_length}")

    def estimate(selections, initial_f_k=None):
        u_kn, N_k, indicators = _pool(reduced_potentials, in_a, in_b, selections)
        log_p, f_k = mbar_log_populations(u_kn, N_k, indicators, target_state, initial_f_k)
        return float(log_p[0] - log_p[1]), f_k

    full = [np.arange(len(u)) for u in reduced_potentials]
    delta_f, f_k = estimate(full)
    repeats = np.array([estimate([full[r] if q == r else full[q][:0] for q in range(len(full))], f_k)[0]
                        for r in range(len(full))]) if len(full) > 1 else np.array([delta_f])
    rng = np.random.default_rng(seed)
    boot = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        selections = []
        for u in reduced_potentials:
            n_blocks = len(u) // block_length
            starts = rng.integers(0, n_blocks, size=n_blocks) * block_length
            selections.append((starts[:, None] + np.arange(block_length)[None]).reshape(-1))
        boot[b] = estimate(selections, f_k)[0]
    repeat_error = float(np.std(repeats, ddof=1) / np.sqrt(len(repeats))) if len(repeats) > 1 else float("nan")
    return TemperingFreeEnergy(
        delta_f=delta_f,
        bootstrap_error=float(np.std(boot[np.isfinite(boot)], ddof=1)),
        repeat_estimates=repeats,
        repeat_error=repeat_error,
        block_length=block_length,
        n_bootstrap=n_bootstrap,
        n_samples_per_state=int(sum(len(u) for u in reduced_potentials)),
        bootstrap_samples=boot,
    )


def block_average(values: np.ndarray, n_blocks: int = 10) -> tuple[float, float]:
    """Mean of a time series and its standard error from non-overlapping blocks.

    Parameters
    ----------
    values : ndarray, shape (n_samples,)
        Time series (e.g. a state indicator as 0/1).
    n_blocks : int
        Equal blocks; the tail that does not fill a block is dropped.

    Returns
    -------
    mean : float
        Mean over all samples.
    error : float
        Standard deviation of the block means over ``sqrt(n_blocks)``.
    """
    n_blocks = ensure_count(n_blocks, "n_blocks", 2)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2 * n_blocks:
        raise ValueError(f"need a 1-D series with at least 2 * n_blocks = {2 * n_blocks} samples, got shape {values.shape}")
    size = len(values) // n_blocks
    means = values[: size * n_blocks].reshape(n_blocks, size).mean(axis=1)
    return float(values.mean()), float(means.std(ddof=1) / np.sqrt(n_blocks))


def cold_replica_mean_energy(samples: dict, in_state, discard: int = 0) -> np.ndarray:
    """Mean reduced potential energy of the lowest-temperature replica within a state, per repeat.

    Parameters
    ----------
    samples : dict
        Tempering samples in state order, as :func:`openmm_bg.reference.load_tempering_samples`
        returns them (``potential_energy`` in kJ/mol, ``temperatures`` in K, and the
        collective variables ``in_state`` reads).
    in_state : callable
        ``in_state(samples)`` -> boolean array of shape (n_repeats, n_iterations) for the
        lowest temperature, e.g. ``lambda s: s["phi"][:, :, 0] < 0``.
    discard : int
        Leading iterations of each repeat left out (equilibration).

    Returns
    -------
    ndarray, shape (n_repeats,)
        ``<U / kT>`` at the lowest temperature over the kept iterations in the state.
    """
    u = samples["potential_energy"][:, discard:, 0].astype(np.float64) / kt_kjmol(float(samples["temperatures"][0]))
    inside = np.asarray(in_state(samples), dtype=bool)
    if inside.shape != samples["potential_energy"].shape[:2]:
        raise ValueError(f"in_state must give shape {samples['potential_energy'].shape[:2]} (repeat, iteration), got {inside.shape}")
    inside = inside[:, discard:]
    if not inside.any(axis=1).all():
        raise ValueError("a repeat has no kept iteration in the state; its mean energy is undefined")
    return np.array([u[r][inside[r]].mean() for r in range(len(u))])


def combine_exact_estimates(estimates: dict[str, dict], min_repeats: int = 4) -> dict:
    """One reference from independent exact methods, with their agreement checked.

    Each method's error is the larger of its own (bootstrap) error and the standard error
    of its independent repeats (scaled by ``t(0.975, n - 1) / 1.96``, Student's t, so that
    two errors cover 95 % with only a few repeats), so a bootstrap that misses slow
    correlations cannot make it small.  The combined value is the inverse-variance mean; its error is the larger of the
    inverse-variance error and half the largest difference between two methods.  Methods
    agree when every pair differs by at most two combined standard errors.

    Parameters
    ----------
    estimates : dict
        method name -> ``{"delta_f_kT", "error_kT", "repeat_estimates_kT"}`` (kT).
    min_repeats : int
        Independent repeats each method needs (issue 16 asks for 4).

    Returns
    -------
    dict
        ``delta_f_kT``, ``error_kT``, ``methods`` (name -> value, error, repeat standard
        error, number of repeats), ``pairwise_z`` ("a vs b" -> z) and ``methods_agree``.

    Raises
    ------
    ValueError
        Fewer than two methods, fewer than ``min_repeats`` repeats, or a non-finite value.
    """
    if len(estimates) < 2:
        raise ValueError(f"an exact reference needs at least two independent methods, got {len(estimates)}")
    methods = {}
    for name, record in estimates.items():
        repeats = np.asarray(record.get("repeat_estimates_kT", []), dtype=np.float64)
        if repeats.size < min_repeats:
            raise ValueError(f"method {name!r} has {repeats.size} independent repeats; at least {min_repeats} are needed")
        value, error = float(record["delta_f_kT"]), float(record["error_kT"])
        if not (np.isfinite(repeats).all() and np.isfinite(value) and np.isfinite(error) and error > 0):
            raise ValueError(f"method {name!r} has a non-finite value or error, or a non-positive error")
        # with a few repeats their standard error is itself uncertain: +-2 errors cover 95 %
        repeat_error = repeat_standard_error(repeats)
        methods[name] = {"delta_f_kT": value, "error_kT": max(error, repeat_error), "own_error_kT": error,
                         "repeat_standard_error_kT": repeat_error, "n_repeats": int(repeats.size)}
    values = np.array([m["delta_f_kT"] for m in methods.values()])
    errors = np.array([m["error_kT"] for m in methods.values()])
    weights = 1.0 / errors**2
    mean = float(np.sum(weights * values) / weights.sum())
    names = list(methods)
    pairwise = {f"{a} vs {b}": float((methods[a]["delta_f_kT"] - methods[b]["delta_f_kT"])
                                     / np.hypot(methods[a]["error_kT"], methods[b]["error_kT"]))
                for i, a in enumerate(names) for b in names[i + 1:]}
    error = max(float(1.0 / np.sqrt(weights.sum())), float(values.max() - values.min()) / 2)
    return {"delta_f_kT": mean, "error_kT": error, "methods": methods, "pairwise_z": pairwise,
            "methods_agree": bool(all(abs(z) <= 2 for z in pairwise.values()))}


def block_length_warning(errors_by_length: dict, tolerance: float = 0.15) -> str | None:
    """A plain warning when a block bootstrap's error has not levelled off with the block length.

    Blocks shorter than the correlation time make the bootstrap error too small; it then
    keeps growing as the blocks grow.  Independent repeats still see the full error.

    Parameters
    ----------
    errors_by_length : dict
        block length (int, or a string of one) -> bootstrap error.
    tolerance : float
        Largest relative growth from the second-longest to the longest block still read as levelled off.

    Returns
    -------
    str or None
        The warning, or None if the longest two blocks agree (or fewer than two were tried).
    """
    pairs = sorted((int(k), float(v)) for k, v in errors_by_length.items())
    if len(pairs) < 2:
        return None
    (short, e_short), (long, e_long) = pairs[-2], pairs[-1]
    if not (np.isfinite(e_short) and np.isfinite(e_long)) or e_short <= 0:
        return f"the block-bootstrap errors are not usable ({dict(pairs)}); trust only the spread of independent repeats"
    if e_long > (1.0 + tolerance) * e_short:
        return (f"the block-bootstrap error still grows with the block length ({e_short:.3g} at {short}, {e_long:.3g} at {long}): "
                "correlations outlast the blocks, so the bootstrap error is too small; the spread of independent repeats sets the error")
    return None


def bootstrap_errors_by_block_length(
    reduced_potentials, in_a, in_b, block_length: int, n_bootstrap: int, seed: int, n_iterations: int, thin: int = 1,
) -> tuple[TemperingFreeEnergy, dict[str, float], str | None]:
    """:func:`tempering_free_energy_difference` at ``block_length``, with the check at half and twice it.

    Block lengths are in iterations of the run; the arrays hold every ``thin``-th kept
    iteration, ``n_iterations`` kept iterations per repeat before thinning.  The other two
    lengths are tried with half the resamples, where at least four blocks fit.

    Returns
    -------
    result : TemperingFreeEnergy
    errors : dict
        block length (str) -> bootstrap error, ``block_length`` first.
    warning : str or None
        :func:`block_length_warning` of ``errors``.
    """
    result = tempering_free_energy_difference(reduced_potentials, in_a, in_b, block_length=block_length // thin,
                                              n_bootstrap=n_bootstrap, seed=seed)
    errors = {str(block_length): result.bootstrap_error}
    for length in (block_length // 2, block_length * 2):
        if length // thin >= 1 and n_iterations >= 4 * length:
            errors[str(length)] = tempering_free_energy_difference(
                reduced_potentials, in_a, in_b, block_length=length // thin, n_bootstrap=n_bootstrap // 2, seed=seed,
            ).bootstrap_error
    return result, errors, block_length_warning(errors)
