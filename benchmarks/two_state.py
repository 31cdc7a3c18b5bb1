"""phi < 0 / phi > 0 of alanine dipeptide as a two-state process: transitions, rates and the MD cost of dF.

Shared by :mod:`benchmarks.ala2_free_energy` and :mod:`benchmarks.mixing`, and tested by
``tests/test_benchmark_md_estimate.py``.

States are cores on phi (radians, in [-pi, pi]) with a dead zone between them, so that
recrossings of the barrier top are not counted:

* A, the phi < 0 state: ``phi <= -0.5`` or ``phi >= 2.8`` (the beta basin wraps past +-pi);
* B, the phi > 0 state: ``0.5 <= phi <= 2.2`` (C7ax and alpha_L).

A transition is an entry into one core when the last core visited was the other.  From a
trajectory we count A -> B and B -> A transitions and the time spent with each core as
the last one visited; the escape rate from B is ``k_BA = (B -> A transitions) / (time with
B last)``.  Detailed balance with the reference ``dF = F(B) - F(A)`` gives
``k_AB = k_BA P_B / P_A``, ``P_B / P_A = exp(-dF)``, and the relaxation time
``tau = 1 / (k_AB + k_BA) = P_A / k_BA``.  The state indicator of a two-state Markov
process has the autocorrelation ``P_A P_B exp(-t / tau)``, so the fraction of time in B
over a run of length T has ``var(P_B_hat) ~= 2 P_A P_B tau / T``; with
``d dF / d P_B = -1 / (P_A P_B)`` this gives ``sigma(dF) ~= sqrt(2 tau / (T P_A P_B))``,
and the MD time for a target ``sigma`` is ``T = 2 tau / (P_A P_B sigma^2) = 2 / (k_BA P_B sigma^2)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = [
    "NEGATIVE_CORE", "POSITIVE_CORE", "A", "B", "BUNDLED_RUNS", "STEPS_PER_PS",
    "core_labels", "count_transitions", "core_history", "poisson_interval", "escape_rate",
    "two_state_rates", "sigma_delta_f", "md_time_for_sigma", "trajectory_phi", "md_cost_estimate",
]

#: phi < 0 core (radians): phi <= -0.5 or phi >= 2.8
NEGATIVE_CORE = (-0.5, 2.8)
#: phi > 0 core (radians): 0.5 <= phi <= 2.2
POSITIVE_CORE = (0.5, 2.2)
#: labels of the two cores (0 is the dead zone)
A, B = -1, 1
#: MD steps (1 fs, one energy evaluation each) per ps
STEPS_PER_PS = 1000
#: the bundled unbiased 300 K MD runs (data/README.md): name -> (file in data/, ps between frames, role)
BUNDLED_RUNS = {
    "c7ax": ("ala2-vacuum-300K-c7ax.dcd", 0.2, "10 ns started in C7ax (phi > 0)"),
    "c7ax-2": ("ala2-vacuum-300K-c7ax-2.dcd", 0.5, "second 10 ns started in C7ax"),
    "c7eq": ("ala2-vacuum-300K-c7eq.dcd", 0.2, "10 ns started in C7eq (phi < 0)"),
    "c7eq-2": ("ala2-vacuum-300K-c7eq-2.dcd", 0.5, "second 20 ns started in C7eq"),
    "md": ("ala2-vacuum-300K-md.dcd", 1.0, "older 10 ns started in phi < 0, 1 frame/ps"),
}
#: runs that give the escape rate from B, and runs that check the predicted A -> B transitions
ESCAPE_RUNS = ("c7ax", "c7ax-2")
CHECK_RUNS = ("c7eq", "c7eq-2", "md")
BUNDLED_TOPOLOGY = "ala2-vacuum-300K-md.pdb"


def core_labels(phi: np.ndarray) -> np.ndarray:
    """Core of each phi value: -1 (A, phi < 0 state), +1 (B, phi > 0 state), 0 (dead zone).

    Parameters
    ----------
    phi : ndarray, shape (n,), radians in [-pi, pi]

    Returns
    -------
    ndarray, shape (n,), int8
    """
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 1:
        raise ValueError(f"phi must be one-dimensional, got shape {phi.shape}")
    labels = np.zeros(phi.shape, dtype=np.int8)
    labels[(phi <= NEGATIVE_CORE[0]) | (phi >= NEGATIVE_CORE[1])] = A
    labels[(phi >= POSITIVE_CORE[0]) & (phi <= POSITIVE_CORE[1])] = B
    return labels


def count_transitions(phi: np.ndarray, start: int = A) -> int:
    """Number of entries into one core after the other core was the last one visited.

    Parameters
    ----------
    phi : ndarray, shape (n,), radians
    start : int
        Core the trajectory starts in (-1 or +1).
    """
    if start not in (A, B):
        raise ValueError(f"start must be -1 or +1, got {start!r}")
    visited = core_labels(phi)
    visited = visited[visited != 0]
    previous = np.concatenate([[start], visited[:-1]])
    return int(np.sum(visited != previous))


def core_history(labels: np.ndarray) -> dict:
    """Transitions and time by last-visited core, from per-frame core labels.

    Frames before the first core visit belong to no state.  Each frame with a last-visited
    core counts one frame interval of time for that core, so ``frames_last_b * dt`` is the
    time during which an escape from B could be observed.

    Parameters
    ----------
    labels : ndarray, shape (n,), values in {-1, 0, +1} (:func:`core_labels`)

    Returns
    -------
    dict
        ``n_ab`` (A -> B transitions), ``n_ba`` (B -> A), ``frames_last_a``,
        ``frames_last_b``, ``first_core`` (0 if no core is visited).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.isin(labels, (A, 0, B)).all():
        raise ValueError("labels must be a 1-D array of -1, 0, +1")
    visited = np.flatnonzero(labels)
    if visited.size == 0:
        return dict(n_ab=0, n_ba=0, frames_last_a=0, frames_last_b=0, first_core=0)
    # last visited core at every frame: forward fill of the nonzero labels
    index = np.maximum.accumulate(np.where(labels != 0, np.arange(labels.size), -1))
    last = np.where(index >= 0, labels[np.maximum(index, 0)], 0)
    core_sequence = labels[visited]
    change = core_sequence[1:] != core_sequence[:-1]
    return dict(
        n_ab=int(np.sum(change & (core_sequence[1:] == B))),
        n_ba=int(np.sum(change & (core_sequence[1:] == A))),
        frames_last_a=int(np.sum(last == A)),
        frames_last_b=int(np.sum(last == B)),
        first_core=int(core_sequence[0]),
    )


def poisson_interval(n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of a Poisson mean from ``n`` counts.

    ``n > 0``: the exact central (Garwood) interval from the chi-square distribution.
    ``n == 0``: ``(0, -ln(1 - confidence))``, the one-sided upper bound (2.996, the "rule
    of three", at 95 %).
    """
    from scipy.stats import chi2

    if n < 0 or int(n) != n:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n == 0:
        return 0.0, -math.log(1.0 - confidence)
    alpha = 1.0 - confidence
    return float(chi2.ppf(alpha / 2, 2 * n) / 2), float(chi2.ppf(1 - alpha / 2, 2 * n + 2) / 2)


def escape_rate(n_exits: int, time: float, confidence: float = 0.95) -> dict:
    """Escape rate ``n_exits / time`` with its Poisson interval (``rate`` is the upper bound when ``n_exits == 0``).

    Returns
    -------
    dict
        ``rate``, ``low``, ``high`` (per unit of ``time``), ``n``, ``time``, ``upper_bound_only``.
    """
    if time <= 0:
        raise ValueError(f"time must be positive, got {time!r}")
    low, high = poisson_interval(n_exits, confidence)
    upper_only = n_exits == 0
    return dict(rate=(high if upper_only else n_exits) / time, low=low / time, high=high / time,
                n=int(n_exits), time=float(time), upper_bound_only=upper_only)


def two_state_rates(k_ba: float, delta_f: float) -> dict:
    """Populations, the other rate and the relaxation time from ``k_BA`` and ``dF = F(B) - F(A)`` (kT).

    Returns
    -------
    dict
        ``p_a``, ``p_b``, ``k_ab``, ``k_ba``, ``tau`` (in the inverse unit of ``k_ba``).
    """
    if not k_ba > 0:
        raise ValueError(f"k_ba must be positive, got {k_ba!r}")
    ratio = math.exp(-delta_f)  # P_B / P_A
    p_a = 1.0 / (1.0 + ratio)
    k_ab = k_ba * ratio
    return dict(p_a=p_a, p_b=1.0 - p_a, k_ab=k_ab, k_ba=float(k_ba), tau=1.0 / (k_ab + k_ba))


def sigma_delta_f(tau: float, time, p_a: float, p_b: float):
    """Standard error of ``dF = -ln(P_B / P_A)`` from a run of length ``time``: ``sqrt(2 tau / (time P_A P_B))``."""
    return np.sqrt(2.0 * tau / (np.asarray(time, dtype=np.float64) * p_a * p_b))


def md_time_for_sigma(tau: float, p_a: float, p_b: float, sigma: float) -> float:
    """Run length that makes :func:`sigma_delta_f` equal ``sigma``: ``2 tau / (P_A P_B sigma^2)``."""
    return 2.0 * tau / (p_a * p_b * sigma**2)


def trajectory_phi(name: str) -> tuple[np.ndarray, float]:
    """phi (radians, mdtraj.compute_phi) of a bundled run in :data:`BUNDLED_RUNS`, and its ps per frame."""
    import mdtraj

    from openmm_bg.reference import DATA_DIR

    filename, dt_ps, _ = BUNDLED_RUNS[name]
    trajectory = mdtraj.load(str(Path(DATA_DIR) / filename), top=str(Path(DATA_DIR) / BUNDLED_TOPOLOGY))
    _, phi = mdtraj.compute_phi(trajectory)
    if phi.shape[1] != 1:
        raise ValueError(f"expected one phi angle in {filename}, got {phi.shape[1]}")
    return phi[:, 0].astype(np.float64), dt_ps


def md_cost_estimate(delta_f: float, sigma: float = 0.1, confidence: float = 0.95,
                     escape_run: str | tuple[str, ...] = ESCAPE_RUNS, check_runs: tuple[str, ...] = CHECK_RUNS,
                     phi: dict | None = None) -> dict:
    """Plain-MD cost of ``dF`` to ``sigma`` kT, estimated from the bundled runs (see the module docstring).

    Parameters
    ----------
    delta_f : float, kT
        Reference ``F(phi > 0) - F(phi < 0)``.
    sigma : float, kT
        Target standard error of dF.
    escape_run : str or tuple of str
        The run(s) that give ``k_BA``: their escapes from B, pooled, over their summed time
        with B last visited.
    check_runs : tuple of str
        Runs on which the predicted number of A -> B transitions (``k_AB`` times their
        time with A last visited) is compared with the observed one.
    phi : dict, optional
        ``name -> (phi, ps per frame)`` instead of reading the bundled files (for tests).

    Returns
    -------
    dict
        ``runs`` (name -> :func:`core_history` plus ``dt_ps``, ``time_ns``), ``k_ba`` (per ns,
        :func:`escape_rate`), ``central``, ``fast``, ``slow`` (:func:`two_state_rates` at the
        rate, the upper and the lower end of its interval, each with ``md_time_ns`` and
        ``md_steps`` for ``sigma``; ``slow`` is None when no escape was seen), and ``checks``
        (name -> observed and predicted A -> B transitions, with the predicted range).
    """
    escape_runs = (escape_run,) if isinstance(escape_run, str) else tuple(escape_run)
    names = escape_runs + tuple(n for n in check_runs if n not in escape_runs)
    phi = phi if phi is not None else {name: trajectory_phi(name) for name in names}
    runs = {}
    for name in names:
        values, dt_ps = phi[name]
        history = core_history(core_labels(values))
        runs[name] = dict(history, dt_ps=float(dt_ps), time_ns=len(values) * dt_ps / 1000.0)
    time_b_ns = sum(runs[n]["frames_last_b"] * runs[n]["dt_ps"] / 1000.0 for n in escape_runs)
    k_ba = escape_rate(sum(runs[n]["n_ba"] for n in escape_runs), time_b_ns, confidence)

    def at(rate):
        if not rate > 0:
            return None
        rates = two_state_rates(rate, delta_f)
        rates["md_time_ns"] = md_time_for_sigma(rates["tau"], rates["p_a"], rates["p_b"], sigma)
        rates["md_steps"] = rates["md_time_ns"] * 1000.0 * STEPS_PER_PS
        return rates

    central, fast, slow = at(k_ba["rate"]), at(k_ba["high"]), at(k_ba["low"])
    checks = {}
    for name in check_runs:
        time_a_ns = runs[name]["frames_last_a"] * runs[name]["dt_ps"] / 1000.0
        checks[name] = dict(
            observed=runs[name]["n_ab"], time_a_ns=time_a_ns,
            predicted=central["k_ab"] * time_a_ns,
            predicted_low=(slow["k_ab"] if slow else 0.0) * time_a_ns, predicted_high=fast["k_ab"] * time_a_ns,
        )
    return dict(delta_f=float(delta_f), sigma=float(sigma), confidence=float(confidence), escape_run=" + ".join(escape_runs),
                runs=runs, k_ba=k_ba, central=central, fast=fast, slow=slow, checks=checks)
