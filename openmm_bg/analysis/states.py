"""The free-energy difference of two states from importance weights, with the statistics a report needs."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import ensure_count
from .reweighting import kish_ess, state_free_energy_difference

__all__ = ["state_free_energy"]


def state_free_energy(
    log_weight: np.ndarray,
    in_a: np.ndarray,
    in_b: np.ndarray,
    *,
    n_out_of_domain: int = 0,
    n_bootstrap: int = 200,
    seed: int = 0,
    names: tuple[str, str] = ("A", "B"),
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

    Returns
    -------
    dict
        ``delta_f_kT``, ``error_kT``, ``kish_ess`` (fraction of all samples drawn),
        ``n_a``, ``n_b`` (samples in each state), ``ess_a``, ``ess_b`` (Kish effective
        sample sizes within each state), ``n_both`` (samples in both states).

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
        stats[f"ess_{key}"] = kish_ess(log_w[mask]) * n_in
    # zero-weight samples outside the coordinate domain take part in the bootstrap as they did in the draw
    pad = np.zeros(n_out_of_domain, dtype=bool)
    all_log_w = np.concatenate([log_w, np.full(n_out_of_domain, -np.inf)])
    estimate = state_free_energy_difference(
        np.concatenate([in_a, pad]), np.concatenate([in_b, pad]), all_log_w, n_bootstrap=n_bootstrap, seed=seed
    )
    return {
        "delta_f_kT": float(estimate.value),
        "error_kT": float(estimate.error),
        "kish_ess": kish_ess(all_log_w) if finite.any() else 0.0,
        **stats,
        "n_both": int((in_a & in_b).sum()),
    }
