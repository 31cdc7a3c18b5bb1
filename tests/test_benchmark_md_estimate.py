"""The plain-MD cost estimator of benchmarks/ala2_free_energy.py (benchmarks/two_state.py) on synthetic two-state data.

A telegraph signal with known rates k_AB, k_BA (numpy, fixed seeds) is written as phi
values in the cores, so the whole chain is exercised: core labels, transition counting,
escape rates, and the sigma(dF) formula against the scatter over many synthetic runs.
"""

import json
import math

import numpy as np
import pytest

from benchmarks import ala2_free_energy as bench
from benchmarks import two_state as ts
from helpers import NSIGMA
from openmm_bg.reference.bundled import bundled_path

# phi values used for each state: A in the main basin and past the +-pi wrap, B in its core
PHI_A = (-1.5, 3.0)
PHI_B = 1.2


def telegraph_frames(k_ab: float, k_ba: float, t_total: float, dt: float, start: int, rng: np.random.Generator) -> np.ndarray:
    """State (A = -1, B = +1) at times 0, dt, 2 dt, ... of a continuous-time two-state Markov process."""
    switches, t, state = [], 0.0, start
    while t < t_total:
        t += rng.exponential(1.0 / (k_ab if state == ts.A else k_ba))
        switches.append(t)
        state = -state
    times = np.arange(int(round(t_total / dt))) * dt
    n_switches = np.searchsorted(np.asarray(switches), times, side="right")
    return np.where(n_switches % 2 == 0, start, -start).astype(np.int8)


def states_to_phi(states: np.ndarray, rng: np.random.Generator, dead_fraction: float = 0.02) -> np.ndarray:
    """phi in the cores (A split over both sides of the wrap), with a few frames moved into the dead zones."""
    phi = np.where(states == ts.A, np.where(rng.random(states.size) < 0.3, PHI_A[1], PHI_A[0]), PHI_B)
    dead = rng.random(states.size) < dead_fraction
    phi[dead] = rng.choice([0.0, -0.3, 0.4, 2.5], size=int(dead.sum()))
    return phi


def test_core_labels_boundaries_and_wrap():
    phi = np.array([-0.5, -0.49, 0.49, 0.5, 2.2, 2.21, 2.79, 2.8, -3.1, 3.1, 0.0, 1.0])
    expected = [-1, 0, 0, 1, 1, 0, 0, -1, -1, -1, 0, 1]
    assert ts.core_labels(phi).tolist() == expected


def test_core_history_by_hand():
    labels = np.array([0, -1, 0, 1, 1, 0, -1, 0, 0, 1])
    # last visited core per frame: -, A, A, B, B, B, A, A, A, B
    assert ts.core_history(labels) == dict(n_ab=2, n_ba=1, frames_last_a=5, frames_last_b=4, first_core=-1)
    assert ts.core_history(np.zeros(5, dtype=int))["first_core"] == 0
    # count_transitions (the mixing benchmark's counter) agrees when the start core is the first one visited
    assert ts.count_transitions(np.array([-1.5, 0.0, 1.2, 1.2, 0.0, -1.5, 0.0, 0.0, 1.2])) == 3


def test_poisson_interval():
    assert ts.poisson_interval(0) == pytest.approx((0.0, 2.9957), abs=1e-4)
    low, high = ts.poisson_interval(1)
    assert (low, high) == pytest.approx((0.02532, 5.5716), rel=1e-3)
    low, high = ts.poisson_interval(100)
    assert low < 100 < high and high - low == pytest.approx(2 * 1.96 * 10, rel=0.05)


def test_rates_recovered_from_telegraph_signal():
    """Both escape rates within NSIGMA Poisson sigma (sigma = k / sqrt(n)) of the true ones."""
    rng = np.random.default_rng(11)
    k_ab, k_ba, dt = 0.5, 2.0, 0.002
    states = telegraph_frames(k_ab, k_ba, 2000.0, dt, ts.A, rng)
    history = ts.core_history(ts.core_labels(states_to_phi(states, rng)))
    assert history["first_core"] == ts.A
    assert history["frames_last_a"] + history["frames_last_b"] == states.size
    true_changes = int(np.count_nonzero(np.diff(states)))
    assert history["n_ab"] + history["n_ba"] == pytest.approx(true_changes, rel=0.01)  # dead-zone frames hide almost nothing
    for n, frames, k in ((history["n_ab"], history["frames_last_a"], k_ab), (history["n_ba"], history["frames_last_b"], k_ba)):
        rate = ts.escape_rate(n, frames * dt)
        assert n > 500
        assert abs(rate["rate"] - k) < NSIGMA * k / math.sqrt(n), (rate, k)
        assert rate["low"] < k < rate["high"]


def test_md_cost_estimate_on_synthetic_runs():
    """md_cost_estimate with a synthetic escape run: k_BA recovered, T consistent with sigma(dF), cross-check predicted."""
    rng = np.random.default_rng(5)
    k_ab, k_ba, dt_ps = 0.5, 2.0, 1.0                                    # per ns; frames every ps
    delta_f = -math.log(k_ab / k_ba)                                     # detailed balance: P_B / P_A = k_AB / k_BA
    escape = states_to_phi(telegraph_frames(k_ab, k_ba, 1000.0, dt_ps / 1000, ts.B, rng), rng)
    check = states_to_phi(telegraph_frames(k_ab, k_ba, 400.0, dt_ps / 1000, ts.A, rng), rng)
    est = ts.md_cost_estimate(delta_f, sigma=0.1, escape_run="x", check_runs=("y",), phi={"x": (escape, dt_ps), "y": (check, dt_ps)})
    n = est["k_ba"]["n"]
    assert abs(est["k_ba"]["rate"] - k_ba) < NSIGMA * k_ba / math.sqrt(n)
    c = est["central"]
    assert c["k_ab"] == pytest.approx(est["k_ba"]["rate"] * k_ab / k_ba)
    assert c["tau"] == pytest.approx(1 / (c["k_ab"] + c["k_ba"]))
    assert ts.sigma_delta_f(c["tau"], c["md_time_ns"], c["p_a"], c["p_b"]) == pytest.approx(0.1)
    assert c["md_steps"] == pytest.approx(c["md_time_ns"] * 1e6)
    assert c["md_time_ns"] == pytest.approx(2 / (c["k_ba"] * c["p_b"] * 0.1**2))
    assert est["fast"]["md_steps"] < c["md_steps"] < est["slow"]["md_steps"]
    y = est["checks"]["y"]
    assert abs(y["observed"] - y["predicted"]) < NSIGMA * math.sqrt(y["predicted"])


def test_md_cost_estimate_without_exit_is_a_bound():
    phi = np.full(5000, PHI_B)
    est = ts.md_cost_estimate(4.0, escape_run="x", check_runs=(), phi={"x": (phi, 0.2)})
    assert est["k_ba"]["upper_bound_only"] and est["slow"] is None
    assert est["k_ba"]["rate"] == pytest.approx(2.9957 / 1.0, rel=1e-4)  # 5000 frames of 0.2 ps = 1 ns


def test_sigma_formula_matches_scatter_over_runs():
    """std of P_B_hat and of dF_hat over 2000 synthetic runs within 10 % of the two-state formula."""
    rng = np.random.default_rng(3)
    k_ab, k_ba, t_total, runs, dwells = 1.0, 4.0, 100.0, 2000, 400
    rates = ts.two_state_rates(k_ba, -math.log(k_ab / k_ba))
    p_a, p_b, tau = rates["p_a"], rates["p_b"], rates["tau"]
    assert rates["k_ab"] == pytest.approx(k_ab) and tau == pytest.approx(0.2)
    start_b = rng.random(runs) < p_b                                      # equilibrium start
    in_b = start_b[:, None] ^ (np.arange(dwells)[None, :] % 2 == 1)      # dwells alternate
    dwell = rng.exponential(1.0, size=(runs, dwells)) / np.where(in_b, k_ba, k_ab)
    ends = np.cumsum(dwell, axis=1)
    assert ends[:, -1].min() > t_total
    covered = np.clip(np.minimum(ends, t_total) - (ends - dwell), 0.0, None)
    p_b_hat = (covered * in_b).sum(axis=1) / t_total
    delta_f_hat = -np.log(p_b_hat / (1 - p_b_hat))
    predicted_p = math.sqrt(2 * p_a * p_b * tau / t_total)
    predicted_f = ts.sigma_delta_f(tau, t_total, p_a, p_b)
    assert np.std(p_b_hat, ddof=1) == pytest.approx(predicted_p, rel=0.10)
    assert np.std(delta_f_hat, ddof=1) == pytest.approx(predicted_f, rel=0.10)
    assert np.mean(delta_f_hat) == pytest.approx(-math.log(p_b / p_a), abs=NSIGMA * predicted_f / math.sqrt(runs) + 0.01)
    assert ts.md_time_for_sigma(tau, p_a, p_b, predicted_f) == pytest.approx(t_total)


def test_reference_file_formats(tmp_path):
    path = bundled_path("ala2-vacuum-reference.json")
    bundled = bench.load_reference_file(path, 300.0)
    record = json.loads(path.read_text())
    assert bundled["delta_f_kT"] == record["delta_f_kT"] and bundled["error_kT"] == record["error_kT"] > 0
    umbrella = tmp_path / "umbrella.json"
    umbrella.write_text(json.dumps({"dF_kT": 4.25, "dF_error_kT": 0.05, "temperature_K": 300.0, "total_md_steps": 10}))
    assert bench.load_reference_file(umbrella, 300.0)["delta_f_kT"] == 4.25
    assert bench.load_reference_file(umbrella)["error_kT"] == 0.05
    with pytest.raises(ValueError, match="K"):
        bench.load_reference_file(umbrella, 350.0)
    (tmp_path / "bad.json").write_text(json.dumps({"dF": 1.0}))
    with pytest.raises(ValueError, match="dF_kT"):
        bench.load_reference_file(tmp_path / "bad.json")


def test_smallest_accurate_picks_the_cheapest_budget_by_either_sigma_test():

    def row(ml, within_0_2, own, combined):
        return dict(ml_iterations=ml, evaluations={"total": 10 * ml}, within_0_2=within_0_2,
                    within_2_sigma=own, within_2_combined=combined)

    rows = [row(4000, True, True, True), row(500, False, False, True), row(2000, True, False, True), row(1000, True, False, False)]
    assert bench.smallest_accurate(rows)["ml_iterations"] == 4000
    assert bench.smallest_accurate(rows, "within_2_combined")["ml_iterations"] == 2000
    assert bench.smallest_accurate(rows[1:]) is None


def test_budget_row_compares_a_saved_report_with_any_reference():
    report = {"settings": {"ml": {"n_iterations": 2000}, "kl": {"n_iterations": 300}}, "delta_f": 4.70, "delta_f_error": 0.03,
              "energy_evaluations": {"total": 5}, "wall_time_s": {"total": 1.0}, "kish_ess": 0.3, "n_samples": 10,
              "note": "", "n_frames": 7}
    row = bench.budget_row(report, {"delta_f_kT": 4.85, "error_kT": 0.08})
    assert row["ml_iterations"] == 2000 and row["kl_iterations"] == 300
    assert row["deviation"] == pytest.approx(-0.15)
    assert row["within_0_2"] and not row["within_2_sigma"] and row["within_2_combined"]  # 0.15 <= 2 * hypot(0.03, 0.08) = 0.171
    row = bench.budget_row(report, {"delta_f_kT": 4.40, "error_kT": 0.06})
    assert not row["within_0_2"] and not row["within_2_combined"]  # 0.30 > 2 * hypot(0.03, 0.06) = 0.134
    assert bench.budget_row(report, None)["deviation"] is None
